"""Train the MHIF networks on CAVE ``balloons`` and score them on ``fake_and_real_food`` at x4 and x8.

One table, as issue 16 asks: bicubic, the classical MHIF baselines (GLP-HS, CNMF) and the
learned networks (INFN, FeINFN, LE-Mamba, FusionMamba), PSNR / SAM / ERGAS / SSIM in the MHIF
convention (:func:`pansharp_jax.metrics.evaluate_mhif`: [0, 1], no border cut).

* Data: ``experiments/make_cave_patches.py --root DATA`` writes the 49 ``balloons`` training
  patches (64 x 64 HR) and the 200 x 200 ``fake_and_real_food`` validation scene ("zsl"
  simulation: 7 x 7 Gaussian, sigma 3, first sample kept; Nikon D700 SRF -> RGB guide).
* Training: each network's own CAVE config (``configs/<model>_cave_x<r>.py``) for ``--steps``
  steps at ``--batch``, all with one short-run optimiser (Adam ``--lr``, cosine to 5 %, no
  warm-up) and, with ``--size tiny`` (the default), CPU-sized widths (:data:`TINY`). These are
  short CPU runs, not the papers' recipes (INFN/FeINFN: 12,000 steps; the Mamba nets: 150,000).
* Scoring: ``pansharp compare`` on the test cube at each ratio with every workdir's best
  checkpoint (``--ckpt``), the classical methods given the true blur and SRF.

Writes ``<runs>/<model>_x<r>/`` (one workdir each; ``<runs>/summary.json`` records time and
success; a rerun skips runs that finished with the same steps, batch, lr and size), ``<out>/x<r>/`` (compare's
metrics and image grids) and ``<out>/cave_table.md`` / ``.json``. Usage::

    python experiments/make_cave_patches.py --root runs/data
    python experiments/cave_table.py --data runs/data --runs runs/cave --steps 300 --out reports/cave \\
        --model-steps infn=2000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pansharp_jax.train.queue import finished, run_recorded, train_command

REPO = Path(__file__).resolve().parents[1]
MODELS = ("infn", "feinfn", "le_mamba", "fusionmamba")
CLASSICAL = ("bicubic", "glp_hs", "cnmf")
SCENE = "hs/cave_fake_and_real_food_201.mat"
METRICS = (("PSNR", "PSNR (dB)", True), ("SAM", "SAM (deg)", False), ("ERGAS", "ERGAS", False), ("SSIM", "SSIM", True))

# CPU-sized widths per model (config overrides); the configs' own widths with --size full
TINY: dict[str, tuple[str, ...]] = {
    "infn": ("model.feats=32", "model.blocks=1", "model.hidden=(64,)"),
    "feinfn": ("model.feats=32", "model.blocks=1", "model.spatial_hidden=(64,)", "model.amp_hidden=(64,)",
               "model.phase_hidden=(64,)", "model.spatial_dim=16", "model.decoder_width=64", "model.decoder_layers=2"),
    "le_mamba": ("model.size=tiny",),
    "fusionmamba": ("model.dim=16",),
}  # fmt: skip


def train_overrides(model: str, data: Path, steps: int, batch: int, lr: float, size: str) -> list[str]:
    """Config overrides of one run (module docstring): data root, schedule, optimiser, widths."""
    keys = [f"data.root={data}", f"steps={steps}", f"batch_size={batch}", f"eval_every={steps}",
            f"checkpoint.every={steps}", f"log_every={max(1, steps // 10)}", "eval.batch_size=1",
            "optim.name=adam", f"optim.lr={lr}", "optim.schedule=cosine", "optim.min_lr_ratio=0.05",
            "optim.warmup_steps=0", "optim.weight_decay=0.0", "optim.grad_clip=0.0", "logging.console=false"]  # fmt: skip
    if size == "tiny":
        keys += TINY[model]
    return [f"--config.{k}" for k in keys]


def compare(scene: Path, ratio: int, ckpts: dict[str, Path], out: Path) -> dict[str, Any]:
    """``pansharp compare`` of the classical methods and the trained ``ckpts`` at ``ratio``; its metrics.json."""
    cmd = [sys.executable, "-m", "pansharp_jax.cli", "compare", "-i", str(scene), "--ratio", str(ratio),
           "--methods", ",".join([*CLASSICAL, *ckpts]), "-o", str(out), "--no-progress"]  # fmt: skip
    for name, workdir in ckpts.items():
        cmd += ["--ckpt", f"{name}={workdir}"]
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True)
    return json.loads((out / "metrics.json").read_text())


def steps_per_model(models: Sequence[str], steps: int, spec: str) -> dict[str, int]:
    """``--steps`` for every model, except those named in ``spec`` (``"infn=2000,feinfn=600"``)."""
    out = dict.fromkeys(models, steps)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        if name not in out or not value.isdigit():
            raise SystemExit(f"--model-steps: {item!r} is not MODEL=STEPS for one of {', '.join(models)}")
        out[name] = int(value)
    return out


def table(results: dict[int, dict[str, Any]], steps: dict[str, int], size: str) -> str:
    """One Markdown table: a row per (ratio, method), the best value of each metric per ratio in bold."""
    head = "| method | ratio | " + " | ".join(label for _, label, _ in METRICS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(METRICS)]
    for ratio, res in sorted(results.items()):
        rows = res["results"]
        best = {k: (max if hi else min)(r["metrics"][k] for r in rows) for k, _, hi in METRICS}
        for r in rows:
            learned = r["method"] not in CLASSICAL
            label = r["label"] + (f" ({steps[r['method']]} steps, {size})" if learned else "")
            cells = [f"**{v:.4f}**" if v == best[k] else f"{v:.4f}" for k, v in ((k, r["metrics"][k]) for k, _, _ in METRICS)]
            lines.append(f"| {label} | x{ratio} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="root holding cave/{train,test}_cave_x<r>.npz (make_cave_patches.py)")
    ap.add_argument("--runs", required=True, type=Path, help="folder for one workdir per (model, ratio)")
    ap.add_argument("--out", required=True, type=Path, help="folder for the compare outputs and cave_table.md/.json")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    ap.add_argument("--ratios", default="4,8", help="comma-separated ratios (each needs its x<r> files)")
    ap.add_argument("--steps", type=int, default=300, help="training steps of every model (see --model-steps)")
    ap.add_argument("--model-steps", default="", metavar="M=N,...", help="per-model steps overriding --steps, e.g. infn=2000")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny", help="tiny: CPU-sized widths (TINY); full: the configs'")
    ap.add_argument("--scene", type=Path, default=None, help=f"test cube (default $PANSHARP_DATA/{SCENE})")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per training run before it is stopped")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}")
    ratios = [int(r) for r in args.ratios.split(",")]
    steps = steps_per_model(models, args.steps, args.model_steps)
    missing = [p for p in (args.data / f"cave/train_cave_x{r}.npz" for r in ratios) if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {missing[0]}: run  python experiments/make_cave_patches.py --root {args.data}")
    scene = args.scene or Path(os.environ.get("PANSHARP_DATA", "")) / SCENE
    if not scene.is_file():
        raise SystemExit(f"test cube {scene} not found: pass --scene or set PANSHARP_DATA")
    summary = args.runs / "summary.json"
    results = {}
    for ratio in ratios:
        ckpts = {}
        for model in models:
            name, record = f"{model}_x{ratio}", {"steps": steps[model], "batch": args.batch, "lr": args.lr, "size": args.size}
            workdir = args.runs / name
            ok = finished(summary, name, **record)
            if not ok:
                config = REPO / "configs" / f"{model}_cave_x{ratio}.py"
                overrides = train_overrides(model, args.data, steps[model], args.batch, args.lr, args.size)
                ok = run_recorded(name, train_command(config, workdir, overrides), summary, args.timeout, **record)
            if ok:
                ckpts[model] = workdir
        results[ratio] = compare(scene, ratio, ckpts, args.out / f"x{ratio}")
    args.out.mkdir(parents=True, exist_ok=True)
    md = table(results, steps, args.size)
    (args.out / "cave_table.md").write_text(md)
    (args.out / "cave_table.json").write_text(json.dumps({str(r): v for r, v in results.items()}, indent=2))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
