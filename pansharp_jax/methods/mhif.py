"""MHIF methods behind :func:`~pansharp_jax.methods.resolve`: classical baselines and INR models.

MHIF scenes (``Scene(task="mhif")``) pair an LR-HSI ``lrms`` (h, w, B) with a K-band HR-MSI
guide ``pan`` (H, W, K). :class:`MhifSource` provides

* the classical baselines of :mod:`pansharp_jax.classical.mhif` (``bicubic``, ``glp_hs``,
  ``cnmf``; run in float64 with their defaults: the ``"zsl"`` degradation, CNMF's SRF estimated
  per image), and
* the learned ``infn`` / ``feinfn`` from a ``pansharp train`` workdir (``ckpt=``); no released
  weights exist;
* ``le_mamba`` / ``fusionmamba`` checkpoints trained with a K-band guide (``model.guide_bands``
  > 1, e.g. ``configs/le_mamba_cave_x4.py``); their 1-band pan-sharpening checkpoints and
  released weights are left to the pan-sharpening source.

A learned network's ``lms`` is the MATLAB-bicubic upsampled LR-HSI (the ``HSI_up`` the training
arrays hold), computed from the LR-HSI it is given (tiles: from the window).

:class:`MhifMethod` is a :class:`~pansharp_jax.methods.base.Method` whose
:meth:`~MhifMethod.fuse_arrays` takes a guide with any number of bands. The source is asked
before the built-in ones (``sources.py`` registers it first) so that ``infn`` / ``feinfn`` get
an MHIF runner instead of the pan-sharpening one.

``precision="bf16"`` (``pansharp fuse --precision bf16``) runs the learned models in bf16 as
the pan-sharpening ones do (:mod:`pansharp_jax.methods.sources`); the bicubic ``lms`` is made
in float32 before the cast.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.methods.base import GLOBAL, LOCAL, Method, finish_product

CLASSICAL = {"bicubic": "Bicubic", "glp_hs": "GLP-HS", "cnmf": "CNMF"}
MODELS = ("infn", "feinfn")
GUIDED = ("le_mamba", "fusionmamba")  # pan-sharpening nets that also train with a K-band guide


@dataclasses.dataclass(frozen=True)
class MhifMethod(Method):
    """A :class:`Method` for MHIF: ``pan`` is the K-band HR-MSI guide (K >= 1)."""

    def fuse_arrays(self, lrms: Any, pan: Any, *, sensor: Any = None, ratio: int | None = None, clip: bool = True) -> np.ndarray:
        """lrms (h, w, B) or (N, h, w, B), pan (H, W, K) or (N, H, W, K) on [0, 1] -> (N,) H, W, B float64."""
        from pansharp_jax.data.sensors import get_sensor

        lr, p = np.asarray(lrms, np.float64), np.asarray(pan, np.float64)
        single = lr.ndim == 3
        if single:
            lr, p = lr[None], (p[None] if p.ndim == 3 else p[None, ..., None])
        if lr.ndim != 4 or p.ndim != 4 or p.shape[0] != lr.shape[0]:
            raise InputError(f"lrms must be (h, w, B) or (N, h, w, B) and pan (H, W, K) alike; got {lr.shape} and {p.shape}")
        r = int(ratio) if ratio is not None else p.shape[1] // max(lr.shape[1], 1)
        if p.shape[1:3] != (r * lr.shape[1], r * lr.shape[2]):
            raise InputError(f"guide {p.shape[1]}x{p.shape[2]} is not ratio {r} x LR-HSI {lr.shape[1]}x{lr.shape[2]}")
        self.check(lr.shape[-1], r, "the input")
        out = np.asarray(self.fuse_batch(lr, p, get_sensor(sensor), r), np.float64)
        if out.shape != (*p.shape[:3], lr.shape[-1]):
            raise RuntimeError(f"method {self.name} returned shape {out.shape}, expected {(*p.shape[:3], lr.shape[-1])}")
        out = finish_product(out) if clip else out
        return out[0] if single else out


def _classical(key: str) -> MhifMethod:
    from pansharp_jax.methods.sources import _provenance

    def fuse_batch(lrms: np.ndarray, pan: np.ndarray, sensor: Any, ratio: int, lms: Any = None) -> np.ndarray:
        import jax

        from pansharp_jax.classical import mhif

        del sensor, lms
        fn = getattr(mhif, key)
        with jax.enable_x64(True):
            if key == "cnmf":  # the SRF is estimated per image
                return np.stack([np.asarray(fn(None, a, b, ratio=int(ratio))) for a, b in zip(lrms, pan)])
            return np.asarray(fn(None, lrms, pan, ratio=int(ratio)), np.float64)

    label = CLASSICAL[key]
    local = key == "bicubic"  # GLP-HS and CNMF use whole-image statistics
    return MhifMethod(
        key, label, fuse_batch, "mhif", margin_fn=(lambda r: 3 * r) if local else (lambda r: 32 * r),
        receptive=LOCAL if local else GLOBAL, origin="classical (MHIF)", tags=_provenance(key, label, "mhif"),
        dtype="float64",
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _jitted_apply() -> Any:
    """``(module, params, lrms, pan, ratio) -> hrms`` jitted (module, ratio static); lms = bicubic(lrms)."""
    import jax

    from pansharp_jax.data.resize import imresize_bicubic

    def apply(module: Any, params: Any, lrms: Any, pan: Any, ratio: int) -> Any:
        return module.apply({"params": params}, lrms, pan, imresize_bicubic(lrms, ratio), train=False)

    return jax.jit(apply, static_argnames=("module", "ratio"))


def _apply(module: Any, params: Any, lrms: Any, pan: Any, ratio: int) -> Any:
    return _jitted_apply()(module, params, lrms, pan, ratio=int(ratio))


def mhif_from_params(
    name: str,
    params: Any,
    model_config: Any,
    *,
    origin: str = "parameters in memory",
    tags: Mapping[str, str] | None = None,
    precision: Any = None,
) -> MhifMethod:
    """An :class:`MhifMethod` for a registered MHIF model (``infn``, ``feinfn``) with parameters at hand.

    ``precision``: None / ``"fp32"``, ``"bf16"`` or a :class:`~pansharp_jax.train.precision.Policy`
    (as :func:`~pansharp_jax.methods.sources.from_params`).
    """
    from pansharp_jax.data.resize import imresize_bicubic
    from pansharp_jax.methods.sources import _fp32, _model_label, _provenance, as_policy, network_fn, precision_provenance
    from pansharp_jax.models import registry

    module = registry.build_model(model_config)
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    policy = as_policy(precision)
    mixed_net = network_fn(params, model_config, policy, upsample=imresize_bicubic) if policy != _fp32() else None

    def run(lrms: Any, pan: Any, ratio: int) -> Any:
        return mixed_net(lrms, pan) if mixed_net is not None else _apply(module, params, lrms, pan, int(ratio))

    def fuse_batch(lrms: np.ndarray, pan: np.ndarray, sensor: Any, ratio: int, lms: Any = None) -> np.ndarray:
        del sensor, lms  # the network's lms is always the bicubic HSI_up of the LR-HSI it gets
        return np.asarray(run(np.asarray(lrms, np.float32), np.asarray(pan, np.float32), int(ratio)))

    def jax_fn(sensor: Any, ratio: int) -> Any:
        return lambda lrms, pan: run(lrms, pan, int(ratio))

    blocks = int(model_config.get("blocks", 4))
    label = _model_label(name)
    global_rf = name in ("feinfn", *GUIDED)  # FFTs / selective scans over the whole image
    tags, origin = precision_provenance(dict(tags) if tags is not None else _provenance(name, label, "mhif"), origin, policy)
    return MhifMethod(
        name, label, fuse_batch, "mhif",
        margin_fn=(lambda r: 32 * r) if global_rf else (lambda r: (2 * blocks + 5) * r),
        receptive=GLOBAL if global_rf else LOCAL, bands=int(model_config.bands), origin=origin,
        tags=tags, jax_fn=jax_fn,
    )  # fmt: skip


def _guided_checkpoint(ckpt: Any) -> bool:
    """Whether workdir ``ckpt`` holds a run whose model took a guide of more than one band."""
    from pansharp_jax.train.workdir import saved_config

    if ckpt is None or not Path(ckpt).is_dir():
        return False
    model = (saved_config(ckpt) or {}).get("model", {}) or {}
    return int(model.get("guide_bands", 1) or 1) > 1


class MhifSource:
    """MHIF classical baselines, ``infn`` / ``feinfn`` checkpoints (``ckpt=WORKDIR``), and
    ``le_mamba`` / ``fusionmamba`` checkpoints trained with a K-band guide."""

    name = "mhif"
    options: tuple[str, ...] = ("weights", "ckpt", "precision", "matmul_precision")

    def names(self) -> list[str]:
        return [*CLASSICAL, *MODELS]

    def resolve(self, name: str, opts: Mapping[str, Any]) -> Method | None:
        used = sorted(k for k, v in opts.items() if v is not None)
        if name in CLASSICAL:
            if used:
                raise InputError(f"method '{name}' is classical (MHIF) and takes no {', '.join('--' + u for u in used)}")
            return _classical(name)
        if name in GUIDED and not _guided_checkpoint(opts.get("ckpt")):
            return None  # a pan-sharpening request: the built-in source answers it
        if name not in (*MODELS, *GUIDED):
            return None
        other = [k for k in used if k not in self.options]
        if other:
            raise InputError(f"method '{name}' takes no {', '.join('--' + o for o in other)}")
        from pansharp_jax.methods.sources import option_policy

        policy = option_policy(opts)  # a bad name fails before the checkpoint is read
        if opts.get("weights") is not None:
            raise InputError(f"no released weights for {name}: train one (pansharp train) and give --ckpt WORKDIR")
        if opts.get("ckpt") is None:
            raise InputError(f"method '{name}' is a learned model: give --ckpt WORKDIR (a 'pansharp train' run)")
        from pansharp_jax.methods.sources import _model_label, _provenance
        from pansharp_jax.train.restore import restore_params

        ckpt = opts["ckpt"]
        restored = restore_params(ckpt)
        if str(restored.model_config.name).lower() != name:
            raise InputError(f"--ckpt {ckpt} holds a {restored.model_config.name} model, not {name}")
        data = restored.config.get("data", {}) or {}
        where = Path(restored.directory) / str(restored.step)
        origin = f"checkpoint {where} ({restored.which}, step {restored.step})"
        tags = _provenance(name, _model_label(name), "mhif", checkpoint=f"{Path(ckpt).name} step {restored.step} ({restored.which})")
        tags = {**tags, "trained_sensor": "", "trained_ratio": str(data.get("ratio") or "")}
        return mhif_from_params(name, restored.params, restored.model_config, origin=origin, tags=tags, precision=policy)
