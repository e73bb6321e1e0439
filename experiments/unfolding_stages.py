"""Quality after every stage of a trained deep-unfolding run: SAM, ERGAS, Q2n per stage (PNG + JSON).

Loads a run of ``configs/unfolding_wv2_real.py`` (``--ckpt WORKDIR``: its best checkpoint, or
``--prefer latest``), applies the network with ``return_stages=True`` to one reduced-resolution
scene with a reference and scores each stage's output (float32, not clipped) with
``metrics.evaluate_reduced(ratio, max_dn, block=32, cut=--cut)``; the LMS (the network's
starting point, "stage 0") is scored too. The scene:

* ``--scene FILE`` (a file with ``gt``, e.g. ``rr/wv3_cdif.mat`` under ``$PANSHARP_DATA``):
  its LRMS, PAN and GT; LMS = ``interp23tap`` of the LRMS (float64, then float32);
* default: the run's held-out region of its training scene, Wald-reduced as in
  ``experiments/real_scene_wv2.py`` (GT = the region's original MS).

Writes ``<out>/stages.json`` (``{"stages": [{"stage": k, "SAM", "ERGAS", "Q2n", ...}, ...],
"lms": {...}, ...}``, one entry per stage) and ``<out>/stages.png``; ``--out`` defaults to
``<ckpt>/stages``. Usage::

    python experiments/unfolding_stages.py --ckpt runs/unfolding
    python experiments/unfolding_stages.py --ckpt runs/unfolding --scene rr/wv3_cdif.mat --cut 21
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.data import wald
from pansharp_jax.data.io import load_scene
from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_reduced
from pansharp_jax.models import registry
from pansharp_jax.train.restore import restore_params

METRICS = ("SAM", "ERGAS", "Q2n")
HERE = Path(__file__).resolve().parent


def scene_inputs(scene: str | None, config: dict[str, Any]) -> dict[str, Any]:
    """lrms, pan, lms (float32 (1, ...) batches), gt (H, W, C), ratio, max_dn and a label."""
    if scene:
        s = load_scene(scene)
        if s.gt is None:
            raise InputError(f"{scene} has no reference (gt): use a reduced-resolution scene such as rr/wv3_cdif.mat")
        lrms, pan, gt, r, max_dn, label = s.lrms, s.pan, s.gt, int(s.ratio), float(s.max_dn), str(scene)
    else:
        sys.path.insert(0, str(HERE))
        from real_scene_wv2 import heldout_inputs  # the held-out region, Wald-reduced

        inp = heldout_inputs(ml_collections.ConfigDict(config))
        lrms, pan, gt, r, max_dn = inp["lrms"], inp["pan"], inp["gt"], int(inp["ratio"]), float(inp["max_dn"])
        label = f"held-out region {inp['box']} of {config['data']['scene']}"
    with jax.enable_x64(True):
        lms = np.asarray(wald.interp23tap(jnp.asarray(lrms, jnp.float64), r))
    batch = {k: np.asarray(v, np.float32)[None] for k, v in (("lrms", lrms), ("pan", pan), ("lms", lms))}
    return {**batch, "gt": np.asarray(gt, np.float64), "ratio": r, "max_dn": max_dn, "label": label}


def stage_outputs(params: Any, model_config: Any, inp: dict[str, Any]) -> np.ndarray:
    """(K, H, W, C) float32: every stage's output for the scene."""
    model = registry.build_model(model_config)
    fn = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c, return_stages=True))
    return np.asarray(fn(params, inp["lrms"], inp["pan"], inp["lms"]))[0]


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [e["stage"] for e in report["stages"]]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for ax, m in zip(np.atleast_1d(axes), METRICS):
        ax.plot(ks, [e[m] for e in report["stages"]], "o-", label="stage output")
        ax.axhline(report["lms"][m], ls="--", c="gray", label="LMS (input)")
        ax.set_xlabel("stage")
        ax.set_xticks(ks)
        ax.set_title(m + (" (higher is better)" if m == "Q2n" else " (lower is better)"))
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"unfolding, step {report['step']}: {report['scene']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="the unfolding run's workdir")
    p.add_argument("--scene", default="", help="a scene with gt (default: the run's held-out region)")
    p.add_argument("--prefer", choices=("best", "latest"), default="best")
    p.add_argument("--cut", type=int, default=0, help="border cut of the metrics (21: the toolbox's)")
    p.add_argument("--out", default="", help="output folder (default: <ckpt>/stages)")
    args = p.parse_args(argv)

    run = restore_params(args.ckpt, prefer=args.prefer)
    if run.model_config.get("name") != "unfolding":
        raise InputError(f"{args.ckpt} is a {run.model_config.get('name')} run, not an unfolding one")
    inp = scene_inputs(args.scene or None, run.config)
    stages = stage_outputs(run.params, run.model_config, inp)

    def score(x: np.ndarray) -> dict[str, float]:
        s = evaluate_reduced(x, inp["gt"], ratio=inp["ratio"], max_dn=inp["max_dn"], block=32, cut=args.cut)
        return {k: float(v) for k, v in s.items()}

    report = {
        "ckpt": str(args.ckpt), "step": run.step, "scene": inp["label"], "cut": args.cut,
        "stages": [{"stage": k + 1, **score(x)} for k, x in enumerate(stages)], "lms": score(inp["lms"][0]),
    }  # fmt: skip
    out = Path(args.out) if args.out else Path(args.ckpt) / "stages"
    out.mkdir(parents=True, exist_ok=True)
    (out / "stages.json").write_text(json.dumps(report, indent=1))
    plot(report, out / "stages.png")
    print("| stage | " + " | ".join(METRICS) + " |\n|---|" + "---:|" * len(METRICS))
    for name, s in [("LMS", report["lms"])] + [(str(e["stage"]), e) for e in report["stages"]]:
        print(f"| {name} | " + " | ".join(f"{s[m]:.4f}" for m in METRICS) + " |")
    print(f"wrote {out / 'stages.json'} and {out / 'stages.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
