"""CANNet's per-sample k-means cluster cache in the trainer (the official training's cache).

CANNet runs k-means in three blocks (``rb1``, ``rb2``, ``rb3``) on every forward. The
official training stores each training sample's cluster indices and, by a policy of epochs
(:func:`pansharp_jax.nn.canconv.cache_mode_for_epoch`), decides per epoch:

* ``"init"`` (epoch 1): k-means from scratch; the indices are stored;
* ``"update"``: k-means warm-started from the stored indices' cluster centres; stored again;
* ``"ready"``: the stored indices are the clustering; no k-means runs (the cheap epochs).

Switch (``configs/default.py``): ``config.cluster_cache.enabled`` (default False) and
``config.cluster_cache.policy``, a period in epochs (``"2"``) or ``"last:period,...,period"``
(``"10:1,100:10,300:20,50"``, the official default: update every epoch up to 10, every 10th up
to 100, every 20th up to 300, then every 50th; see :func:`parse_policy`). Off, the trainer runs
exactly the plain :func:`~pansharp_jax.train.step.make_train_step` loop; on, for a model
without k-means layers, :func:`from_config` refuses the config. Evaluation always clusters
afresh (as the official code).

Per step (:meth:`ClusterCacheTrainer.train_step`), with the batch's dataset sample indices
(:meth:`~pansharp_jax.data.pipeline.BatchIterator.peek_indices` for this process's rows, and
:meth:`~pansharp_jax.data.pipeline.BatchIterator.peek_global_indices` for the whole batch):

* mode = ``cache.mode(epoch)``; an ``"update"`` or ``"ready"`` batch with a sample not in the
  cache runs as ``"init"`` (the whole batch, fresh k-means, stored): a sample left out by
  epoch 1's dropped incomplete batch (``N % B`` of them), or a cache switched on at a resume;
* ``"init"`` / ``"update"``: the jitted variant computes k-means (fresh / warm-started from
  the cached rows fed in) and returns the indices sown by the model; they are stored for the
  global batch's sample ids (``cache.put``). The device-to-host copy is deferred to the start
  of the next step (or the next checkpoint), so the host loads the next batch while the device
  still works;
* ``"ready"``: ``cache.get`` of this process's sample ids, sharded like the batch
  (:func:`~pansharp_jax.train.parallel.shard_batch`), fed to the ``"ready"`` variant.

Each mode is its own :func:`~pansharp_jax.train.step.make_cluster_train_step` (the mode is
static), built once per run and compiled on its first use: at most three compilations per run,
none per step (the shapes never change). Every process holds the whole cache (the global
batch's indices are gathered), so a sample that moves to another process next epoch is found
there, and every process takes the same mode at the same step.

Epochs: the epoch of step ``s`` (the update taking ``s`` to ``s + 1``, 0-based) is
``s // (N // B) + 1`` (1-based, as the policy) for N training samples and global batch B:
the sampler drops an epoch's incomplete last batch, so an epoch is exactly ``N // B`` steps and
this equals the data iterator's epoch + 1. It depends only on the step, so a resumed run takes
the modes an uninterrupted run takes.

Checkpoints: :meth:`ClusterCacheTrainer.state_dict` (``{layer: {"ids": (N,), "indices": (N,
P) uint8}}``) is saved as the ``clusters`` item of every checkpoint, in the same atomic Orbax
step folder as the train state and the iterator state (:mod:`pansharp_jax.train.checkpoint`),
and restored on resume, so a killed run resumes with the cache it had: same modes, same
clusters, same parameters. The policy is not stored: the config's is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from pansharp_jax.errors import InputError
from pansharp_jax.nn.canconv import ClusterCache
from pansharp_jax.train import losses, parallel
from pansharp_jax.train.precision import FP32, Policy
from pansharp_jax.train.state import TrainState
from pansharp_jax.train.step import CLUSTER_MODES, Metrics, make_cluster_train_step

__all__ = ["ClusterCacheTrainer", "cluster_models", "epoch_of_step", "from_config", "parse_policy"]

DEFAULT_POLICY = "10:1,100:10,300:20,50"


def cluster_models() -> dict[str, Callable[[Mapping[str, Any]], dict[str, jax.Array]]]:
    """Registry name -> ``'intermediates'`` -> ``{layer: (B, P)}`` sown k-means indices, for
    every model that takes ``kmeans_indices`` / ``kmeans_mode`` (imported lazily)."""
    from pansharp_jax.models.canconv import kmeans_indices_from

    return {"cannet": kmeans_indices_from}


def parse_policy(policy: Any) -> int | list[Any]:
    """A cache policy for :class:`~pansharp_jax.nn.canconv.ClusterCache` from the config.

    ``"2"`` or ``2`` -> update every 2nd epoch; ``"10:1,100:10,300:20,50"`` (or
    ``[[10, 1], [100, 10], [300, 20], 50]``) -> ``[[10, 1], [100, 10], [300, 20], 50]``: up to
    epoch 10 every epoch, up to 100 every 10th, up to 300 every 20th, then every 50th.
    """

    def positive(x: Any) -> int:
        v = int(x)
        if v < 1 or (isinstance(x, float) and not x.is_integer()):
            raise ValueError(x)
        return v

    try:
        if isinstance(policy, str):
            parts = [p.strip() for p in policy.split(",") if p.strip()]
            items: Sequence[Any] = [tuple(p.split(":")) if ":" in p else p for p in parts]
        elif isinstance(policy, (int, np.integer)) and not isinstance(policy, bool):
            return positive(policy)
        else:
            items = list(policy)
        out: list[Any] = []
        for item in items:
            if isinstance(item, (str, int, np.integer)) and not isinstance(item, bool):
                out.append(positive(item))
            else:
                last, period = item
                out.append([positive(last), positive(period)])
        if not out or any(isinstance(x, int) for x in out[:-1]):
            raise ValueError(policy)
    except (TypeError, ValueError):
        raise InputError(
            f"config.cluster_cache.policy must be a period ('2') or 'last:period,...,period' "
            f"('{DEFAULT_POLICY}'), got {policy!r}"
        ) from None
    return out[0] if len(out) == 1 and isinstance(out[0], int) else out


def epoch_of_step(step: int, num_examples: int, global_batch_size: int) -> int:
    """The 1-based epoch of the update that takes ``step`` to ``step + 1``: ``step // (N // B) + 1``."""
    return int(step) // (int(num_examples) // int(global_batch_size)) + 1


