"""Build large MS/PAN GeoTIFF acceptance scenes by mirror-tiling the real WV2 scene.

Usage::

    python benchmarks/make_large_scene.py --size 8192 --out runs/scenes   # reads $PANSHARP_DATA/fr/wv2_pnn.mat
    PANSHARP_DATA=../shared/data python benchmarks/make_large_scene.py --size 1280 --border 64 --out DIR

The source is ``$PANSHARP_DATA/fr/wv2_pnn.mat`` (PAN 1280x1280, MS 320x320x8, 11 bits;
``--source`` picks another scene with a PAN side divisible by its ratio). The N x N PAN
(N a multiple of 4) and the N/4 x N/4 x 8 MS are the source repeated with alternate flips
(tiles 1, 3, 5... of each axis are mirrored), so every tile edge joins its neighbour
seamlessly and PAN and MS stay aligned (PAN tile side = 4 x MS tile side).

``--border B`` (a multiple of 4) adds a frame of zeros, B PAN pixels (B/4 MS pixels) wide,
around the tiled scene: the PAN becomes (N + 2B) a side. With a border the files carry
``nodata=0`` (``--no-nodata-tag`` leaves it out, so readers must infer nodata from zeros).

Both files are uint16 DN GeoTIFFs (tiled 512, deflate with horizontal predictor) in
EPSG:32633 with 0.5 m PAN / 2 m MS pixels and the same top-left corner, written window
by window: each strip is generated from the small scene by index arithmetic, so the large
image never exists in memory. Output: ``<DIR>/wv2_<N>[_b<B>]_ms.tif`` and ``..._pan.tif``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ORIGIN = (500000.0, 4650000.0)  # top-left corner (x, y), metres, UTM zone 33N
PAN_PIXEL_M = 0.5
CRS = "EPSG:32633"
BLOCK = 512
STRIP_ROWS = 512  # PAN rows generated and written at once


def mirror_index(n_out: int, n_src: int, tiled: int, border: int) -> np.ndarray:
    """Source index for each of ``n_out`` output positions; ``n_src`` (the zero pad) in the border.

    Positions ``border .. border+tiled-1`` cover the mirror-tiled scene: tile k = i // n_src
    runs forwards for even k and backwards for odd k. Other positions map to ``n_src``.
    """
    i = np.arange(n_out) - border
    inside = (i >= 0) & (i < tiled)
    k, j = np.divmod(np.where(inside, i, 0), n_src)
    j = np.where(k % 2 == 1, n_src - 1 - j, j)
    return np.where(inside, j, n_src)


def _padded(a: np.ndarray) -> np.ndarray:
    """(h, w, C) -> (h+1, w+1, C) with a zero last row and column (the border's source)."""
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1, a.shape[2]), dtype=a.dtype)
    out[:-1, :-1] = a
    return out


def _write(path: Path, src: np.ndarray, *, tiled: int, border: int, pixel: float, nodata: Any, strip: int) -> None:
    """Write the mirror-tiled (+ border) version of ``src`` (h, w, C) uint16 to ``path``, strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    n = tiled + 2 * border
    idx = mirror_index(n, src.shape[0], tiled, border)
    jdx = mirror_index(n, src.shape[1], tiled, border)
    ext = _padded(src)
    profile = {
        "driver": "GTiff", "height": n, "width": n, "count": src.shape[2], "dtype": "uint16",
        "crs": CRS, "transform": Affine(pixel, 0.0, ORIGIN[0], 0.0, -pixel, ORIGIN[1]),
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "predictor": 2,
        "interleave": "pixel", "bigtiff": "IF_SAFER",
    }  # fmt: skip
    if nodata is not None:
        profile["nodata"] = nodata
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            for r0 in range(0, n, strip):
                rows = idx[r0 : r0 + strip]
                block = ext[rows[:, None], jdx[None, :]]  # (h, n, C), from the small scene
                dst.write(np.moveaxis(block, -1, 0), window=Window(0, r0, n, len(rows)))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_scene(
    size: int, out: Path, *, border: int = 0, source: Path | None = None, nodata_tag: bool = True
) -> tuple[Path, Path]:
    """Write ``wv2_<size>[_b<border>]_{ms,pan}.tif`` into ``out``; return (ms_path, pan_path)."""
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.errors import InputError

    if source is None:
        data = os.environ.get("PANSHARP_DATA")
        if not data:
            raise InputError("set PANSHARP_DATA (the shared data folder) or pass --source")
        source = Path(data) / "fr" / "wv2_pnn.mat"
    scene = load_scene(source)
    r = scene.ratio
    if size < r or size % r:
        raise InputError(f"--size must be a positive multiple of the ratio {r}, got {size}")
    if border < 0 or border % r:
        raise InputError(f"--border must be a non-negative multiple of the ratio {r}, got {border}")
    if not out.is_dir():
        raise InputError(f"output folder {out} does not exist: create it first")
    pan = np.rint(scene.pan * scene.max_dn).astype(np.uint16)
    ms = np.rint(scene.lrms * scene.max_dn).astype(np.uint16)
    stem = f"wv2_{size}" + (f"_b{border}" if border else "")
    ms_path, pan_path = out / f"{stem}_ms.tif", out / f"{stem}_pan.tif"
    nodata = 0 if (border and nodata_tag) else None
    _write(pan_path, pan, tiled=size, border=border, pixel=PAN_PIXEL_M, nodata=nodata, strip=STRIP_ROWS)
    _write(ms_path, ms, tiled=size // r, border=border // r, pixel=PAN_PIXEL_M * r, nodata=nodata,
           strip=max(STRIP_ROWS // r, 1))  # fmt: skip
    return ms_path, pan_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=8192, help="PAN side of the tiled scene (multiple of 4)")
    p.add_argument("--border", type=int, default=0, help="zero nodata frame, PAN pixels (multiple of 4)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (must exist)")
    p.add_argument("--source", type=Path, default=None, help="source scene (default $PANSHARP_DATA/fr/wv2_pnn.mat)")
    p.add_argument("--no-nodata-tag", action="store_true", help="do not write nodata=0 into bordered files")
    args = p.parse_args(argv)
    from pansharp_jax.errors import InputError

    t0 = time.perf_counter()
    try:
        ms_path, pan_path = make_scene(
            args.size, args.out, border=args.border, source=args.source, nodata_tag=not args.no_nodata_tag
        )
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    import rasterio

    for what, path in (("PAN", pan_path), ("MS", ms_path)):
        with rasterio.open(path) as src:
            shape = f"{src.height}x{src.width}x{src.count}"
        print(f"{what:3s} {path}  {shape} uint16  {path.stat().st_size / 2**20:.1f} MiB")
    print(f"built in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
