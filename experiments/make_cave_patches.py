"""Write the CAVE MHIF training / validation arrays the ``*_cave_x{4,8}`` configs read.

From the two CAVE cubes shipped under ``$PANSHARP_DATA/hs`` (see ``data/README.md``):

* train: ``hs/cave_balloons_256.mat`` (256 x 256 x 31) simulated whole (``"zsl"``
  degradation: 7 x 7 Gaussian, sigma 3, first sample kept; Nikon D700 SRF -> RGB guide),
  then cut into ``--patch`` x ``--patch`` HR patches with ``--stride`` (64 / 32: 49 patches);
* val / test: ``hs/cave_fake_and_real_food_201.mat`` cropped to 200 x 200, simulated the same
  way, as one whole-image sample.

Each file is ``<root>/cave/{train,test}_cave_x<r>.npz`` with float32 NHWC ``lrms``, ``pan``
(the RGB guide), ``gt`` and ``lms`` (MATLAB-bicubic ``HSI_up``) on [0, 1]
(:func:`pansharp_jax.data.hsi.mhif_patches`). Usage::

    python experiments/make_cave_patches.py --root runs/data            # x4 and x8
    pansharp train --config configs/infn_cave_x4.py --config.data.root=runs/data --workdir runs/infn_x4

``--root`` defaults to ``$PANSHARP_DATA`` (then the configs find the files without
``data.root``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

TRAIN = "hs/cave_balloons_256.mat"
TEST = "hs/cave_fake_and_real_food_201.mat"


def make(root: Path, ratio: int, *, patch: int = 64, stride: int = 32, degradation: str = "zsl") -> dict[str, Path]:
    """Write the x``ratio`` train and test files under ``root/cave``; returns {"train", "test"} paths."""
    from pansharp_jax.data import hsi

    srf = hsi.load_srf()
    out = root / "cave"
    out.mkdir(parents=True, exist_ok=True)
    train = hsi.mhif_patches([hsi.read_hsi(TRAIN)], srf, ratio=ratio, patch=patch, stride=stride, degradation=degradation)
    food = hsi.crop_to_multiple(hsi.read_hsi(TEST), ratio)
    side = min(food.shape[:2])
    test = hsi.mhif_patches([food[:side, :side]], srf, ratio=ratio, patch=side, stride=side, degradation=degradation)
    paths = {"train": out / f"train_cave_x{ratio}.npz", "test": out / f"test_cave_x{ratio}.npz"}
    for key, arrays in (("train", train), ("test", test)):
        np.savez(paths[key], **arrays)
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
        print(f"{paths[key]}: {shapes}")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.environ.get("PANSHARP_DATA", ""), help="data root (default: $PANSHARP_DATA)")
    p.add_argument("--ratios", default="4,8", help="comma-separated ratios (default: 4,8)")
    p.add_argument("--patch", type=int, default=64, help="HR training patch side (default: 64)")
    p.add_argument("--stride", type=int, default=32, help="HR training patch stride (default: 32)")
    p.add_argument("--degradation", default="zsl", help="zsl | mhf | hysure (data.hsi.DEGRADATIONS)")
    args = p.parse_args(argv)
    if not args.root:
        p.error("give --root DIR (or set PANSHARP_DATA)")
    for r in (int(v) for v in args.ratios.split(",") if v.strip()):
        make(Path(args.root), r, patch=args.patch, stride=args.stride, degradation=args.degradation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
