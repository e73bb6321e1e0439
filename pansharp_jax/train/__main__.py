"""``python -m pansharp_jax.train [--config FILE[:ARG]] --workdir DIR [--resume] [--wandb | --no-wandb] [--config.KEY=VALUE ...]``.

The same options make ``pansharp train`` (:mod:`pansharp_jax.cli`), which calls
:func:`add_arguments` and :func:`run` from here.

Which config a run trains with:
  * a new run: ``--config FILE[:ARG]`` (required), then the ``--config.KEY=VALUE`` overrides;
  * ``--resume`` in a workdir holding a run: the config saved in the workdir
    (``<workdir>/config.json``, or for older workdirs the one stored with the latest
    checkpoint), then the overrides on top; each value that changes is printed as
    ``config.KEY: old -> new``. ``--config`` is optional there. When it is given anyway, the
    saved values still win for every key the overrides leave alone (a note lists the keys where
    the file differs); the file only supplies keys the saved config lacks (fields added
    since), and its ``model.name`` must be the saved run's. To change a saved value, override
    it: ``--resume --config.steps=200000``;
  * ``--resume`` in a workdir without a run: like a new run (``--config`` required).

W&B is off unless ``--wandb`` is given (``--no-wandb``, the default, is still accepted);
``config.logging.enabled`` does not switch it on.

Exit status of ``python -m pansharp_jax.train``: 0 done, 2 bad input
(:class:`~pansharp_jax.errors.InputError`, one line on stderr), 130 stopped by SIGINT and 143
by SIGTERM (a checkpoint of the current step was saved first, and the resume command printed;
:class:`~pansharp_jax.train.loop.TrainingInterrupted` carries the code as ``exit_code``).
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
from pansharp_jax.runtime import configure_entry_point


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options (``--config.KEY=VALUE`` overrides are split off before parsing)."""
    parser.add_argument(
        "--config",
        default=None,
        help="config file, optionally FILE.py:ARG (optional with --resume: the workdir's saved config is used)",
    )
    parser.add_argument(
        "--workdir",
        required=True,
        help="run folder (checkpoints, config.json, W&B files); {wandb_run_id} is replaced by $WANDB_RUN_ID (set by W&B sweep agents)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in --workdir with its saved config (plus any --config.KEY=VALUE)",
    )
    wb = parser.add_mutually_exclusive_group()
    wb.add_argument("--wandb", dest="wandb", action="store_true", default=False, help="log to W&B (default: off)")
    wb.add_argument("--no-wandb", dest="wandb", action="store_false", help="W&B off (the default)")


def resolve_workdir(workdir: str | os.PathLike[str]) -> str:
    """``workdir`` with ``{wandb_run_id}`` replaced by ``$WANDB_RUN_ID`` (else the current time)."""
    text = os.fspath(workdir)
    if "{wandb_run_id}" in text:
        run_id = os.environ.get("WANDB_RUN_ID") or time.strftime("%Y%m%d-%H%M%S")
        text = text.replace("{wandb_run_id}", run_id)
    return text


def _merge_saved(file_cfg: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with the keys only ``file_cfg`` has added (saved values win everywhere else)."""
    out = dict(saved)
    for key, value in file_cfg.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _merge_saved(value, out[key])
    return out


def resolve_config(
    config_path: str | None, workdir: str, resume: bool, overrides: Sequence[str]
) -> tuple[Any, list[str]]:
    """The ConfigDict a run trains with (see the module docstring) and notes to print.

    Raises:
      InputError: no ``--config`` for a new run, a bad config or override, or a ``--config``
        for another model than the workdir's saved run.
    """
    from pansharp_jax.train import workdir as run_dir
    from pansharp_jax.train.cli_args import apply_overrides, config_from_dict, config_to_dict, load_config

    saved = run_dir.saved_config(workdir) if resume and os.path.isdir(workdir) else None
    if saved is None:
        if not config_path:
            where = f"{workdir} holds no run to resume; " if resume else ""
            raise InputError(f"{where}--config FILE is required (it is optional only with --resume in a workdir holding a run)")
        return load_config(config_path, overrides), []
    notes: list[str] = []
    base = saved
    if config_path:
        file_dict = config_to_dict(load_config(config_path))
        file_model = str((file_dict.get("model") or {}).get("name", ""))
        run_dir.check_model(workdir, saved, file_model)
        changes = run_dir.config_changes(saved, file_dict)
        differs = [k for k, _, _ in changes if _has(saved, k) and _has(file_dict, k)]
        if differs:
            shown = ", ".join(differs[:8]) + (f" and {len(differs) - 8} more" if len(differs) > 8 else "")
            notes.append(
                f"--config {config_path} differs from the run's saved config in {shown}; the saved values are kept "
                "(change one with --config.KEY=VALUE)"
            )
        base = _merge_saved(file_dict, saved)
    config = config_from_dict(base)
    apply_overrides(config, overrides)
    return config, notes


def _has(tree: dict[str, Any], dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def remove_if_empty(workdir: str | os.PathLike[str]) -> bool:
    """Delete ``workdir`` when it holds folders only and no file at all; True if deleted."""
    import shutil

    for _, _, files in os.walk(workdir):
        if files:
            return False
    shutil.rmtree(workdir, ignore_errors=True)
    return True


def run(args: argparse.Namespace, overrides: Sequence[str]) -> dict[str, Any]:
    """Resolve the config (module docstring), apply ``overrides``, train; return the run summary.

    The summary is ``{"workdir", "model", "step", "metrics", "train", "best", "best_metric"}``.

    Raises:
      InputError: bad configs, overrides, workdir or data, or a loss that became NaN/inf.
      TrainingInterrupted: SIGINT / SIGTERM (a ``KeyboardInterrupt``; checkpoint saved first).
    """
    workdir = resolve_workdir(args.workdir)
    config, notes = resolve_config(getattr(args, "config", None), workdir, bool(args.resume), overrides)
    for note in notes:
        print(note, flush=True)
    use_wandb = bool(getattr(args, "wandb", False))
    from pansharp_jax.train.loop import train
    from pansharp_jax.train.parallel import to_host

    existed = os.path.exists(workdir)
    try:
        result = train(config, workdir, resume=bool(args.resume), wandb=use_wandb)
    except BaseException:
        if not existed:
            remove_if_empty(workdir)  # a run that failed before writing anything leaves no folder
        raise
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
    """``python -m pansharp_jax.train``; returns the exit status (module docstring)."""
    from pansharp_jax.train.cli_args import main_args

    overrides, rest = main_args(argv)
    parser = argparse.ArgumentParser(prog="python -m pansharp_jax.train", description="Train a learned fusion method.")
    add_arguments(parser)
    args = parser.parse_args(rest)
    configure_entry_point()  # XLA flags and the compilation cache, before the first JAX computation
    from pansharp_jax.train.loop import TrainingInterrupted

    try:
        summary = run(args, overrides)
    except InputError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        return e.exit_code
    for key in ("workdir", "model", "best_metric"):  # the module's JSON line keeps its historical keys
        summary.pop(key)
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
