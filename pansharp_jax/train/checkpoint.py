"""Orbax checkpoints: the train state, the data iterator state and the config, atomically.

A checkpoint ``<workdir>/checkpoints/<step>/`` holds three items:
  * ``state``: ``{"step", "params", "opt_state", "rng"}`` (``StandardSave``);
  * ``data``: the iterator state ``{"epoch", "position", "seed"}`` (JSON);
  * ``config``: the run's config as a plain dict (JSON);
and, when the run has a k-means cluster cache (``config.cluster_cache``, CANNet), a fourth:
  * ``clusters``: ``{layer: {"ids": (N,) int64, "indices": (N, P) uint8}}`` NumPy arrays
    (``StandardSave``; :mod:`pansharp_jax.train.cluster_cache`).
Orbax writes into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact (the partial one is cleaned up on restart).

Retention: the last ``keep`` checkpoints, plus the best one by ``best_metric`` (``mode``
'min' or 'max') among checkpoints saved with metrics (those saved after an evaluation).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocm

from pansharp_jax.errors import InputError


class _QuietMissingMetrics(logging.Filter):
    """Drop Orbax's warning for checkpoints saved between evaluations (no metrics, by design)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietMissingMetrics())


ITEMS = ("state", "data", "config", "clusters")
"""The items a checkpoint may hold (``clusters`` only for runs with a cluster cache)."""


def item_handlers() -> dict[str, Any]:
    """Orbax handlers of :data:`ITEMS`: registered up front, so that a manager that has not
    saved yet can restore (and see) every item, ``clusters`` included."""
    return {
        "state": ocp.StandardCheckpointHandler(),
        "data": ocp.JsonCheckpointHandler(),
        "config": ocp.JsonCheckpointHandler(),
        "clusters": ocp.StandardCheckpointHandler(),
    }


class Checkpointer:
    """A thin wrapper over ``orbax.checkpoint.CheckpointManager``.

    Args:
      directory: where step folders go (created if needed).
      keep: how many of the latest checkpoints to keep (>= 1).
      best_metric: the metric ranking checkpoints saved with metrics ('' = none).
      mode: 'min' or 'max' for ``best_metric``.
      async_save: write in a background thread (the state is copied to host first).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        keep: int = 3,
        best_metric: str = "",
        mode: str = "min",
        async_save: bool = True,
    ) -> None:
        if keep < 1:
            raise InputError(f"checkpoint.keep must be >= 1, got {keep}")
        if mode not in ("min", "max"):
            raise InputError(f"checkpoint.best_mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory).absolute()
        self.best_metric, self.mode = best_metric, mode
        policies: list[Any] = [ocm.LatestN(n=keep)]
        best_fn = None
        if best_metric:

            def best_fn(metrics: Mapping[str, Any]) -> float:
                return float(metrics[best_metric])

            policies.append(
                ocm.BestN(get_metric_fn=best_fn, reverse=(mode == "min"), n=1, keep_checkpoints_without_metrics=False)
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocm.AnyPreservationPolicy(policies),
            best_fn=best_fn,
            best_mode=mode,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=item_handlers())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The best step by ``best_metric`` (None when no checkpoint has metrics)."""
        if not self.best_metric:
            return None
        steps = [s for s in self.manager.all_steps() if self.manager.metrics(s) is not None]
        return self.manager.best_step() if steps else None

    def best(self) -> tuple[int, float] | None:
        """(step, value of ``best_metric``) of the best checkpoint, or None."""
        step = self.best_step()
        if step is None:
            return None
        metrics = self.manager.metrics(step)
        return (int(step), float(metrics[self.best_metric])) if metrics and self.best_metric in metrics else None

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(
        self,
        step: int,
        state_tree: Any,
        data_state: Mapping[str, int],
        config: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
        clusters: Mapping[str, Any] | None = None,
    ) -> bool:
        """Save step ``step``; ``metrics`` (plain floats) rank it for the best checkpoint.

        ``clusters``: the cluster cache's arrays (``ClusterCacheTrainer.state_dict()``), saved
        in the same step folder (so with the same atomic rename); None or empty: no such item.
        """
        if metrics is not None and self.best_metric and self.best_metric not in metrics:
            raise InputError(f"checkpoint.best_metric {self.best_metric!r} is not among the metrics {sorted(metrics)}")
        items: dict[str, Any] = {
            "state": ocp.args.StandardSave(state_tree),
            "data": ocp.args.JsonSave(dict(data_state)),
            "config": ocp.args.JsonSave(dict(config)),
        }
        if clusters:
            items["clusters"] = ocp.args.StandardSave(dict(clusters))
        args = ocp.args.Composite(**items)
        clean = None if metrics is None or not self.best_metric else {k: float(v) for k, v in metrics.items()}
        return bool(self.manager.save(int(step), args=args, metrics=clean, force=True))

    def restore(self, step: int | None, abstract_state: Any) -> tuple[Any, dict[str, int], dict[str, Any]]:
        """(state tree, data iterator state, config dict) of ``step`` (default: latest).

        ``abstract_state`` is the state tree (or its ``jax.ShapeDtypeStruct`` s with
        shardings) that fixes structure, dtypes and placement of the result.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise InputError(f"no checkpoint in {self.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self.manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return out["state"], dict(out["data"]), dict(out["config"])

    def params_mismatch(self, step: int, state_tree: Any) -> str | None:
        """How the saved parameters of ``step`` differ from ``state_tree["params"]`` (from the
        checkpoint's metadata, no array read), e.g. ``params['conv1']['kernel']: saved (3, 3, 4, 4),
        now (3, 3, 4, 8)``; None when names and shapes agree (or the metadata cannot be read)."""

        def shapes(tree: Any) -> dict[str, tuple[int, ...]]:
            out = {}
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                key = jax.tree_util.keystr(path)
                if key.startswith("['params']") and getattr(leaf, "shape", None) is not None:
                    out[key[len("['params']") :]] = tuple(int(d) for d in leaf.shape)
            return out

        try:
            saved = shapes(self.manager.item_metadata(int(step))["state"])
        except Exception:  # noqa: BLE001 - no usable metadata: let the restore itself decide
            return None
        now = shapes({"params": state_tree["params"]})
        if not saved:
            return None
        for key in sorted(set(saved) | set(now)):
            a, b = saved.get(key), now.get(key)
            if a != b:
                was, now_is = ("absent" if v is None else str(v) for v in (a, b))
                return f"params{key}: saved {was}, now {now_is}"
        return None

    def restore_clusters(self, step: int | None = None) -> dict[str, Any] | None:
        """The ``clusters`` item of ``step`` (default: latest) as NumPy arrays, or None when the
        checkpoint has none (a run without a cluster cache, or saved before the cache existed)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise InputError(f"no checkpoint in {self.directory}")
        if "clusters" not in self._saved_items(int(step)):
            return None
        out = self.manager.restore(int(step), args=ocp.args.Composite(clusters=ocp.args.StandardRestore()))
        return jax.tree.map(np.asarray, dict(out["clusters"]))

    def _saved_items(self, step: int) -> set[str]:
        meta = self.manager.metadata(step).item_metadata
        return {k for k in ITEMS if k in meta and meta[k] is not None}

    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
