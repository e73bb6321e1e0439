"""Floor 3: the one training loop shared by every learned method.

* :func:`~pansharp_jax.train.loop.train`: ``train(config, workdir, resume=False, wandb=False)``.
* :mod:`~pansharp_jax.train.cli_args`: ``load_config(path, overrides)`` for big_vision-style
  ``--config.a.b=value`` overrides.
* :mod:`~pansharp_jax.train.state`, :mod:`~pansharp_jax.train.step`,
  :mod:`~pansharp_jax.train.losses`, :mod:`~pansharp_jax.train.optim`,
  :mod:`~pansharp_jax.train.parallel`, :mod:`~pansharp_jax.train.checkpoint`,
  :mod:`~pansharp_jax.train.logging`, :mod:`~pansharp_jax.train.cluster_cache` (CANNet's k-means
  cache), :mod:`~pansharp_jax.train.workdir` (the run folder: saved ``config.json``, checks):
  the pieces.

Command line: ``python -m pansharp_jax.train --config configs/fusionnet_wv3.py --workdir
runs/fnet [--wandb] [--config.optim.lr=1e-3 ...]``; continue a run with ``python -m
pansharp_jax.train --workdir runs/fnet --resume [--config.KEY=VALUE ...]`` (its saved config).

Submodules are imported lazily so that ``import pansharp_jax.train`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "load_config"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from pansharp_jax.train.loop import train

        return train
    if name == "load_config":
        from pansharp_jax.train.cli_args import load_config

        return load_config
    raise AttributeError(name)
