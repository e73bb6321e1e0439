"""Run an ablation locally, one training run after the other, and write a CSV (and a Markdown table).

The runs are the product of ``--variants`` (config ARGs, e.g. ``noprior`` of
``configs/unfolding_wv2_real.py``) and ``--grid`` (``KEY=V1,V2,...`` overrides, repeatable).
With neither, it runs the FusionNet learning-rate x depth grid of
``experiments/sweeps/fusionnet_lr_depth.yaml`` (without W&B, small step counts), on data that
is available locally (default config: the Wald-reduced WorldView-2 scene of
``configs/fusionnet_wv2_real.py`` under ``$PANSHARP_DATA``)::

    python experiments/ablate.py --steps 300 --out runs/ablate/fusionnet_lr_depth.csv
    python experiments/ablate.py --grid optim.lr=1e-3,3e-3 --grid model.num_res_blocks=1,2 --steps 50
    python experiments/ablate.py --config configs/unfolding_wv2_real.py \\
        --variants base noprior noloss noprior,noloss k2 k8 --steps 400 --heldout \\
        --workdir runs/ablate/unfolding --out runs/ablate/unfolding.csv

(``base`` is the config without an ARG.) The same unfolding ablation as a W&B sweep:
``experiments/sweeps/unfolding_ablation.yaml``.

One row per run: the variant, the grid values, the final training loss, the final and best
validation metrics (the config's validation tiles) and the wall time. ``--heldout`` adds the
scores of the run's final params on the WHOLE held-out region of a real-scene config
(``experiments/real_scene_wv2.py``'s inputs and ``evaluate_reduced``, border cut 0), columns
``heldout_Q2n`` / ``heldout_SAM`` / ``heldout_ERGAS`` / ``heldout_SCC``. Any ``--config.KEY=VALUE``
applies to every run. Each run's workdir (``<workdir>/<run name>``) is replaced.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pansharp_jax.errors import InputError
from pansharp_jax.train.cli_args import load_config, main_args
from pansharp_jax.train.loop import train

REPO = Path(__file__).resolve().parents[1]
METRICS = ("ERGAS", "SAM", "Q2n", "Q_avg", "SCC", "PSNR", "SSIM")
HELDOUT = ("Q2n", "SAM", "ERGAS", "SCC")
FUSIONNET_GRID = ("optim.lr=1e-4,3e-4,1e-3", "model.num_res_blocks=2,4,8")


def parse_grid(items: list[str]) -> list[tuple[str, list[str]]]:
    """``["optim.lr=1e-4,3e-4"]`` -> ``[("optim.lr", ["1e-4", "3e-4"])]``; a malformed item is refused."""
    out = []
    for item in items:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise InputError(f"--grid {item!r} must look like KEY=V1,V2,... (e.g. optim.lr=1e-4,3e-4)")
        out.append((key.strip(), vals))
    return out


def run_name(variant: str, point: dict[str, str]) -> str:
    """A folder name for one run: the variant then ``key-value`` pairs (last key component)."""
    parts = [variant.replace(",", "+")] if variant else []
    parts += [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in point.items()]
    return "_".join(parts) or "base"


def heldout_scorer(config: Any):
    """A function params -> {Q2n, SAM, ERGAS, SCC} on the whole held-out region of a real-scene config."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_scene_wv2 import heldout_inputs, score  # noqa: PLC0415

    from pansharp_jax.methods import from_params  # noqa: PLC0415
    from pansharp_jax.train import parallel  # noqa: PLC0415

    inp = heldout_inputs(config)

    def scores(config: Any, state: Any) -> dict[str, float]:
        params = parallel.to_host(state.params)
        fused = from_params(str(config.model.name), params, config.model).fuse_arrays(
            inp["lrms"], inp["pan"], ratio=inp["ratio"], clip=False
        )
        s = score(fused, inp["gt"], inp["ratio"], inp["max_dn"], cut=0)
        return {f"heldout_{k}": s[k] for k in HELDOUT}

    return scores


def markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    """The CSV rows as a Markdown table (floats to 4 significant digits)."""
    head = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    body = "\n".join(
        "| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |" for r in rows
    )
    return head + body + "\n"


def main(argv: list[str] | None = None) -> int:
    overrides, rest = main_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "fusionnet_wv2_real.py"), help="config file (no :ARG)")
    parser.add_argument("--variants", nargs="+", default=[], help="config ARGs, one run each ('base': no ARG)")
    parser.add_argument("--grid", action="append", default=[], help="KEY=V1,V2,... (repeatable; the product is run)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=0, help="0: evaluate only at the end")
    parser.add_argument("--heldout", action="store_true", help="also score each run on the whole held-out region")
    parser.add_argument("--workdir", default="runs/ablate/fusionnet_lr_depth", help="one sub-folder per run (replaced)")
    parser.add_argument("--out", default="runs/ablate/fusionnet_lr_depth.csv", help="CSV (a .md table beside it)")
    args = parser.parse_args(rest)
    if ":" in Path(args.config).name:
        raise InputError(f"--config {args.config!r}: give the ARGs through --variants, not FILE:ARG")

    default_grid = not args.grid and not args.variants and Path(args.config).name == "fusionnet_wv2_real.py"
    grid = parse_grid(list(FUSIONNET_GRID) if default_grid else args.grid)
    variants = [("" if v == "base" else v) for v in (args.variants or ["base"])]
    points = [dict(zip([k for k, _ in grid], vals)) for vals in itertools.product(*[v for _, v in grid])]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["run", "variant", *[k for k, _ in grid], "steps", "train_loss", *METRICS, "best_step", "best_value"]
    fields += [f"heldout_{k}" for k in HELDOUT] if args.heldout else []
    fields.append("seconds")
    rows: list[dict[str, Any]] = []
    scorer = None
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for variant in variants:
            for point in points:
                spec = f"{args.config}:{variant}" if variant else args.config
                config = load_config(spec, [*overrides, *[f"--config.{k}={v}" for k, v in point.items()]])
                config.steps = args.steps
                config.eval_every = args.eval_every or args.steps
                config.checkpoint.every = 0
                config.optim.warmup_steps = min(int(config.optim.warmup_steps), args.steps // 10)
                config.logging.console = False
                name = run_name(variant, point)
                workdir = Path(args.workdir) / name
                shutil.rmtree(workdir, ignore_errors=True)
                t0 = time.perf_counter()
                result = train(config, workdir, wandb=False)
                row: dict[str, Any] = {
                    "run": name,
                    "variant": variant or "base",
                    **point,
                    "steps": args.steps,
                    "train_loss": result.train_metrics.get("loss", float("nan")),
                    **{k: result.metrics.get(k, float("nan")) for k in METRICS},
                    "best_step": result.best[0] if result.best else "",
                    "best_value": result.best[1] if result.best else "",
                }
                if args.heldout:
                    scorer = scorer or heldout_scorer(config)
                    row.update(scorer(config, result.state))
                row["seconds"] = round(time.perf_counter() - t0, 1)
                writer.writerow(row)
                f.flush()
                rows.append(row)
                print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    out.with_suffix(".md").write_text(markdown(rows, fields), encoding="utf-8")
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
