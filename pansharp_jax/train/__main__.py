"""``python -m pansharp_jax.train --config FILE[:ARG] --workdir DIR [--resume] [--no-wandb] [--config.KEY=VALUE ...]``.

The same options make ``pansharp train`` (:mod:`pansharp_jax.cli`), which calls
:func:`add_arguments` and :func:`run` from here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from pansharp_jax.errors import InputError
from pansharp_jax.runtime import use_low_memory_cpu_scheduler


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options (``--config.KEY=VALUE`` overrides are split off before parsing)."""
    parser.add_argument("--config", required=True, help="config file, optionally FILE.py:ARG")
    parser.add_argument(
        "--workdir",
        required=True,
        help="run folder (checkpoints, W&B files); {wandb_run_id} is replaced by $WANDB_RUN_ID (set by W&B sweep agents)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --workdir")
    wb = parser.add_mutually_exclusive_group()
    wb.add_argument(
        "--wandb", dest="wandb", action="store_true", default=None, help="log to W&B (default: config.logging.enabled)"
    )
    wb.add_argument("--no-wandb", dest="wandb", action="store_false", help="W&B disabled")


def run(args: argparse.Namespace, overrides: Sequence[str]) -> dict[str, Any]:
    """Load the config, apply ``overrides``, train; return the run summary.

    The summary is ``{"workdir", "model", "step", "metrics", "train", "best", "best_metric"}``.
    Raises :class:`~pansharp_jax.errors.InputError` for bad configs, overrides or data.
    """
    from pansharp_jax.train.cli_args import load_config

    workdir = str(args.workdir)
    if "{wandb_run_id}" in workdir:
        run_id = os.environ.get("WANDB_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
        workdir = workdir.replace("{wandb_run_id}", run_id)
    config = load_config(args.config, overrides)
    use_wandb = bool(config.logging.enabled) if args.wandb is None else bool(args.wandb)
    from pansharp_jax.train.loop import train
    from pansharp_jax.train.parallel import to_host

    result = train(config, workdir, resume=bool(args.resume), wandb=use_wandb)
    return {
        "workdir": workdir,
        "model": str(config.model.name),
        "step": int(to_host(result.state.step)),
        "metrics": result.metrics,
        "train": result.train_metrics,
        "best": result.best,
        "best_metric": str(config.checkpoint.best_metric),
    }


def main(argv: Sequence[str] | None = None) -> int:
    from pansharp_jax.train.cli_args import main_args

    overrides, rest = main_args(argv)
    parser = argparse.ArgumentParser(prog="python -m pansharp_jax.train", description="Train a learned fusion method.")
    add_arguments(parser)
    args = parser.parse_args(rest)
    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)
    try:
        summary = run(args, overrides)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key in ("workdir", "model", "best_metric"):  # the module's JSON line keeps its historical keys
        summary.pop(key)
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
