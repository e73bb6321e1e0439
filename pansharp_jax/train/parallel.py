"""Data parallelism: one mesh axis ``'data'`` over every device of every process.

* :func:`maybe_initialize_distributed` starts ``jax.distributed`` for multi-host runs when
  the environment asks for it (see its docstring); a single-host run needs nothing.
* The train state is replicated (``PartitionSpec()``); batches are split along their first
  axis (``PartitionSpec('data')``). Each process loads only its own rows of a global batch
  (:class:`~pansharp_jax.data.pipeline.BatchIterator`) and :func:`shard_batch` assembles the
  global array from them.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pansharp_jax.errors import InputError

DATA_AXIS = "data"
_initialized = False


def maybe_initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize`` when the environment describes a multi-process run.

    Read (first match wins):
      * ``PANSHARP_COORDINATOR`` (``host:port``), ``PANSHARP_NUM_PROCESSES``,
        ``PANSHARP_PROCESS_ID`` and optionally ``PANSHARP_LOCAL_DEVICE_IDS`` (``0,1``);
      * the same as ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
      * ``PANSHARP_DISTRIBUTED=auto``: ``jax.distributed.initialize()`` with no arguments
        (cluster auto-detection: Slurm, Open MPI, Cloud TPU...).
    On CPU the gloo collectives are selected. Must run before any other JAX call; calling it
    again is a no-op. Returns True if a multi-process runtime was started.
    """
    global _initialized
    if _initialized:
        return True
    env = os.environ
    addr = env.get("PANSHARP_COORDINATOR") or env.get("JAX_COORDINATOR_ADDRESS")
    nproc = env.get("PANSHARP_NUM_PROCESSES") or env.get("JAX_NUM_PROCESSES")
    pid = env.get("PANSHARP_PROCESS_ID") or env.get("JAX_PROCESS_ID")
    auto = env.get("PANSHARP_DISTRIBUTED", "").lower() == "auto"
    if not addr and not auto:
        return False
    _use_cpu_collectives()
    if addr:
        if nproc is None or pid is None:
            raise InputError(
                "a coordinator address needs the number of processes and this process's id (PANSHARP_NUM_PROCESSES, PANSHARP_PROCESS_ID)"
            )
        local = env.get("PANSHARP_LOCAL_DEVICE_IDS")
        jax.distributed.initialize(
            coordinator_address=addr,
            num_processes=int(nproc),
            process_id=int(pid),
            local_device_ids=[int(i) for i in local.split(",")] if local else None,
        )
    else:
        jax.distributed.initialize()
    _initialized = True
    return True


def _use_cpu_collectives() -> None:
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
    if platforms.split(",")[0].strip() == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` over ``devices`` (default: all devices of all processes)."""
    devs = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devs.reshape(-1), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis over the ``'data'`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Global arrays from this process's rows of a global batch (NumPy, leading axis = batch).

    The local batch size must be a multiple of the process's device count.
    """
    sharding = data_sharding(mesh)
    ndev = len(mesh.local_devices)
    out = {}
    for k, a in local_batch.items():
        if a.shape[0] % ndev:
            raise InputError(f"local batch of {a.shape[0]} is not divisible by the {ndev} local devices")
        out[k] = jax.make_array_from_process_local_data(sharding, np.asarray(a))
    return out


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place host values (identical on every process) on all devices, replicated."""
    sharding = replicated(mesh)

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def to_host(tree: Any) -> Any:
    """NumPy copies of (replicated or sharded) arrays, gathered across processes if needed."""

    def get(x: Any) -> np.ndarray:
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def sync(name: str) -> None:
    """A barrier across processes (no-op for one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
