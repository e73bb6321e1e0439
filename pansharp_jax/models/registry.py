"""The model registry: method name -> Flax module builder and default model config.

The trainer, the CLI, benchmarks and notebooks reach learned models only through here.

Module contract (every registered model):
  ``module.apply({'params': params}, lrms, pan, lms, train=False) -> hrms`` with
  lrms (N, h, w, C), pan (N, H, W, 1), lms (N, H, W, C) = interp23tap(lrms), all float32
  on the [0, 1] scale (DN / (2**bits - 1)); hrms (N, H, W, C) on the same scale (not
  clipped). ``train`` switches dropout/batch statistics where a model has them.

Models with their own objective (self-supervised pre-training, generative models, losses
with extra terms) keep the contract above for ``__call__`` (used to initialise and to fuse)
and add ``training_loss(self, batch, rng) -> (loss, {name: scalar})``, which the trainer
uses instead of ``loss(fused, gt)``, and optionally ``eval_output(self, batch, rng) ->
(N, H, W, C)``, the image validation scores against ``batch['gt']`` (called with a fixed
key). ``batch`` holds ``lrms``, ``pan``, ``lms``, ``gt`` as above.

A new method adds one line to ``_ENTRIES`` ("name": "module:attribute" of a
:class:`ModelEntry`); modules are imported lazily so that importing the registry is cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import ml_collections

from pansharp_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered method.

    Attributes:
      name: registry key (lower case, e.g. ``'fusionnet'``).
      build: model config (a ConfigDict with at least ``name`` and ``bands``) -> module.
      default_config: () -> the model ConfigDict with the published sizes.
      description: one line for ``pansharp`` listings and the README table.
    """

    name: str
    build: Callable[[ml_collections.ConfigDict], nn.Module]
    default_config: Callable[[], ml_collections.ConfigDict]
    description: str = ""


# name -> "python.module:attribute" holding a ModelEntry
_ENTRIES: dict[str, str] = {
    "pnn": "pansharp_jax.models.cnn_baselines:PNN_ENTRY",
    "pannet": "pansharp_jax.models.cnn_baselines:PANNET_ENTRY",
    "dicnn": "pansharp_jax.models.cnn_baselines:DICNN_ENTRY",
    "msdcnn": "pansharp_jax.models.cnn_baselines:MSDCNN_ENTRY",
    "drpnn": "pansharp_jax.models.cnn_baselines:DRPNN_ENTRY",
    "fusionnet": "pansharp_jax.models.cnn_baselines:FUSIONNET_ENTRY",
    "lagnet": "pansharp_jax.models.cnn_baselines:LAGNET_ENTRY",
    "fusionmamba": "pansharp_jax.models.fusion_mamba:FUSIONMAMBA_ENTRY",
    "le_mamba": "pansharp_jax.models.le_mamba:LE_MAMBA_ENTRY",
    "cannet": "pansharp_jax.models.canconv:CANNET_ENTRY",
    "cmt": "pansharp_jax.models.cmt:CMT_ENTRY",
    "mae": "pansharp_jax.models.mae:MAE_ENTRY",
    "unfolding": "pansharp_jax.models.unfolding:UNFOLDING_ENTRY",
    "infn": "pansharp_jax.models.infn:INFN_ENTRY",
    "feinfn": "pansharp_jax.models.feinfn:FEINFN_ENTRY",
    "ssdiff": "pansharp_jax.generative.ssdiff:SSDIFF_ENTRY",
    "panadapter": "pansharp_jax.models.panadapter:PANADAPTER_ENTRY",
    "sbm": "pansharp_jax.generative.sb_matching:SBM_ENTRY",
    "crossdiff": "pansharp_jax.generative.crossdiff:CROSSDIFF_ENTRY",
}


def names() -> list[str]:
    """All registered method names, sorted."""
    return sorted(_ENTRIES)


def get(name: str) -> ModelEntry:
    """The entry for ``name`` (case-insensitive); InputError listing known names otherwise."""
    key = name.strip().lower().replace("-", "_")
    if key not in _ENTRIES:
        raise InputError(f"unknown model '{name}'; known: {', '.join(names()) or 'none'}")
    module_name, attr = _ENTRIES[key].split(":")
    entry = getattr(importlib.import_module(module_name), attr)
    if not isinstance(entry, ModelEntry):
        raise TypeError(f"registry line for {key} does not point at a ModelEntry")
    return entry


def default_config(name: str) -> ml_collections.ConfigDict:
    """The model config with the published sizes for ``name`` (a fresh copy)."""
    return get(name).default_config()


def build_model(model_config: ml_collections.ConfigDict | dict[str, Any]) -> nn.Module:
    """Build the Flax module described by ``model_config`` (its ``name`` picks the method)."""
    cfg = ml_collections.ConfigDict(model_config) if isinstance(model_config, dict) else model_config
    if "name" not in cfg:
        raise InputError("model config has no 'name'")
    return get(cfg.name).build(cfg)
