"""``pansharp train``: the trainer's command line (same options as ``python -m pansharp_jax.train``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pansharp_jax.cli._common import console


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``train`` on the sub-command parser ``sub``."""
    from pansharp_jax.train import __main__ as train_main

    p = sub.add_parser(
        "train", parents=parents, help="train a learned method", description="Train a learned method (same as python -m pansharp_jax.train).",
        epilog="Any config field can be overridden with --config.KEY=VALUE, e.g. --config.optim.lr=1e-3 --config.steps=500.",
    )  # fmt: skip
    train_main.add_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """Train; print one summary line (steps, last loss, best metric, checkpoint folder)."""
    from pansharp_jax.train.__main__ import run

    t0 = time.perf_counter()
    summary = run(args, args.overrides)
    parts = [f"trained {summary['model']} to step {summary['step']} in {time.perf_counter() - t0:.1f} s"]
    if "loss" in summary["train"]:
        parts.append(f"last loss {summary['train']['loss']:.4g}")
    if summary["best"] is not None:
        step, value = summary["best"]
        parts.append(f"best {summary['best_metric']} {value:.4g} at step {step}")
    parts.append(f"checkpoints in {Path(summary['workdir']) / 'checkpoints'}")
    console().print("; ".join(parts), markup=False)
    return 0
