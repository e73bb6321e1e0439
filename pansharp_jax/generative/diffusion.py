"""The diffusion core: noise schedules, eps / x0 / v parameterisations, the DDPM loss and
vmapped DDPM / DDIM samplers, shared by every generative method (SSDiff, SB matching, ...).

Conventions
-----------
* **Timesteps** are integer indices ``t`` in ``[0, T)``; ``alpha_bar[t] = prod_{i<=t} (1 - beta_i)``
  is the signal fraction *after* step ``t`` (the paper's ``t + 1``). ``x_t = sqrt(ab_t) x0 +
  sqrt(1 - ab_t) eps``. The model always receives these original indices (int32, shape (B,)),
  also when sampling with fewer steps; a network that wants ``[0, 1]`` divides by ``T``.
* **Model.** ``apply_fn(params, x_t, t, cond) -> prediction`` with ``x_t`` (B, ...) float32,
  ``t`` (B,) int32, ``cond`` any array (or None) with leading dimension B; the prediction has
  the shape of ``x_t`` and means eps, x0 or v (``parameterisation``), with
  ``v = sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022).
* **Shapes.** Everything works on any ``(B, ...)`` array: NHWC images, or (B, 1) scalars in tests.
* **Pan-sharpening.** ``x0`` is the residual ``hrms - lms`` (``target='residual'``, the default,
  as SSDiff) or ``hrms`` itself (``target='image'``), on the [0, 1] data scale; the condition is
  ``concat([lms, pan], -1)`` (N, H, W, C + 1). The residual is added back to every sample in
  :func:`sample_hrms` (and so to the mean; the std is unchanged); models never see ``hrms``.

Samplers
--------
``steps = N <= T`` network evaluations on the evenly spaced sub-sequence
``tau_i = round(i (T - 1) / (N - 1))``, i = 0..N-1 (``tau = [T - 1]`` for N = 1), run from
``tau_{N-1}`` down to ``tau_0`` as one ``lax.scan``; the step from ``tau_i`` goes to
``tau_{i-1}`` and the last one to "clean" (``ab_prev = 1``), returning the model's x0 estimate.

* **DDIM** (Song et al. 2021), with ``eta`` >= 0:
  ``x_prev = sqrt(ab_prev) x0^ + sqrt(1 - ab_prev - s^2) eps^ + s z``,
  ``s = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)``. ``eta = 0`` is
  deterministic given ``x_T``; ``eta = 1`` equals DDPM with the small variance.
* **DDPM ancestral** on the respaced schedule (Nichol & Dhariwal 2021): the betas of the
  sub-sequence are recomputed from the kept alpha-bars, ``beta'_i = 1 - ab[tau_i] / ab[tau_{i-1}]``
  (``ab[tau_{-1}] = 1``), so the N-step chain has exactly the marginals ``ab[tau_i]`` of the
  T-step one; then ``x_prev ~ N(c0 x0^ + c1 x_t, var)`` with the posterior
  ``c0 = sqrt(ab_prev) beta' / (1 - ab_t)``, ``c1 = sqrt(1 - beta') (1 - ab_prev) / (1 - ab_t)``
  and ``var = beta' (1 - ab_prev) / (1 - ab_t)`` (``variance='small'``) or ``beta'``
  (``'large'``); no noise is added on the last step. N = T is plain DDPM.
* ``clip_x0=(lo, hi)`` clips x0^ at every step (and eps^ is recomputed from it), as
  improved-diffusion's ``clip_denoised``.
* The sub-sequence keeps both ends, so the last network call is at t = 0 and the first at
  t = T - 1 (DDIM's ``range(0, T, T // N)`` starts lower). Near t = T - 1 the cosine schedule's
  ``ab`` is ~1e-9: an eps-model's x0^ = (x - sqrt(1 - ab) eps^) / sqrt(ab) is then ill-conditioned,
  so few-step sampling wants the x0 or v parameterisation, or ``clip_x0``.

Keys
----
``sample(..., rng)``: ``k_init, k_steps = split(rng)``; ``x_T = normal(k_init, shape)``; the
step run i-th (i = 0 first, at the highest t) uses ``split(k_steps, N)[i]``.
``sample_many(..., samples=S, rng)``: sample s is ``sample(..., rng=split(rng, S)[s])``,
drawn for all s at once by ``vmap`` (:func:`draw_many`) — so S vmapped samples equal S separate
calls, up to float32 rounding (a batched convolution may sum in another order).
``diffusion_loss(..., rng)``: ``k_t, k_noise = split(rng)``; ``t = randint(k_t, (B,), 0, T)``,
``noise = normal(k_noise, x0.shape)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pansharp_jax.errors import InputError

ApplyFn = Callable[[Any, jax.Array, jax.Array, Any], jax.Array]
PARAMETERISATIONS = ("eps", "x0", "v")
SAMPLERS = ("ddim", "ddpm")
TARGETS = ("residual", "image")
LOSSES = ("l2", "l1")
SCHEDULES = ("linear", "cosine")


# ----------------------------------------------------------------------------- schedules
@struct.dataclass
class Schedule:
    """A discrete noise schedule (a frozen pytree), each array (T,) float32.

    Attributes:
      betas: beta_t in (0, 1).
      alphas: 1 - beta_t.
      alpha_bar: cumulative product of ``alphas`` (computed in float64, stored float32).
    """

    betas: jax.Array
    alphas: jax.Array
    alpha_bar: jax.Array

    @property
    def T(self) -> int:  # noqa: N802 - the usual name
        """Number of diffusion steps (static: the arrays' length)."""
        return int(self.betas.shape[0])


def schedule_from_betas(betas: Any) -> Schedule:
    """A :class:`Schedule` from betas (T,) in (0, 1); alpha-bar is a float64 cumulative product."""
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or b.size < 1 or not np.all((b > 0) & (b < 1)):
        raise InputError(f"betas must be a non-empty 1-D array in (0, 1), got shape {b.shape}")
    a = 1.0 - b
    return Schedule(
        betas=jnp.asarray(b, jnp.float32), alphas=jnp.asarray(a, jnp.float32), alpha_bar=jnp.asarray(np.cumprod(a), jnp.float32)
    )


def linear_schedule(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's linear schedule: ``beta_t`` evenly spaced from ``beta_start`` to ``beta_end``.

    The defaults are Ho et al.'s for T = 1000 (they are not rescaled for other T).
    """
    if int(T) < 1:
        raise InputError(f"T must be >= 1, got {T}")
    return schedule_from_betas(np.linspace(beta_start, beta_end, int(T), dtype=np.float64))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal's cosine schedule: ``ab(t) = f(t) / f(0)``, ``f(t) = cos^2((t/T + s)/(1 + s) pi/2)``.

    ``beta_t = min(1 - f(t + 1) / f(t), max_beta)`` for index t in [0, T) (the clipping only
    bites at the last steps, where f -> 0), and alpha-bar is the product of the clipped betas.
    """
    if int(T) < 1:
        raise InputError(f"T must be >= 1, got {T}")
    steps = np.arange(int(T) + 1, dtype=np.float64) / int(T)
    f = np.cos((steps + s) / (1 + s) * np.pi / 2) ** 2
    return schedule_from_betas(np.minimum(1.0 - f[1:] / f[:-1], max_beta))


def make_schedule(name: str = "cosine", T: int = 1000) -> Schedule:
    """The schedule called ``name`` (``'linear'`` or ``'cosine'``) with its default constants."""
    key = str(name).lower()
    if key not in SCHEDULES:
        raise InputError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}")
    return linear_schedule(T) if key == "linear" else cosine_schedule(T)


def timesteps(T: int, steps: int) -> np.ndarray:
    """The evenly spaced sub-sequence of ``steps`` indices of [0, T): (steps,) int32, increasing.

    ``round(i (T - 1) / (steps - 1))``, i = 0..steps-1: starts at 0 and ends at T - 1;
    ``[T - 1]`` for one step. Static (NumPy), so it fixes the sampler's shapes.
    """
    T, steps = int(T), int(steps)
    if not 1 <= steps <= T:
        raise InputError(f"steps must be in [1, T={T}], got {steps}")
    if steps == 1:
        return np.array([T - 1], np.int32)
    return np.round(np.arange(steps) * (T - 1) / (steps - 1)).astype(np.int32)


def respaced_betas(schedule: Schedule, taus: np.ndarray) -> jax.Array:
    """The betas of the sub-chain on ``taus``: ``1 - ab[tau_i] / ab[tau_{i-1}]`` (``ab[tau_{-1}] = 1``)."""
    ab = schedule.alpha_bar[jnp.asarray(taus)]
    prev = jnp.concatenate([jnp.ones((1,), ab.dtype), ab[:-1]])
    return 1.0 - ab / prev


# ----------------------------------------------------------------------------- parameterisations
def _bcast(ab: jax.Array, like: jax.Array) -> jax.Array:
    """(B,) or scalar alpha-bar reshaped to broadcast against ``like`` (B, ...)."""
    ab = jnp.asarray(ab, jnp.float32)
    return ab.reshape(ab.shape + (1,) * (like.ndim - ab.ndim)) if ab.ndim else ab


def x0_from_eps(x_t: jax.Array, eps: jax.Array, ab: jax.Array) -> jax.Array:
    """``(x_t - sqrt(1 - ab) eps) / sqrt(ab)``; ``ab`` scalar or (B,)."""
    ab = _bcast(ab, x_t)
    return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def eps_from_x0(x_t: jax.Array, x0: jax.Array, ab: jax.Array) -> jax.Array:
    """``(x_t - sqrt(ab) x0) / sqrt(1 - ab)``; ``ab`` scalar or (B,)."""
    ab = _bcast(ab, x_t)
    return (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)


def v_from_x0_eps(x0: jax.Array, eps: jax.Array, ab: jax.Array) -> jax.Array:
    """The velocity ``v = sqrt(ab) eps - sqrt(1 - ab) x0``; ``ab`` scalar or (B,)."""
    ab = _bcast(ab, x0)
    return jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0


def x0_from_v(x_t: jax.Array, v: jax.Array, ab: jax.Array) -> jax.Array:
    """``sqrt(ab) x_t - sqrt(1 - ab) v``; ``ab`` scalar or (B,)."""
    ab = _bcast(ab, x_t)
    return jnp.sqrt(ab) * x_t - jnp.sqrt(1.0 - ab) * v


def eps_from_v(x_t: jax.Array, v: jax.Array, ab: jax.Array) -> jax.Array:
    """``sqrt(1 - ab) x_t + sqrt(ab) v``; ``ab`` scalar or (B,)."""
    ab = _bcast(ab, x_t)
    return jnp.sqrt(1.0 - ab) * x_t + jnp.sqrt(ab) * v


def _check_param(parameterisation: str) -> str:
    if parameterisation not in PARAMETERISATIONS:
        raise InputError(f"unknown parameterisation {parameterisation!r}: use one of {', '.join(PARAMETERISATIONS)}")
    return parameterisation


def to_x0_eps(pred: jax.Array, x_t: jax.Array, ab: jax.Array, parameterisation: str) -> tuple[jax.Array, jax.Array]:
    """The model's ``pred`` (eps, x0 or v) at ``x_t`` turned into ``(x0^, eps^)``."""
    p = _check_param(parameterisation)
    if p == "eps":
        return x0_from_eps(x_t, pred, ab), pred
    if p == "x0":
        return pred, eps_from_x0(x_t, pred, ab)
    return x0_from_v(x_t, pred, ab), eps_from_v(x_t, pred, ab)


def training_target(x0: jax.Array, eps: jax.Array, ab: jax.Array, parameterisation: str) -> jax.Array:
    """What the model regresses: ``eps``, ``x0`` or ``v`` for clean ``x0`` and noise ``eps``."""
    p = _check_param(parameterisation)
    return eps if p == "eps" else x0 if p == "x0" else v_from_x0_eps(x0, eps, ab)


# ----------------------------------------------------------------------------- training
def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """The forward process ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``; ``t`` (B,) int or scalar."""
    ab = _bcast(schedule.alpha_bar[t], x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def diffusion_loss(
    apply_fn: ApplyFn,
    params: Any,
    x0: jax.Array,
    cond: Any,
    rng: jax.Array,
    schedule: Schedule,
    parameterisation: str = "eps",
    loss: str = "l2",
) -> jax.Array:
    """The DDPM training loss (float32 scalar), mean over every element of the batch.

    Draws ``t ~ U{0..T-1}`` per sample and ``noise ~ N(0, I)`` (keys: module docstring), builds
    ``x_t = q_sample(x0, t, noise)`` and compares ``apply_fn(params, x_t, t, cond)`` with the
    target of ``parameterisation`` (eps, x0 or v) by ``loss`` (``'l2'`` mean squared error,
    Ho et al.'s "simple" loss; ``'l1'`` mean absolute error, SSDiff's choice with x0).
    ``x0`` (B, ...) float32; ``cond`` leading dimension B (or None).
    """
    p = _check_param(parameterisation)
    if loss not in LOSSES:
        raise InputError(f"unknown diffusion loss {loss!r}: use one of {', '.join(LOSSES)}")
    k_t, k_noise = jax.random.split(rng)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.T, dtype=jnp.int32)
    noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
    x_t = q_sample(schedule, x0, t, noise)
    pred = apply_fn(params, x_t, t, cond).astype(jnp.float32)
    err = pred - training_target(x0, noise, schedule.alpha_bar[t], p)
    return jnp.mean(jnp.square(err)) if loss == "l2" else jnp.mean(jnp.abs(err))


# ----------------------------------------------------------------------------- samplers
def _denoise(
    apply_fn: ApplyFn, params: Any, x: jax.Array, t: jax.Array, cond: Any, ab_t: jax.Array, parameterisation: str, clip_x0: Any
) -> tuple[jax.Array, jax.Array]:
    """(x0^, eps^) at ``x`` and scalar step ``t``, with x0^ optionally clipped."""
    tb = jnp.full((x.shape[0],), t, jnp.int32)
    x0, eps = to_x0_eps(apply_fn(params, x, tb, cond).astype(jnp.float32), x, ab_t, parameterisation)
    if clip_x0 is not None:
        x0 = jnp.clip(x0, clip_x0[0], clip_x0[1])
        eps = eps_from_x0(x, x0, ab_t)
    return x0, eps


def _chain(schedule: Schedule, steps: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(t, ab_t, ab_prev) of every step, in execution order (highest t first)."""
    taus = timesteps(schedule.T, steps)
    ab = schedule.alpha_bar[jnp.asarray(taus)]
    ab_prev = jnp.concatenate([jnp.ones((1,), ab.dtype), ab[:-1]])
    return jnp.asarray(taus[::-1]), ab[::-1], ab_prev[::-1]


def ddim_sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    x_T: jax.Array,
    rng: jax.Array,
    schedule: Schedule,
    *,
    steps: int,
    eta: float = 0.0,
    parameterisation: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> jax.Array:
    """DDIM from ``x_T`` (B, ...) in ``steps`` network calls; returns x0 (B, ...) float32.

    ``rng`` feeds the step noise only (step i uses ``split(rng, steps)[i]``); with ``eta = 0``
    the result depends on ``x_T`` alone. One ``lax.scan`` over the steps.
    """
    _check_param(parameterisation)
    ts, abs_t, abs_prev = _chain(schedule, steps)
    keys = jax.random.split(rng, int(steps))

    def step(x: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        t, ab_t, ab_prev, key = xs
        x0, eps = _denoise(apply_fn, params, x, t, cond, ab_t, parameterisation, clip_x0)
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev))
        dir_coef = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0))
        x_prev = jnp.sqrt(ab_prev) * x0 + dir_coef * eps + sigma * jax.random.normal(key, x.shape, jnp.float32)
        return x_prev, None

    x, _ = jax.lax.scan(step, x_T.astype(jnp.float32), (ts, abs_t, abs_prev, keys))
    return x


def ddpm_sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    x_T: jax.Array,
    rng: jax.Array,
    schedule: Schedule,
    *,
    steps: int,
    parameterisation: str = "eps",
    variance: str = "small",
    clip_x0: tuple[float, float] | None = None,
) -> jax.Array:
    """DDPM ancestral sampling on the schedule respaced to ``steps``; returns x0 (B, ...) float32.

    ``variance``: ``'small'`` (posterior beta-tilde) or ``'large'`` (beta'); no noise on the
    last step. Step i's noise uses ``split(rng, steps)[i]``. One ``lax.scan`` over the steps.
    """
    _check_param(parameterisation)
    if variance not in ("small", "large"):
        raise InputError(f"unknown DDPM variance {variance!r}: use 'small' or 'large'")
    ts, abs_t, abs_prev = _chain(schedule, steps)
    last = jnp.arange(int(steps)) == int(steps) - 1
    keys = jax.random.split(rng, int(steps))

    def step(x: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        t, ab_t, ab_prev, is_last, key = xs
        x0, _ = _denoise(apply_fn, params, x, t, cond, ab_t, parameterisation, clip_x0)
        beta = 1.0 - ab_t / ab_prev
        mean = (jnp.sqrt(ab_prev) * beta / (1.0 - ab_t)) * x0 + (jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t)) * x
        var = beta * (1.0 - ab_prev) / (1.0 - ab_t) if variance == "small" else beta
        std = jnp.where(is_last, 0.0, jnp.sqrt(var))
        return mean + std * jax.random.normal(key, x.shape, jnp.float32), None

    x, _ = jax.lax.scan(step, x_T.astype(jnp.float32), (ts, abs_t, abs_prev, last, keys))
    return x


_STATIC = ("apply_fn", "shape", "steps", "sampler", "eta", "parameterisation", "variance", "clip_x0")


@functools.partial(jax.jit, static_argnames=_STATIC)
def sample(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    rng: jax.Array,
    schedule: Schedule,
    *,
    shape: tuple[int, ...],
    steps: int,
    sampler: str = "ddim",
    eta: float = 0.0,
    parameterisation: str = "eps",
    variance: str = "small",
    clip_x0: tuple[float, float] | None = None,
) -> jax.Array:
    """One sample x0 of ``shape`` (B, ...) for a batch of conditions (jitted; keys: module docstring).

    ``sampler``: ``'ddim'`` (with ``eta``) or ``'ddpm'`` (with ``variance``). ``apply_fn`` is a
    static argument: pass the same function object to reuse the compiled sampler.
    """
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    k_init, k_steps = jax.random.split(rng)
    x_T = jax.random.normal(k_init, shape, jnp.float32)
    kw = dict(steps=steps, parameterisation=parameterisation, clip_x0=clip_x0)
    if sampler == "ddim":
        return ddim_sample(apply_fn, params, cond, x_T, k_steps, schedule, eta=eta, **kw)
    return ddpm_sample(apply_fn, params, cond, x_T, k_steps, schedule, variance=variance, **kw)


@functools.partial(jax.jit, static_argnames=_STATIC + ("samples", "return_samples"))
def sample_many(
    apply_fn: ApplyFn,
    params: Any,
    cond: Any,
    rng: jax.Array,
    schedule: Schedule,
    *,
    shape: tuple[int, ...],
    samples: int,
    steps: int,
    sampler: str = "ddim",
    eta: float = 0.0,
    parameterisation: str = "eps",
    variance: str = "small",
    clip_x0: tuple[float, float] | None = None,
    return_samples: bool = False,
) -> tuple[jax.Array, ...]:
    """``samples`` draws of :func:`sample` in one jitted call, ``vmap``-ped over the samples.

    Sample s uses ``split(rng, samples)[s]``. Returns ``(mean, std)`` over the samples, each of
    ``shape`` (std with ddof 0, so 0 for one sample), plus all draws (S, *shape) when
    ``return_samples``.
    """
    kw = dict(shape=shape, steps=steps, sampler=sampler, eta=eta, parameterisation=parameterisation,
              variance=variance, clip_x0=clip_x0)  # fmt: skip
    return draw_many(lambda k: sample(apply_fn, params, cond, k, schedule, **kw), rng, samples, return_samples)


def draw_many(
    sample_fn: Callable[[jax.Array], jax.Array], rng: jax.Array, samples: int, return_samples: bool = False
) -> tuple[jax.Array, ...]:
    """Any one-sample sampler ``sample_fn(key) -> x`` vmapped over ``split(rng, samples)``.

    The key scheme and statistics of :func:`sample_many`, for every sampler of this package
    (DDPM/DDIM here; bridge samplers reuse it): ``(mean, std[, draws (S, ...)])``, std with ddof 0.
    Pure; call it inside ``jax.jit``.
    """
    if int(samples) < 1:
        raise InputError(f"samples must be >= 1, got {samples}")
    draws = jax.vmap(sample_fn)(jax.random.split(rng, int(samples)))
    mean, std = jnp.mean(draws, axis=0), jnp.std(draws, axis=0)
    return (mean, std, draws) if return_samples else (mean, std)


# ----------------------------------------------------------------------------- pan-sharpening
def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise InputError(f"unknown diffusion target {target!r}: use one of {', '.join(TARGETS)}")
    return target


def pansharp_condition(lms: jax.Array, pan: jax.Array) -> jax.Array:
    """The condition ``concat([lms, pan], -1)``: (N, H, W, C) and (N, H, W, 1) -> (N, H, W, C + 1)."""
    if lms.shape[:-1] != pan.shape[:-1] or pan.shape[-1] != 1:
        raise InputError(f"lms (N, H, W, C) and pan (N, H, W, 1) must share N, H, W; got {lms.shape} and {pan.shape}")
    return jnp.concatenate([lms, pan], axis=-1)


def pansharp_x0(gt: jax.Array, lms: jax.Array, target: str = "residual") -> jax.Array:
    """The diffusion variable of a training pair: ``gt - lms`` (residual) or ``gt`` (image)."""
    return gt - lms if _check_target(target) == "residual" else gt


def pansharp_hrms(x0: jax.Array, lms: jax.Array, target: str = "residual") -> jax.Array:
    """The fused image from a sampled ``x0``: ``lms + x0`` (residual) or ``x0`` (image); not clipped."""
    return lms + x0 if _check_target(target) == "residual" else x0


def pansharp_loss(
    apply_fn: ApplyFn,
    params: Any,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    schedule: Schedule,
    *,
    parameterisation: str = "eps",
    target: str = "residual",
    loss: str = "l2",
) -> jax.Array:
    """:func:`diffusion_loss` of a training batch (``gt``, ``lms``, ``pan``; NHWC, [0, 1] scale)."""
    x0 = pansharp_x0(batch["gt"], batch["lms"], target)
    cond = pansharp_condition(batch["lms"], batch["pan"])
    return diffusion_loss(apply_fn, params, x0, cond, rng, schedule, parameterisation, loss)


def sample_hrms(
    apply_fn: ApplyFn,
    params: Any,
    lms: jax.Array,
    pan: jax.Array,
    rng: jax.Array,
    schedule: Schedule,
    *,
    samples: int,
    steps: int,
    target: str = "residual",
    return_samples: bool = False,
    **sampler_kw: Any,
) -> tuple[jax.Array, ...]:
    """(mean, std[, draws]) of ``samples`` fused images for lms (N, H, W, C), pan (N, H, W, 1).

    Each draw is ``pansharp_hrms(x0_s, lms, target)`` (the residual added back to every
    sample); outputs are (N, H, W, C) on the [0, 1] scale, not clipped; draws (S, N, H, W, C).
    ``sampler_kw`` go to :func:`sample_many` (sampler, eta, parameterisation, variance, clip_x0).
    """
    _check_target(target)
    cond = pansharp_condition(lms, pan)
    out = sample_many(apply_fn, params, cond, rng, schedule, shape=tuple(lms.shape), samples=samples, steps=steps,
                      return_samples=return_samples, **sampler_kw)  # fmt: skip
    mean, std = pansharp_hrms(out[0], lms, target), out[1]
    return (mean, std, pansharp_hrms(out[2], lms[None], target)) if return_samples else (mean, std)


__all__ = [
    "Schedule", "schedule_from_betas", "linear_schedule", "cosine_schedule", "make_schedule", "timesteps",
    "respaced_betas", "x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v", "to_x0_eps",
    "training_target", "q_sample", "diffusion_loss", "ddim_sample", "ddpm_sample", "sample", "sample_many", "draw_many",
    "pansharp_condition", "pansharp_x0", "pansharp_hrms", "pansharp_loss", "sample_hrms",
    "PARAMETERISATIONS", "SAMPLERS", "TARGETS", "LOSSES", "SCHEDULES",
]  # fmt: skip
