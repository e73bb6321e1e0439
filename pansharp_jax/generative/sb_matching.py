"""Schrödinger-bridge matching (SBM) for pan-sharpening: a bridge from the upsampled LRMS
to the HRMS, trained without simulation and sampled in a few steps (registry name ``sbm``).

After Cao, Wu, Deng, "Neural Schrödinger Bridge Matching for Pansharpening" (arXiv:2404.11416),
with the paired-bridge closed forms of I²SB (Liu et al. 2023); the paper's own schedule and
network are not public, so every choice below is a config field (``sbm_config``).

Formulation
-----------
Time ``t`` in [0, 1]; the pair is ``X_0 = hrms`` (the target) and ``X_1 = lms`` (the degraded
observation, ``interp23tap`` of the LRMS; the spec's convention). The reference process is a
driftless diffusion ``dX = sqrt(beta(t)) dW``; with ``sigma^2(t) = int_0^t beta`` and total
``V = sigma^2(1)`` (``bridge_var``), write ``F(t) = sigma^2(t) / V`` in [0, 1]. The bridge
between paired endpoints has the Gaussian marginal

    q(X_t | X_0, X_1) = N((1 - F) X_0 + F X_1, V F (1 - F) I),

exactly ``X_0`` at t = 0 and ``X_1`` at t = 1. ``schedule``: ``'symmetric'`` (beta rises
linearly to t = 1/2 and falls back, as I²SB's: ``F = 2 t^2`` for t <= 1/2, ``1 - 2 (1 - t)^2``
after) or ``'constant'`` (the Brownian bridge, ``F = t``). ``V = 0.001`` on the [0, 1] scale
(bridge std 0.016 at t = 1/2) by default, until the official schedule is known: on the WV2
real-scene task 1500 CPU steps with V = 0.001 reach held-out Q2n 0.828 / ERGAS 5.12, where
V = 0.01 (std 0.05, larger than most of the detail to recover) stayed at 0.66 / 6.84.

Training (simulation-free): ``t ~ U(0, 1)`` and ``z ~ N(0, I)`` per sample, ``X_t = mean +
std z`` from the closed form, loss ``|x0^(X_t, t) - X_0|`` (``'l2'`` mean squared or ``'l1'``
mean absolute error, over every element). The network (:class:`~pansharp_jax.nn.unet.UNet`)
sees ``X_t`` and the condition ``concat([lms, pan])`` and the time ``time_scale * t`` (1000:
the UNet's sinusoidal embedding wants integer-like magnitudes); ``predict='residual'`` reads
its output as ``x0^ - lms`` (the default: an untrained net starts at the LMS), ``'x0'`` as x0^.

Sampling: ``steps = N`` network calls on the even grid ``t_k = k / N``, from ``X_1 = lms (+
x1_noise z)`` down to t = 0, one ``lax.scan``. The step from t to s < t draws from the
reference bridge between ``(0, x0^)`` and ``(t, X_t)``:

    X_s ~ N((1 - r) x0^ + r X_t, V F(s) (1 - r) I),   r = F(s) / F(t),

(``sampler='sde'``, I²SB's posterior sampling; the last step, to s = 0, adds no noise and
returns x0^), or the same mean without noise (``'ode'``, I²SB's OT-ODE: deterministic, one step
is one network call). Keys as the diffusion core: ``k_init, k_steps = split(rng)``, the start
noise from ``k_init`` (drawn even when ``x1_noise = 0``), step i (i = 0 at t = 1) from
``split(k_steps, N)[i]``; S samples are :func:`~pansharp_jax.generative.diffusion.draw_many`
over ``split(rng, S)``. Loss keys: ``k_t, k_z, k_1 = split(rng, 3)``, ``t = uniform(k_t, (B,))``,
``z = normal(k_z, x.shape)``, the start noise ``normal(k_1, x.shape)``.

Shapes: every function works on any (B, ...) float32 arrays (NHWC images, or (B, 1) in tests);
``t`` is (B,) float32 in [0, 1]. An x0 predictor is ``x0_fn(params, x_t, t, cond) -> x0^``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.generative.diffusion import draw_many, pansharp_condition
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.unet import UNet

X0Fn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
# make_sampler(params) -> fn(lrms, pan, lms, rng, *, samples, steps) -> (mean, std)
SampleFn = Callable[..., tuple[jax.Array, jax.Array]]
SHAPES = ("symmetric", "constant")
SAMPLERS = ("sde", "ode")
PREDICTIONS = ("residual", "x0")
LOSSES = ("l2", "l1")
FUSE_KEY = 0  # the fixed key of the deterministic output (__call__): the same image every call


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InputError(f"unknown SBM {what} {value!r}: use one of {', '.join(allowed)}")
    return value


@dataclasses.dataclass(frozen=True)
class Bridge:
    """The reference bridge (hashable, so a static argument).

    Attributes:
      var: total variance ``V = int_0^1 beta`` on the [0, 1] data scale (> 0).
      shape: ``'symmetric'`` or ``'constant'`` beta (module docstring).
    """

    var: float = 0.001
    shape: str = "symmetric"

    def __post_init__(self) -> None:
        _check(self.shape, SHAPES, "schedule")
        if not float(self.var) > 0:
            raise InputError(f"bridge_var must be > 0, got {self.var}")

    def frac(self, t: jax.Array) -> jax.Array:
        """``F(t) = sigma^2(t) / V`` in [0, 1] for ``t`` in [0, 1] (any shape, float32)."""
        t = jnp.asarray(t, jnp.float32)
        if self.shape == "constant":
            return t
        return jnp.where(t <= 0.5, 2.0 * t * t, 1.0 - 2.0 * (1.0 - t) ** 2)


def _bcast(a: jax.Array, like: jax.Array) -> jax.Array:
    a = jnp.asarray(a, jnp.float32)
    return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def marginal(bridge: Bridge, x0: jax.Array, x1: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)`` of ``q(X_t | X_0, X_1)``: ``(1 - F) x0 + F x1`` (B, ...) and ``sqrt(V F (1 - F))``
    (broadcastable, (B, 1, ...)); ``t`` (B,) or scalar in [0, 1]."""
    f = _bcast(bridge.frac(t), x0)
    return (1.0 - f) * x0 + f * x1, jnp.sqrt(bridge.var * f * (1.0 - f))


