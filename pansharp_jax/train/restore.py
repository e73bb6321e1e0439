"""Load the parameters and the model config of a trained run from its workdir.

``restore_params("runs/fnet")`` opens ``runs/fnet/checkpoints`` (the folder itself is
accepted too), reads the run config saved with the checkpoints, picks the best checkpoint
by the run's ``checkpoint.best_metric`` (among those saved with validation metrics) or,
when there is none, the latest one, and returns its parameters with the model config::

    r = restore_params("runs/fnet")
    hrms = models.fuse(r.params, lrms, pan, model_config=r.model_config)

The state tree to restore into is built exactly as the trainer builds it
(:func:`pansharp_jax.train.loop.init_state` with the saved config), so the restore follows
the trainer's state layout.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from pansharp_jax.errors import InputError

__all__ = ["Restored", "checkpoint_dir", "restore_params"]


class _QuietReadOnly(logging.Filter):
    """Drop Orbax's notice that a read-only manager's folder is read only (that is the point)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietReadOnly())


@dataclasses.dataclass
class Restored:
    """A restored checkpoint.

    Attributes:
      params: the model parameters (nested dict of NumPy arrays).
      model_config: the model config saved with the run (``name``, ``bands``, sizes).
      step: the checkpoint's step.
      which: ``"best"`` (by ``best_metric``), ``"latest"`` or ``"step"`` (asked for).
      metrics: the validation metrics saved with the checkpoint (None if it has none).
      config: the whole run config as a plain dict.
      directory: the checkpoints folder.
      path: the checkpoint's own folder, ``directory / str(step)``.
    """

    params: Any
    model_config: ml_collections.ConfigDict
    step: int
    which: str
    metrics: dict[str, float] | None
    config: dict[str, Any]
    directory: Path
    path: Path

    def describe(self) -> str:
        """One line for the user: ``using checkpoint <path> (best, step N)`` (``latest``, or the
        asked-for step as ``step N``)."""
        how = f"step {self.step}" if self.which == "step" else f"{self.which}, step {self.step}"
        return f"using checkpoint {self.path} ({how})"


def checkpoint_dir(workdir: str | os.PathLike[str]) -> Path:
    """The checkpoints folder of ``workdir`` (``<workdir>/checkpoints``, or ``workdir`` itself)."""
    path = Path(workdir)
    if not path.is_dir():
        raise InputError(f"checkpoint folder not found: {path}")
    for cand in (path / "checkpoints", path):
        if cand.is_dir() and any(p.name.isdigit() and p.is_dir() for p in cand.iterdir()):
            return cand
    raise InputError(f"no checkpoint in {path}: expected a training workdir holding checkpoints/<step>/")


def _tuples(x: Any) -> Any:
    """JSON lists back to tuples (configs hold tuples; Flax module fields want hashable values)."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


def _pick(manager: Any, steps: list[int], metric: str, mode: str) -> tuple[int, str, dict[str, float] | None]:
    scored = []
    for s in steps:
        m = manager.metrics(s) if metric else None
        if m and metric in m:
            scored.append((float(m[metric]), s, {k: float(v) for k, v in m.items()}))
    if scored:
        sign = 1.0 if mode == "min" else -1.0  # ties: the later step
        _, step, metrics = min(scored, key=lambda t: (sign * t[0], -t[1]))
        return step, "best", metrics
    step = max(steps)
    m = manager.metrics(step)
    return step, "latest", ({k: float(v) for k, v in m.items()} if m else None)


def _manager(directory: Path) -> Any:
    """A read-only Orbax manager: never creates, saves, deletes or cleans anything (a run may
    be writing into the folder at the same time)."""
    import orbax.checkpoint as ocp

    from pansharp_jax.train.checkpoint import item_handlers

    options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory, options=options, item_handlers=item_handlers())


def _saved_config(manager: Any, step: int) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    return dict(manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])


def restore_params(workdir: str | os.PathLike[str], *, step: int | None = None, prefer: str = "best") -> Restored:
    """Params and model config of a checkpoint in a training workdir.

    Args:
      workdir: the run's ``--workdir`` (or its ``checkpoints`` folder).
      step: a given step; None picks by ``prefer``.
      prefer: ``"best"`` (by the run's ``checkpoint.best_metric``; the latest checkpoint
        when none was saved with metrics) or ``"latest"``.

    Raises:
      InputError: no checkpoint, an unknown step, or a checkpoint without a model config.
    """
    import jax
    import orbax.checkpoint as ocp

    from pansharp_jax.train import parallel
    from pansharp_jax.train.loop import init_state

    if prefer not in ("best", "latest"):
        raise InputError(f"prefer must be 'best' or 'latest', got {prefer!r}")
    directory = checkpoint_dir(workdir).absolute()
    manager = _manager(directory)
    try:
        steps = sorted(int(s) for s in manager.all_steps())
        if not steps:
            raise InputError(f"no complete checkpoint in {directory}")
        config = _saved_config(manager, steps[-1])
        if step is not None:
            if int(step) not in steps:
                raise InputError(f"no checkpoint for step {step} in {directory}; have {', '.join(map(str, steps))}")
            m = manager.metrics(int(step))
            chosen, which, metrics = int(step), "step", ({k: float(v) for k, v in m.items()} if m else None)
        else:
            cp = config.get("checkpoint", {}) or {}
            metric = str(cp.get("best_metric", "") or "") if prefer == "best" else ""
            chosen, which, metrics = _pick(manager, steps, metric, str(cp.get("best_mode", "min")))
        if chosen != steps[-1]:
            config = _saved_config(manager, chosen)
        model = config.get("model")
        if not isinstance(model, dict) or not model.get("name"):
            raise InputError(f"checkpoint {directory / str(chosen)} holds no model config (config.model.name)")
        cfg = ml_collections.ConfigDict(_tuples(config))
        bands = int(cfg.model.bands)
        ratio = int(cfg.data.get("ratio", 4)) if "data" in cfg else 4
        side = 8
        example = {
            "lrms": np.zeros((1, side, side, bands), np.float32),
            "pan": np.zeros((1, side * ratio, side * ratio, int(cfg.model.get("guide_bands", 1))), np.float32),  # MHIF: K-band guide
            "lms": np.zeros((1, side * ratio, side * ratio, bands), np.float32),
        }
        mesh = parallel.make_mesh()
        # The trainer's state layout, traced abstractly: no parameter is initialised or compiled.
        shapes = jax.eval_shape(lambda: init_state(cfg, example, mesh)[0].arrays())
        rep = parallel.replicated(mesh)
        target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), shapes)
        tree = manager.restore(chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
        params = jax.tree.map(np.asarray, parallel.to_host(tree["params"]))
    finally:
        manager.close()
    return Restored(params, cfg.model, chosen, which, metrics, config, directory, directory / str(chosen))
