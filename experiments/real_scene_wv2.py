"""A learned method on a real WorldView-2 scene against every classical method, on a held-out region.

Trains (or resumes) ``configs/fusionnet_wv2_real.py`` (or ``--config`` another method's
real-scene config, e.g. ``configs/cmt_wv2_real.py``): Wald-reduced patches of the
full-resolution scene ``fr/wv2_pnn.mat`` (under ``$PANSHARP_DATA``), right quarter of the
MS grid held out. Then scores, at reduced resolution, on the WHOLE held-out quarter (not the
80 x 80 validation tiles):

* inputs: the held-out region of the scene cut off first, then degraded on its own by the
  Wald protocol with the WV2 MTF (``pipeline.wald_reduce``, float64): LRMS (h/4, w/4, 8) and
  PAN at the MS resolution (h, w, 1); the reference (GT) is the original MS of the region;
* the learned method: the best checkpoint by the validation metric (``checkpoint.best_metric``) and
  the last one, applied fully convolutionally to the whole region (float32, LMS =
  ``interp23tap`` of the LRMS, output not clipped);
* every method of ``classical.METHODS`` on exactly the same LRMS / PAN, in float64 under
  ``jax.enable_x64``;
* ``metrics.evaluate_reduced(..., ratio=4, max_dn=2047, block=32)`` (the toolbox's
  ``indexes_evaluation``) with border cut 0 (every pixel of the quarter; the primary table)
  and with the toolbox's cut of 21 pixels.

Note: the training run picks its best checkpoint on the validation tiles, which are tiles of
this same held-out quarter; the table therefore also lists the last checkpoint, which
involves no choice made on held-out data.

Writes ``<workdir>/heldout_table.md`` and ``<workdir>/heldout_scores.json`` and prints the
table. Usage::

    python experiments/real_scene_wv2.py --workdir runs/wv2_real --steps 3000
    python experiments/real_scene_wv2.py --workdir runs/wv2_real --steps 3000 --eval-only
    python experiments/real_scene_wv2.py --steps 500 --config.optim.lr=1e-3   # any override

Without ``--fresh``, a workdir that already holds checkpoints is resumed (training goes on
to ``--steps``; a finished run is only re-evaluated). W&B is off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax import classical
from pansharp_jax.data import pipeline, wald
from pansharp_jax.data.io import load_scene
from pansharp_jax.methods import from_params, resolve
from pansharp_jax.metrics import evaluate_reduced
from pansharp_jax.models import registry
from pansharp_jax.train import parallel
from pansharp_jax.train.checkpoint import Checkpointer
from pansharp_jax.train.cli_args import load_config, main_args
from pansharp_jax.train.loop import init_state, train

REPO = Path(__file__).resolve().parents[1]
KEYS = ("Q2n", "SAM", "ERGAS", "SCC", "Q_avg", "PSNR")
HEADLINE = ("Q2n", "SAM", "ERGAS")  # must beat every classical method in these
HIGHER_BETTER = {"Q2n": True, "Q_avg": True, "SCC": True, "PSNR": True, "SSIM": True, "SAM": False, "ERGAS": False}


def heldout_inputs(config: Any) -> dict[str, Any]:
    """The Wald-reduced held-out region of the config's scene: lrms, pan, lms (float64), gt."""
    data = config.data
    scene = load_scene(
        pipeline.resolve_path(str(data.scene), str(data.root or "")), sensor=str(data.sensor or "") or None
    )
    r = int(scene.ratio)
    ms, pan = np.asarray(scene.lrms, np.float64), np.asarray(scene.pan, np.float64)
    h, w = ms.shape[:2]
    h, w = h - h % r, w - w % r
    _, box = pipeline.split_holdout(h, w, str(data.holdout_side), float(data.holdout_fraction), multiple=r)
    gt = ms[box.r0 : box.r1, box.c0 : box.c1]
    pan_full = pan[box.r0 * r : box.r1 * r, box.c0 * r : box.c1 * r]
    lrms, pan_lr = pipeline.wald_reduce(gt, pan_full, scene.sensor, r)
    with jax.enable_x64(True):
        lms = np.asarray(wald.interp23tap(jnp.asarray(lrms, jnp.float64), r))
    return {
        "lrms": lrms,
        "pan": pan_lr,
        "lms": lms,
        "gt": gt,
        "sensor": scene.sensor,
        "ratio": r,
        "max_dn": scene.max_dn,
        "box": box,
        "scene_shape": (ms.shape, pan.shape),
    }


