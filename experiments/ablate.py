"""Run the FusionNet learning-rate x depth grid locally, one run after the other, and write a CSV.

The same grid as ``experiments/sweeps/fusionnet_lr_depth.yaml``, without W&B and with small
step counts, on data that is available locally (default: the Wald-reduced WorldView-2 scene of
``configs/fusionnet_wv2_real.py`` under ``$PANSHARP_DATA``)::

    python experiments/ablate.py --steps 300 --out runs/ablate/fusionnet_lr_depth.csv
    python experiments/ablate.py --lrs 1e-3 3e-3 --depths 1 2 --steps 50 --config.batch_size=8

One row per grid point: the grid values, the final training loss, the final and best validation
metrics, and the wall time. Any ``--config.KEY=VALUE`` is applied to every run.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

from pansharp_jax.train.cli_args import load_config, main_args
from pansharp_jax.train.loop import train

REPO = Path(__file__).resolve().parents[1]
METRICS = ("ERGAS", "SAM", "Q2n", "Q_avg", "SCC", "PSNR", "SSIM")


def main(argv: list[str] | None = None) -> int:
    overrides, rest = main_args(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "fusionnet_wv2_real.py"))
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8], help="FusionNet residual blocks")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=0, help="0: evaluate only at the end")
    parser.add_argument("--workdir", default="runs/ablate/fusionnet_lr_depth", help="one sub-folder per run (replaced)")
    parser.add_argument("--out", default="runs/ablate/fusionnet_lr_depth.csv")
    args = parser.parse_args(rest)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["lr", "num_res_blocks", "steps", "train_loss", *METRICS, "best_step", "best_value", "seconds"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for lr in args.lrs:
            for depth in args.depths:
                config = load_config(args.config, overrides)
                config.optim.lr = lr
                config.model.num_res_blocks = depth
                config.steps = args.steps
                config.eval_every = args.eval_every or args.steps
                config.checkpoint.every = 0
                config.optim.warmup_steps = min(int(config.optim.warmup_steps), args.steps // 10)
                config.logging.console = False
                workdir = Path(args.workdir) / f"lr{lr:g}_blocks{depth}"
                shutil.rmtree(workdir, ignore_errors=True)
                t0 = time.perf_counter()
                result = train(config, workdir, wandb=False)
                row = {
                    "lr": lr,
                    "num_res_blocks": depth,
                    "steps": args.steps,
                    "train_loss": result.train_metrics.get("loss", float("nan")),
                    **{k: result.metrics.get(k, float("nan")) for k in METRICS},
                    "best_step": result.best[0] if result.best else "",
                    "best_value": result.best[1] if result.best else "",
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                writer.writerow(row)
                f.flush()
                print(
                    ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                    flush=True,
                )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