class ClusterCacheTrainer:
    """Runs the train steps of a cluster-cached model and keeps the cache (module docstring).

    Args:
      cache: the store (its ``policy`` decides the modes).
      extract: ``'intermediates'`` -> ``{layer: (B, P)}`` (from :func:`cluster_models`).
      mesh: the data-parallel mesh. loss, schedule: as for ``make_train_step``.
      num_examples: training samples N. global_batch_size: B.
      donate: donate the state buffers to the step (as the plain step does).
      policy: the mixed-precision policy of the steps (:mod:`pansharp_jax.train.precision`).
    """

    def __init__(
        self,
        cache: ClusterCache,
        extract: Callable[[Mapping[str, Any]], dict[str, jax.Array]],
        mesh: Mesh,
        *,
        loss: str | losses.LossFn,
        schedule: optax.Schedule | None,
        num_examples: int,
        global_batch_size: int,
        donate: bool = True,
        policy: Policy = FP32,
    ) -> None:
        self.cache, self.mesh = cache, mesh
        self.num_examples, self.global_batch_size = int(num_examples), int(global_batch_size)
        self.steps = {
            m: make_cluster_train_step(mesh, m, extract=extract, loss=loss, schedule=schedule, donate=donate, policy=policy)
            for m in CLUSTER_MODES
        }
        self.mode_counts = dict.fromkeys(CLUSTER_MODES, 0)  # steps run per mode (this run)
        self._pending: tuple[np.ndarray, Any] | None = None  # (global ids, device indices) to store

    @staticmethod
    def batch_ids(it: Any) -> tuple[np.ndarray, np.ndarray]:
        """(this process's, the global batch's) sample ids of ``it``'s next batch; call before ``next(it)``."""
        return it.peek_indices(), it.peek_global_indices()

    def mode(self, step: int, global_ids: Sequence[int]) -> str:
        """The mode of ``step`` for a batch: the policy's, or ``"init"`` when a sample is not
        cached (call :meth:`flush` first: the previous step's samples may be among them)."""
        mode = self.cache.mode(epoch_of_step(step, self.num_examples, self.global_batch_size))
        return mode if mode == "init" or self.cache.has(global_ids) else "init"

    def train_step(
        self,
        state: TrainState,
        batch: dict[str, jax.Array],
        ids: tuple[np.ndarray, np.ndarray],
        step: int,
        rng: Any,
    ) -> tuple[TrainState, Metrics]:
        """One update of ``batch`` (sharded) whose sample ids are ``ids`` (:meth:`batch_ids`)."""
        local_ids, global_ids = ids
        self.flush()
        mode = self.mode(step, global_ids)
        self.mode_counts[mode] += 1
        if mode == "init":
            state, metrics, fresh = self.steps["init"](state, batch, rng)
        else:
            cached = parallel.shard_batch(self.cache.get(local_ids), self.mesh)
            if mode == "ready":
                return self.steps["ready"](state, batch, rng, cached)
            state, metrics, fresh = self.steps["update"](state, batch, rng, cached)
        self._pending = (np.asarray(global_ids), fresh)
        return state, metrics

    def flush(self) -> None:
        """Store the indices of the last ``"init"``/``"update"`` step (waits for that step)."""
        if self._pending is not None:
            ids, fresh = self._pending
            self._pending = None
            self.cache.put(ids, parallel.to_host(fresh))

    def state_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """The cache as arrays for a checkpoint: ``{layer: {"ids": (N,) int64, "indices": (N, P)}}``."""
        self.flush()
        return {layer: dict(entry) for layer, entry in self.cache.state_dict()["layers"].items()}

    def load_state_dict(self, layers: Mapping[str, Mapping[str, Any]] | None) -> None:
        """Restore :meth:`state_dict` (None or empty: an empty cache, e.g. an older checkpoint)."""
        self._pending = None
        self.cache.load_state_dict({"policy": self.cache.policy, "layers": dict(layers or {})})


def from_config(
    config: Any,
    mesh: Mesh,
    *,
    loss: str | losses.LossFn,
    schedule: optax.Schedule | None,
    num_examples: int,
    policy: Policy = FP32,
) -> ClusterCacheTrainer | None:
    """The cache trainer of ``config`` (None when ``config.cluster_cache.enabled`` is off or absent).

    Raises:
      InputError: the cache is on for a model without k-means layers, or a bad policy.
    """
    cc = config.get("cluster_cache", None)
    if cc is None or not bool(cc.get("enabled", False)):
        return None
    name = str(config.model.name).strip().lower()
    models = cluster_models()
    if name not in models:
        raise InputError(
            f"config.cluster_cache.enabled needs a model with k-means layers ({', '.join(sorted(models))}); "
            f"'{config.model.name}' has none: set config.cluster_cache.enabled=False"
        )
    cache = ClusterCache(parse_policy(cc.get("policy", DEFAULT_POLICY)))
    return ClusterCacheTrainer(
        cache,
        models[name],
        mesh,
        loss=loss,
        schedule=schedule,
        num_examples=num_examples,
        global_batch_size=int(config.batch_size),
        policy=policy,
    )