def posterior(bridge: Bridge, x0: jax.Array, x_t: jax.Array, t: jax.Array, s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)`` of the reference bridge at ``s`` between ``(0, x0)`` and ``(t, x_t)``, 0 <= s < t.

    ``mean = (1 - r) x0 + r x_t``, ``std = sqrt(V F(s) (1 - r))``, ``r = F(s) / F(t)``; scalar
    ``t``, ``s``; x0, x_t (B, ...).
    """
    fs, ft = bridge.frac(s), bridge.frac(t)
    r = fs / ft
    return (1.0 - r) * x0 + r * x_t, jnp.sqrt(jnp.maximum(bridge.var * fs * (1.0 - r), 0.0))


def _point_loss(err: jax.Array, loss: str) -> jax.Array:
    return jnp.mean(jnp.square(err)) if _check(loss, LOSSES, "loss") == "l2" else jnp.mean(jnp.abs(err))


def bridge_loss(
    x0_fn: X0Fn, params: Any, x0: jax.Array, x1: jax.Array, cond: Any, rng: jax.Array, bridge: Bridge,
    *, loss: str = "l2", x1_noise: float = 0.0,
) -> jax.Array:  # fmt: skip
    """The bridge-matching loss (float32 scalar) of a batch of pairs ``x0`` (target), ``x1`` (start).

    Draws ``t ~ U(0, 1)`` per sample and ``z ~ N(0, I)`` (keys: module docstring), builds
    ``X_t = mean + std z`` from :func:`marginal` (with ``x1 + x1_noise n`` as the start) and
    compares ``x0_fn(params, X_t, t, cond)`` with ``x0`` by ``loss`` (mean over every element).
    """
    _check(loss, LOSSES, "loss")
    k_t, k_z, k_1 = jax.random.split(rng, 3)
    t = jax.random.uniform(k_t, (x0.shape[0],), jnp.float32)
    x1 = x1 + x1_noise * jax.random.normal(k_1, x1.shape, jnp.float32)
    mean, std = marginal(bridge, x0, x1, t)
    x_t = mean + std * jax.random.normal(k_z, x0.shape, jnp.float32)
    return _point_loss(x0_fn(params, x_t, t, cond).astype(jnp.float32) - x0, loss)


def time_grid(steps: int) -> jax.Array:
    """``(t, s)`` pairs of the ``steps`` sampler steps in execution order: (steps, 2) float32,
    ``t = k / N``, ``s = (k - 1) / N`` for k = N..1 (static sizes)."""
    n = int(steps)
    if n < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    k = jnp.arange(n, 0, -1, dtype=jnp.float32)
    return jnp.stack([k / n, (k - 1.0) / n], axis=1)


def bridge_sample(
    x0_fn: X0Fn, params: Any, cond: Any, x1: jax.Array, rng: jax.Array, bridge: Bridge,
    *, steps: int, sampler: str = "sde", x1_noise: float = 0.0,
) -> jax.Array:  # fmt: skip
    """One sample X_0 (B, ...) float32 from the start ``x1`` (B, ...): ``steps`` network calls in one ``lax.scan``.

    ``sampler``: ``'sde'`` (posterior sampling) or ``'ode'`` (posterior mean, deterministic).
    Keys: module docstring. Pure; jit it with ``steps``/``sampler`` static.
    """
    _check(sampler, SAMPLERS, "sampler")
    k_init, k_steps = jax.random.split(rng)
    x = x1.astype(jnp.float32) + x1_noise * jax.random.normal(k_init, x1.shape, jnp.float32)
    noisy = sampler == "sde"

    def step(x: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        ts, key = xs
        t, s = ts[0], ts[1]
        x0 = x0_fn(params, x, jnp.full((x.shape[0],), t, jnp.float32), cond).astype(jnp.float32)
        mean, std = posterior(bridge, x0, x, t, s)
        return (mean + std * jax.random.normal(key, x.shape, jnp.float32) if noisy else mean), None

    x, _ = jax.lax.scan(step, x, (time_grid(steps), jax.random.split(k_steps, int(steps))))
    return x


def sample_many(
    x0_fn: X0Fn, params: Any, cond: Any, x1: jax.Array, rng: jax.Array, bridge: Bridge,
    *, samples: int, steps: int, sampler: str = "sde", x1_noise: float = 0.0, return_samples: bool = False,
) -> tuple[jax.Array, ...]:  # fmt: skip
    """``samples`` draws of :func:`bridge_sample`, vmapped by :func:`draw_many` (sample s uses
    ``split(rng, samples)[s]``): ``(mean, std[, draws (S, B, ...)])``, std with ddof 0."""
    kw = dict(steps=steps, sampler=sampler, x1_noise=x1_noise)
    return draw_many(lambda k: bridge_sample(x0_fn, params, cond, x1, k, bridge, **kw), rng, samples, return_samples)


# ----------------------------------------------------------------------------- pan-sharpening
def unet_x0_fn(net: UNet, predict: str = "residual", time_scale: float = 1000.0) -> X0Fn:
    """The pan-sharpening x0 predictor of an (unbound) UNet: ``(params, X_t, t, cond) -> x0^``.

    ``cond = concat([lms, pan])`` (N, H, W, C + 1); the UNet gets ``time_scale * t``; its output
    is ``x0^ - lms`` (``predict='residual'``) or ``x0^`` (``'x0'``). Pure (``net.apply``).
    """
    _check(predict, PREDICTIONS, "prediction")

    def x0_fn(params: Any, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        out = net.apply({"params": params}, x_t, time_scale * t, cond).astype(jnp.float32)
        return out + cond[..., : x_t.shape[-1]] if predict == "residual" else out

    return x0_fn


class SBM(nn.Module):
    """Schrödinger-bridge matching (module docstring) with the trainer's own-objective hooks.

    * ``__call__(lrms, pan, lms, train=False)``: initialises the UNet (under ``init``) and
      otherwise returns the deterministic output, the mean of ``eval_samples`` draws of
      ``eval_steps`` steps with the fixed key ``FUSE_KEY``; (N, H, W, C), [0, 1] scale, unclipped.
    * ``training_loss(batch, rng)``: :func:`bridge_loss` of ``(gt, lms)`` with metrics
      ``x0_mse`` (the prediction's MSE) and ``lms_mse`` (the LMS's, the baseline to beat).
    * ``eval_output(batch, rng)``: the same sample mean with the trainer's fixed key.
    * ``make_sampler(params)``: the generative hook of :mod:`pansharp_jax.methods.sources`,
      ``fn(lrms, pan, lms, rng, *, samples, steps) -> (mean, std)``, (N, H, W, C) each.

    The UNet's params sit under ``params['net']``.
    """

    bands: int
    base: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    blocks: int = 1
    groups: int = 8
    attention: bool = False
    bridge_var: float = 0.001
    schedule: str = "symmetric"
    predict: str = "residual"
    loss: str = "l2"
    time_scale: float = 1000.0
    x1_noise: float = 0.0
    sampler: str = "sde"
    eval_steps: int = 5
    eval_samples: int = 2

    def unet(self) -> UNet:
        """An unbound copy of the network (for pure ``apply`` inside scans)."""
        return UNet(self.bands, self.base, tuple(self.mults), self.blocks, self.groups, self.attention, parent=None)

    def bridge(self) -> Bridge:
        """The reference :class:`Bridge` of the config."""
        return Bridge(float(self.bridge_var), str(self.schedule))

    def setup(self) -> None:
        self.net = UNet(self.bands, self.base, tuple(self.mults), self.blocks, self.groups, self.attention)

    def _mean(self, params: Any, lms: jax.Array, pan: jax.Array, rng: jax.Array, samples: int, steps: int) -> tuple[jax.Array, jax.Array]:
        x0_fn = unet_x0_fn(self.unet(), self.predict, self.time_scale)
        return sample_many(x0_fn, params, pansharp_condition(lms, pan), lms, rng, self.bridge(), samples=samples, steps=steps,
                           sampler=self.sampler, x1_noise=self.x1_noise)  # fmt: skip

    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        if lms.shape[-1] != self.bands:
            raise InputError(f"wrong band count: the SBM has {self.bands} bands, the input has {lms.shape[-1]}")
        if self.is_initializing():
            t = jnp.full((lms.shape[0],), self.time_scale, jnp.float32)
            out = self.net(lms, t, pansharp_condition(lms, pan))
            return out + lms if self.predict == "residual" else out
        key = jax.random.PRNGKey(FUSE_KEY)
        return self._mean(self.variables["params"]["net"], lms, pan, key, self.eval_samples, self.eval_steps)[0]

    def training_loss(self, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(loss, {x0_mse, lms_mse}) of a batch (``gt``, ``lms``, ``pan``: NHWC, [0, 1])."""
        gt, lms = batch["gt"].astype(jnp.float32), batch["lms"].astype(jnp.float32)
        seen: dict[str, jax.Array] = {}

        def x0_fn(params: Any, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
            del params  # the bound network
            out = self.net(x_t, self.time_scale * t, cond).astype(jnp.float32)
            seen["x0"] = out + lms if self.predict == "residual" else out
            return seen["x0"]

        cond = pansharp_condition(lms, batch["pan"].astype(jnp.float32))
        value = bridge_loss(x0_fn, None, gt, lms, cond, rng, self.bridge(), loss=self.loss, x1_noise=self.x1_noise)
        return value, {"x0_mse": jnp.mean(jnp.square(seen["x0"] - gt)), "lms_mse": jnp.mean(jnp.square(lms - gt))}

    def eval_output(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        """The mean of ``eval_samples`` draws (``eval_steps`` steps) from key ``rng``: (N, H, W, C)."""
        lms, pan = batch["lms"].astype(jnp.float32), batch["pan"].astype(jnp.float32)
        return self._mean(self.variables["params"]["net"], lms, pan, rng, self.eval_samples, self.eval_steps)[0]

    def make_sampler(self, params: Any) -> SampleFn:
        """``fn(lrms, pan, lms, rng, *, samples, steps) -> (mean, std)`` for trained ``params``
        (the whole tree, holding ``'net'``); (N, H, W, C) each on the [0, 1] scale, unclipped.
        Pure; jit it with ``samples`` and ``steps`` static. Callable on an unbound module."""
        net_params = params["params"]["net"] if "params" in params else params["net"]

        def fn(lrms: jax.Array, pan: jax.Array, lms: jax.Array, rng: jax.Array, *, samples: int, steps: int) -> tuple[jax.Array, jax.Array]:
            del lrms  # the bridge starts from lms
            return self._mean(net_params, jnp.asarray(lms, jnp.float32), jnp.asarray(pan, jnp.float32), rng, samples, steps)

        return fn


def sbm_config(bands: int = 8) -> ml_collections.ConfigDict:
    """The SBM's model config (module docstring for each field's meaning)."""
    return ml_collections.ConfigDict(
        {"name": "sbm", "bands": bands, "base": 32, "mults": (1, 2, 2), "blocks": 1, "groups": 8, "attention": False,
         "bridge_var": 0.001, "schedule": "symmetric", "predict": "residual", "loss": "l2", "time_scale": 1000.0,
         "x1_noise": 0.0, "sampler": "sde", "eval_steps": 5, "eval_samples": 2}
    )  # fmt: skip


def build_sbm(cfg: ml_collections.ConfigDict) -> SBM:
    """The :class:`SBM` of a model config (:func:`sbm_config`); InputError for unknown choices."""
    d = sbm_config(int(cfg.bands))
    d.update({k: cfg[k] for k in d if k in cfg})
    _check(str(d.schedule), SHAPES, "schedule")
    _check(str(d.predict), PREDICTIONS, "prediction")
    _check(str(d.loss), LOSSES, "loss")
    _check(str(d.sampler), SAMPLERS, "sampler")
    if int(d.eval_steps) < 1 or int(d.eval_samples) < 1:
        raise InputError(f"eval_steps and eval_samples must be >= 1, got {d.eval_steps} and {d.eval_samples}")
    return SBM(
        bands=int(d.bands), base=int(d.base), mults=tuple(int(m) for m in d.mults), blocks=int(d.blocks), groups=int(d.groups),
        attention=bool(d.attention), bridge_var=float(d.bridge_var), schedule=str(d.schedule), predict=str(d.predict),
        loss=str(d.loss), time_scale=float(d.time_scale), x1_noise=float(d.x1_noise), sampler=str(d.sampler),
        eval_steps=int(d.eval_steps), eval_samples=int(d.eval_samples),
    )  # fmt: skip


SBM_ENTRY = ModelEntry("sbm", build_sbm, sbm_config, "SBM (Schrödinger-bridge matching from LMS to HRMS, few-step sampler)")

__all__ = [
    "Bridge", "SBM", "SBM_ENTRY", "bridge_loss", "bridge_sample", "build_sbm", "marginal", "posterior", "sample_many",
    "sbm_config", "time_grid", "unet_x0_fn", "FUSE_KEY", "LOSSES", "PREDICTIONS", "SAMPLERS", "SHAPES",
]  # fmt: skip