def load_params(config: Any, workdir: Path, example: dict[str, np.ndarray]) -> dict[str, tuple[int, Any]]:
    """{"best": (step, params), "last": (step, params)} from the run's checkpoints."""
    mesh = parallel.make_mesh()
    state, _ = init_state(config, example, mesh)
    ck = config.checkpoint
    ckpt = Checkpointer(
        workdir / "checkpoints", keep=int(ck.keep), best_metric=str(ck.best_metric), mode=str(ck.best_mode)
    )
    try:
        out = {}
        last = ckpt.latest_step()
        best = ckpt.best_step()
        if last is None:
            raise SystemExit(f"no checkpoint in {workdir / 'checkpoints'}")
        for tag, step in (("best", best if best is not None else last), ("last", last)):
            tree, _, _ = ckpt.restore(step, state.arrays())
            out[tag] = (int(step), parallel.to_host(tree["params"]))
        return out
    finally:
        ckpt.close()


def score(fused: Any, gt: np.ndarray, ratio: int, max_dn: float, cut: int) -> dict[str, float]:
    s = evaluate_reduced(np.asarray(fused, np.float64), gt, ratio=ratio, max_dn=max_dn, block=32, cut=cut)
    return {k: float(v) for k, v in s.items()}


def fmt_table(rows: list[tuple[str, dict[str, float]]], best_classical: dict[str, float], learned: str) -> str:
    head = "| method | " + " | ".join(KEYS) + " |\n|---|" + "---:|" * len(KEYS) + "\n"
    lines = []
    for name, s in rows:
        cells = []
        for k in KEYS:
            v = s[k]
            txt = f"{v:.4f}" if k in ("Q2n", "SCC", "Q_avg") else f"{v:.3f}"
            if k in best_classical and v == best_classical[k] and not name.startswith(learned):
                txt = f"*{txt}*"  # best classical value
            cells.append(txt)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def best_of(rows: list[tuple[str, dict[str, float]]]) -> dict[str, float]:
    out = {}
    for k in KEYS:
        vals = [s[k] for _, s in rows if np.isfinite(s[k])]
        out[k] = max(vals) if HIGHER_BETTER[k] else min(vals)
    return out


def beats(s: dict[str, float], best: dict[str, float]) -> dict[str, bool]:
    return {k: (s[k] > best[k]) if HIGHER_BETTER[k] else (s[k] < best[k]) for k in HEADLINE}


