"""Train every learned pan-sharpening model of the project on one WV3 scene without its ground truth.

The frequency report (``experiments/frequency_report.py``) looks at models on
``rr/wv3_cdif.mat``; released WV3 weights exist for only some of them. This script gives every
learned model a WV3 checkpoint of its own, cheaply and without touching the scene's GT: the
scene's LRMS (64 x 64 x 8) and PAN (256 x 256) are degraded once more by the Wald protocol
(WV3 MTF, ratio 4: LRMS 16 x 16, PAN 64 x 64) and the models learn to recover the LRMS from
that reduced pair (``data.kind = 'wald_scene'``; left half for training in 16 x 16 patches with
stride 4, right half for validation in 32 x 32 tiles). Each model keeps the optimiser recipe of
its own config (``configs/<model>_wv3.py``, or ``_wv2_real.py`` for the models that have only
that one) with ``--steps`` steps at batch 8; the unfolding network runs without its MAEs
(``:noprior,noloss``: they would need pre-training runs first) and SSDiff is its pre-training
stage only (no LoRA rounds). These are short CPU runs for analysis, not tuned results.

Writes one workdir per model under ``--runs`` (``<runs>/<model>``) and ``<runs>/summary.json``
(seconds, final validation scores, failures). Usage::

    python experiments/self_trained_wv3.py --runs runs/wv3_self --steps 400
    python experiments/self_trained_wv3.py --runs runs/wv3_self --models fusionnet,sbm --steps 200
    python experiments/frequency_report.py --out reports/frequency_ours \\
        --ckpt fusionnet=runs/wv3_self/fusionnet --ckpt sbm=runs/wv3_self/sbm ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pansharp_jax.train.queue import run_recorded, train_command

REPO = Path(__file__).resolve().parents[1]

# model -> config (file[:arg]) whose recipe it keeps
CONFIGS = {
    "pnn": "pnn_wv3.py",
    "pannet": "pannet_wv3.py",
    "dicnn": "dicnn_wv3.py",
    "msdcnn": "msdcnn_wv3.py",
    "drpnn": "drpnn_wv3.py",
    "fusionnet": "fusionnet_wv3.py",
    "lagnet": "lagnet_wv3.py",
    "cannet": "cannet_wv3.py",
    "cmt": "cmt_wv3.py",
    "le_mamba": "le_mamba_wv3.py",
    "fusionmamba": "fusionmamba_wv3.py",
    "unfolding": "unfolding_wv2_real.py:noprior,noloss",
    "sbm": "sbm_wv2_real.py",
    "ssdiff": "ssdiff_wv2_real.py",
}


# per-model extra overrides
EXTRA = {
    "unfolding": ["--config.model.sensor=WV3"],  # its degradation operators start from the WV3 MTF
    "le_mamba": ["--config.model.size=tiny"],  # the preset the authors' yaml uncomments for WV3; `small` is too slow on a CPU
}


def overrides(steps: int, batch: int) -> list[str]:
    """The data and schedule overrides shared by every model (module docstring)."""
    every = max(1, steps // 4)
    return [
        "--config.data.kind=wald_scene", "--config.data.scene=rr/wv3_cdif.mat", "--config.data.sensor=WV3",
        "--config.data.patch=16", "--config.data.stride=4", "--config.data.val_patch=32",
        "--config.data.holdout_side=right", "--config.data.holdout_fraction=0.5",
        f"--config.steps={steps}", f"--config.batch_size={batch}", f"--config.eval_every={every}",
        f"--config.checkpoint.every={every}", f"--config.optim.warmup_steps={min(50, steps // 10)}",
        "--config.eval.batch_size=2", f"--config.log_every={every}",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="folder for one workdir per model")
    ap.add_argument("--models", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before it is stopped")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in CONFIGS:
            raise SystemExit(f"unknown model {name!r}; known: {', '.join(CONFIGS)}")
        cmd = train_command(REPO / "configs" / CONFIGS[name], runs / name, [*overrides(args.steps, args.batch), *EXTRA.get(name, [])])
        run_recorded(name, cmd, runs / "summary.json", args.timeout, config=CONFIGS[name], steps=args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