def main(argv: list[str] | None = None) -> int:
    overrides, rest = main_args(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs" / "fusionnet_wv2_real.py"))
    p.add_argument("--workdir", default="runs/wv2_real")
    p.add_argument("--steps", type=int, default=0, help="total training steps (0: the config's)")
    p.add_argument("--fresh", action="store_true", help="delete the workdir first instead of resuming")
    p.add_argument("--eval-only", action="store_true", help="skip training; score the checkpoints in the workdir")
    p.add_argument("--no-console", action="store_true", help="no progress bar (for log files)")
    args = p.parse_args(rest)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)

    config = load_config(args.config, overrides)
    if args.steps:
        config.steps = int(args.steps)
        # a warm-up longer than a tenth of a short run would eat most of it
        config.optim.warmup_steps = min(int(config.optim.warmup_steps), int(args.steps) // 10)
    config.logging.enabled = False
    if args.no_console:
        config.logging.console = False
    workdir = Path(args.workdir)
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)), "
          f"{os.cpu_count()} CPUs visible", flush=True)
    train_seconds = None
    if not args.eval_only:
        has_ckpt = (workdir / "checkpoints").is_dir() and any((workdir / "checkpoints").iterdir())
        t0 = time.perf_counter()
        result = train(config, workdir, resume=has_ckpt, wandb=False)
        train_seconds = time.perf_counter() - t0
        done = int(config.steps) - result.start_step
        if done > 0:
            print(f"trained steps {result.start_step} -> {config.steps} in {train_seconds:.0f} s "
                  f"({train_seconds / done:.3f} s/step incl. compile and evaluations)", flush=True)
        else:
            print(f"nothing to train: the run in {workdir} is at step {result.start_step} already", flush=True)
            train_seconds = None
        print(f"best {config.checkpoint.best_metric} on the validation tiles (step, value): {result.best}", flush=True)

    t0 = time.perf_counter()
    inp = heldout_inputs(config)
    r, max_dn, sensor = inp["ratio"], inp["max_dn"], inp["sensor"]
    gt = inp["gt"]
    print(f"held-out region {inp['box']} of the MS grid {inp['scene_shape'][0][:2]}: "
          f"GT {gt.shape}, LRMS {inp['lrms'].shape}, PAN {inp['pan'].shape}", flush=True)

    example = {k: inp[k][None].astype(np.float32) for k in ("lrms", "pan", "lms")}
    ckpts = load_params(config, workdir, example)
    fused: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    model = registry.get(config.model.name).description.split(" (")[0].split(":")[0] or str(config.model.name)
    for tag, (step, params) in ckpts.items():
        net = from_params(str(config.model.name), params, config.model)
        fused[tag] = net.fuse_arrays(inp["lrms"], inp["pan"], ratio=r, clip=False)
        labels[tag] = f"{model} ({tag} ckpt, step {step})"
    for name in classical.METHODS:  # through the method API, raw (unclipped) outputs in float64
        method = resolve(name)
        fused[name] = method.fuse_arrays(inp["lrms"], inp["pan"], sensor=sensor, ratio=r, clip=False)
        labels[name] = method.label

    report: dict[str, Any] = {
        "config": args.config,
        "steps": int(config.steps),
        "checkpoints": {tag: step for tag, (step, _) in ckpts.items()},
        "region": vars(inp["box"]) if hasattr(inp["box"], "__dict__") else str(inp["box"]),
        "gt_shape": list(gt.shape),
        "tables": {},
    }
    md = [
        f"# {model} vs classical methods, WV2 `{config.data.scene}`, held-out {config.data.holdout_side} "
        f"{config.data.holdout_fraction:g} (reduced resolution)\n",
        f"Region: MS rows {inp['box'].r0}:{inp['box'].r1}, cols {inp['box'].c0}:{inp['box'].c1} of the "
        f"{inp['scene_shape'][0][0]}x{inp['scene_shape'][0][1]} MS grid; GT = its original MS "
        f"{gt.shape[0]}x{gt.shape[1]}x{gt.shape[2]}; inputs = its Wald reduction (LRMS "
        f"{inp['lrms'].shape[0]}x{inp['lrms'].shape[1]}, PAN {inp['pan'].shape[0]}x{inp['pan'].shape[1]}). "
        f"{model} trained {config.steps} steps ({config.loss}, lr {config.optim.lr:g} {config.optim.schedule}, "
        f"batch {config.batch_size}, patch {config.data.patch} stride {config.data.stride}). "
        f"`evaluate_reduced(ratio={r}, max_dn={max_dn:g}, block=32)`; classical methods in float64; "
        f"outputs not clipped. *italic* = best classical value.\n",
    ]
    all_ok = True
    for cut in (0, 21):
        rows = [(labels[k], score(v, gt, r, max_dn, cut)) for k, v in fused.items()]
        classical_rows = [(n, s) for n, s in rows if not n.startswith(model)]
        best = best_of(classical_rows)
        verdicts = {n: beats(s, best) for n, s in rows if n.startswith(model)}
        title = "border cut 0 (every pixel of the quarter)" if cut == 0 else "border cut 21 (the toolbox's)"
        table = fmt_table(rows, best, model)
        md.append(f"\n## {title}\n\n{table}")
        for n, v in verdicts.items():
            said = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in v.items())
            line = f"- {n}: beats the best classical in {said}"
            md.append(line + "\n")
            if n.startswith(f"{model} (best") and cut == 0:
                all_ok = all(v.values())
        report["tables"][f"cut{cut}"] = {"scores": dict(rows), "best_classical": best, "verdicts": verdicts}
    text = "".join(md)
    (workdir / "heldout_table.md").write_text(text)
    (workdir / "heldout_scores.json").write_text(json.dumps(report, indent=1, default=str))
    print(text)
    print(f"evaluation took {time.perf_counter() - t0:.0f} s; wrote {workdir / 'heldout_table.md'}", flush=True)
    if train_seconds is not None:
        print(f"training wall time {train_seconds:.0f} s")
    print(f"{model} (best ckpt) beats the best classical method in Q2n, SAM and ERGAS (cut 0):",
          "yes" if all_ok else "NO")
    return 0


if __name__ == "__main__":
    sys.exit(main())
