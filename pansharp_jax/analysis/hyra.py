"""HyRA for pan-sharpening: impulse responses, linear + non-linear decomposition, spectra.

Hybrid Response Analysis (Deng et al., ICML 2024) splits a super-resolution network's
output into a *linear part*, the convolution of its impulse response with the
zero-interpolated low-resolution input, and a *non-linear part*, the remainder. A
pan-sharpening method has two inputs, so here (any :class:`~pansharp_jax.methods.Method`):

**Impulse responses** (:func:`impulse_responses`). Around a background input ``(B_ms,
B_pan)`` (``"flat"``: the scene's per-band means, constant images; ``"zero"``; or
``"scene"``: the scene itself), a unit impulse is put in one band ``k`` of the LRMS at one
LR pixel, or at one PAN pixel, and the response of the raw (unclipped) output is
cropped to a ``size x size`` window of HR pixels centred on the impulse's HR position.
The response is either

* ``"derivative"`` (the default for methods with a jittable ``jax_fn`` that forward-mode
  autodiff goes through: every built-in method but the Mamba models, whose selective
  scans have a custom reverse-mode rule only): the Jacobian-vector product of the method at the background, exact, free of
  rounding cancellation, and linear in the impulse by construction; or
* ``"difference"``: ``(f(B + a * impulse) - f(B)) / a`` with an impulse of height
  ``amplitude`` (the authors' measurement, for any method). Networks with ReLUs sit on
  kinks of their activations on a flat background, so this depends on ``a`` (and its
  sign): it includes the rectification of the impulse, not only its linear response.

A ``"flat"`` background has no texture: methods that divide by image statistics
(component substitution, the MTF-GLP injection gains) give no finite response there and
need ``"scene"`` (the method's local behaviour on this very scene). The kernels:

* MS: ``h_ms[k, dy, dx, c]``: output band ``c`` for an impulse in input band ``k``. An LR
  pixel ``(i, j)`` sits at HR ``(ratio*i + phase, ratio*j + phase)``, ``phase = ratio // 2``
  (the ``x[2::4, 2::4]`` decimation of :mod:`pansharp_jax.data.wald`).
* PAN: ``h_pan[p, dy, dx, c]`` for an impulse at a PAN pixel of phase ``p = (py, px)``
  (row and column modulo ``ratio``): ``ratio**2`` kernels with ``pan_phases="all"`` (exact
  for PAN paths that are periodic with the LR grid, e.g. the GLP's decimation and
  interpolation of the PAN), or one kernel, measured at phase ``(phase, phase)``, with
  ``pan_phases="one"`` (exact for PAN paths that are shift-invariant on the HR grid, e.g.
  convolutional networks on the PAN grid). With ``background="scene"`` the responses are
  averaged over a grid of impulse positions, all in one image, spaced ``size + ratio``
  apart.

**Decomposition** (:func:`decompose`). With ``Z(x)`` the zero-interpolation of the LRMS
(sample ``(i, j)`` at HR ``(ratio*i + phase, ratio*j + phase)``, zeros elsewhere) and
``M_p(PAN)`` the PAN with only its phase-``p`` pixels kept::

    L_c = sum_k h_ms[k, :, :, c] * Z(LRMS_k - m_k) + sum_p h_pan[p, :, :, c] * M_p(PAN - m_pan) + b_c
    N_c = f(LRMS, PAN)_c - L_c

(``*``: 2-D convolution), a first-order expansion around the background: ``m`` are the
scene's per-band means (backgrounds ``"flat"`` and ``"scene"``) or 0 (``"zero"``, the
authors' ``h * Z(LR)``). Convolving the deviations rather than the inputs matters for a
non-linear method: its measured kernels need not vanish at the LR grid's harmonics
(multiples of ``1/ratio``), so ``h * Z(constant)`` would be a period-``ratio`` grid that the
method itself never produces. The LRMS is reflect-padded on the LR grid and the PAN on the
HR grid before the convolutions, as the authors pad the LR image; ``b_c``, one constant
per band, is the mean of ``f - (conv terms)`` over the interior, so the non-linear part has
zero mean there (for an affine method it is the output for the background; it carries no
high frequencies).
For a method that is linear and periodic-shift-invariant with the LR grid, and whose
responses fit in the window, ``N`` is zero (to rounding) in the *interior*: the image
without a border of ``size // 2 + ratio`` pixels, where the method's own padding and ours
differ. Spectra and energies are taken over the interior.

**Frequency responses** (:func:`transfer_functions`): the DFT of each kernel with its
origin at the impulse's HR position, on an ``n x n`` grid of frequencies in cycles per HR
pixel (``np.fft.fftfreq(n)``). An interpolator's MS response has DC gain ``ratio**2``
(the zero-interpolated input holds one sample per ``ratio**2`` pixels); a PAN detail
injection has DC gain near 0.

**High frequencies**: radial frequency ``sqrt(fy**2 + fx**2) > 1 / (2 * ratio)`` cycles per
HR pixel, i.e. above the MS Nyquist frequency, what the LRMS cannot carry.
:func:`hf_energy` is the energy of an image's (interior, mean removed, 2-D Hann windowed)
spectrum in that band, summed over bands and divided by the pixel count. The *non-linear
HF share* is ``E_HF(N) / (E_HF(L) + E_HF(N))`` in [0, 1]: the part of the high-frequency
energy that the non-linear part injects (the two energies need not add up to the
output's, since ``L`` and ``N`` are not orthogonal; ``E_HF(N) / E_HF(f)`` is reported too).

Arrays: HWC / NHWC float64 on the [0, 1] scale (DN / max DN), like the method API.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.errors import InputError

if TYPE_CHECKING:
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import Method

__all__ = [
    "BACKGROUNDS",
    "Decomposition",
    "HyraResult",
    "ImpulseResponses",
    "Transfer",
    "decompose",
    "default_size",
    "hann_spectrum",
    "hf_energy",
    "hyra",
    "ideal_lowpass_1d",
    "impulse_responses",
    "linear_part",
    "radial_frequency",
    "radial_profile",
    "sr_impulse_response",
    "transfer_functions",
]

BACKGROUNDS = ("flat", "zero", "scene")
PAN_PHASES = ("all", "one")
LINEARIZATIONS = ("auto", "derivative", "difference")


def default_size(ratio: int) -> int:
    """Default impulse-response window: ``16 * ratio + 1`` HR pixels (65 at ratio 4), wide
    enough for the toolbox's 23-tap interpolator cascade (support +-33 at ratio 4; the taps
    beyond 32 pixels leave EXP a residual below 1e-7)."""
    return 16 * int(ratio) + 1


def _round_up(n: int, m: int) -> int:
    return -(-int(n) // int(m)) * int(m)


# --------------------------------------------------------------------------- impulse responses
@dataclasses.dataclass(frozen=True)
class ImpulseResponses:
    """Measured impulse responses of a method (see the module docstring).

    Attributes:
      ms: (C_in, K, K, C_out) response to a unit impulse in each LRMS band, origin at
        ``[K//2, K//2]`` = the impulse's HR position; per unit of input ([0, 1] scale).
      pan: (P, K, K, C_out) response to a unit PAN impulse, per phase (P = ratio**2, phase
        ``p = py * ratio + px``) or P = 1 (one kernel for every PAN pixel).
      ratio: PAN/MS resolution ratio.
      phase: HR offset of an LR sample within its ``ratio`` block (``ratio // 2``).
      amplitude: impulse height of the finite differences (0 for derivatives).
      background: ``"flat"``, ``"zero"`` or ``"scene"``.
      positions: impulse positions averaged per input.
      linearization: ``"derivative"`` or ``"difference"``.
    """

    ms: np.ndarray
    pan: np.ndarray
    ratio: int
    phase: int
    amplitude: float
    background: str
    positions: int
    linearization: str = "difference"

    @property
    def size(self) -> int:
        """Window side K (odd), HR pixels."""
        return int(self.ms.shape[1])

    @property
    def radius(self) -> int:
        """K // 2."""
        return self.size // 2

    def pan_kernel(self) -> np.ndarray:
        """(K, K, C_out): the PAN response averaged over phases (the shift-invariant part)."""
        return self.pan.mean(axis=0)


def _background(scene: Scene, background: str, canvas: int | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    r = scene.ratio
    if background == "scene":
        return scene.lrms, scene.pan
    side = _round_up(canvas if canvas is not None else 2 * size, 8 * r)
    c = scene.nbands
    if background == "flat":
        lr = np.broadcast_to(scene.lrms.mean(axis=(0, 1)), (side // r, side // r, c)).copy()
        pan = np.full((side, side, 1), float(scene.pan.mean()))
    else:
        lr, pan = np.zeros((side // r, side // r, c)), np.zeros((side, side, 1))
    return lr, pan


def _positions(h_lr: int, w_lr: int, ratio: int, radius: int, many: bool) -> list[tuple[int, int]]:
    """LR impulse positions: the centre, or a grid spaced (2*radius + 1 + ratio) HR apart."""
    if not many:
        return [(h_lr // 2, w_lr // 2)]
    step = -(-(2 * radius + 1 + ratio) // ratio)
    edge = -(-(radius + ratio) // ratio) + 1
    ys = list(range(edge, h_lr - edge, step)) or [h_lr // 2]
    xs = list(range(edge, w_lr - edge, step)) or [w_lr // 2]
    return [(y, x) for y in ys for x in xs]


def impulse_responses(
    method: Method,
    scene: Scene,
    *,
    size: int | None = None,
    linearization: str = "auto",
    amplitude: float = 0.1,
    background: str = "flat",
    pan_phases: str = "all",
    canvas: int | None = None,
    batch: int = 8,
) -> ImpulseResponses:
    """Measure a method's MS and PAN impulse responses (see the module docstring).

    Args:
      method: any method from :func:`pansharp_jax.methods.resolve` (its raw output is used).
      scene: gives the band count, ratio, sensor and the background (means, or itself).
      size: window side K in HR pixels, odd (default :func:`default_size`).
      linearization: ``"derivative"`` (exact Jacobian-vector products of the method's
        jittable function, ``method.jax_fn``), ``"difference"`` (finite differences
        ``(f(B + a*impulse) - f(B)) / a`` through ``method.fuse_batch``), or ``"auto"``
        (derivative when the method has a ``jax_fn`` that forward-mode autodiff goes
        through, e.g. not the selective scans of the Mamba models; else difference).
        The one used is ``ImpulseResponses.linearization``.
      amplitude: impulse height ``a`` on the [0, 1] scale (``"difference"`` only).
      background: ``"flat"`` (per-band scene means), ``"zero"`` or ``"scene"``.
      pan_phases: ``"all"`` (``ratio**2`` PAN kernels) or ``"one"``.
      canvas: side in HR pixels of the flat/zero background image (default ``2 * size``
        rounded up to a multiple of ``8 * ratio``); ignored for ``"scene"``.
      batch: inputs (or tangents) per call of the method.

    Returns:
      :class:`ImpulseResponses` (float64) from ``1 + C + P`` evaluations of the method
      (P = ``ratio**2`` or 1), or one linearisation and ``C + P`` tangents.

    Raises:
      InputError: bad options, a scene too small for the window, or a non-finite
        response (methods that divide by image statistics, e.g. component substitution,
        have none on a flat background: use ``background="scene"``).
    """
    r = int(scene.ratio)
    size = default_size(r) if size is None else int(size)
    if size < 2 * r + 1 or size % 2 == 0:
        raise InputError(f"impulse-response size must be odd and >= 2*ratio+1 = {2 * r + 1}, got {size}")
    if background not in BACKGROUNDS:
        raise InputError(f"unknown background '{background}': use {', '.join(BACKGROUNDS)}")
    if pan_phases not in PAN_PHASES:
        raise InputError(f"unknown pan_phases '{pan_phases}': use {' or '.join(PAN_PHASES)}")
    if linearization not in LINEARIZATIONS:
        raise InputError(f"unknown linearization '{linearization}': use {', '.join(LINEARIZATIONS)}")
    auto = linearization == "auto"
    if auto:
        linearization = "derivative" if method.jax_fn is not None else "difference"
    if linearization == "derivative" and method.jax_fn is None:
        raise InputError(f"{method.label} has no jittable function to differentiate: use linearization 'difference'")
    if linearization == "difference" and not (math.isfinite(amplitude) and amplitude > 0):
        raise InputError(f"impulse amplitude must be a positive number, got {amplitude}")
    rad, phase, c = size // 2, r // 2, scene.nbands
    lr_bg, pan_bg = _background(scene, background, canvas, size)
    h_lr, w_lr = lr_bg.shape[:2]
    if min(h_lr, w_lr) * r < 2 * rad + 2 * r:
        raise InputError(f"the image ({h_lr * r}x{w_lr * r} PAN pixels) is too small for {size}x{size} impulse responses: use a smaller size or a larger crop")
    pos = _positions(h_lr, w_lr, r, rad, many=background == "scene")
    phases = [(py, px) for py in range(r) for px in range(r)] if pan_phases == "all" else [(phase, phase)]

    n = c + len(phases)  # unit impulses: one per MS band, one per PAN phase
    d_lr = np.zeros((n, *lr_bg.shape))
    d_pan = np.zeros((n, *pan_bg.shape))
    for y, x in pos:
        for k in range(c):
            d_lr[k, y, x, k] = 1.0
        for i, (py, px) in enumerate(phases):
            d_pan[c + i, r * y + py, r * x + px, 0] = 1.0
    if linearization == "derivative":
        try:
            diff = _derivatives(method, lr_bg, pan_bg, d_lr, d_pan, scene, batch)
        except TypeError as e:  # forward mode through a custom_vjp layer (selective scans)
            if not auto:
                raise InputError(f"{method.label} cannot be differentiated in forward mode ({e}): use linearization 'difference'") from e
            linearization = "difference"
    if linearization == "difference":
        out = _run_batched(method, np.concatenate([lr_bg[None], lr_bg + amplitude * d_lr]), np.concatenate([pan_bg[None], pan_bg + amplitude * d_pan]), scene, batch)
        diff = (out[1:] - out[:1]) / amplitude if np.isfinite(out).all() else np.full(out[1:].shape, np.nan)
    if not np.isfinite(diff).all():
        hint = (
            "(the method divides by image statistics that such an image lacks): use background 'scene' (--background scene)"
            if background != "scene" else "(NaN/Inf in the method's output or its derivative)"
        )  # fmt: skip
        raise InputError(f"{method.label}: its response to an impulse on a {background} background is not finite {hint}")

    def crop(d: np.ndarray, centres: list[tuple[int, int]]) -> np.ndarray:
        return np.mean([d[cy - rad : cy + rad + 1, cx - rad : cx + rad + 1] for cy, cx in centres], axis=0)

    ms = np.stack([crop(diff[k], [(r * y + phase, r * x + phase) for y, x in pos]) for k in range(c)])
    pan = np.stack([crop(diff[c + i], [(r * y + py, r * x + px) for y, x in pos]) for i, (py, px) in enumerate(phases)])
    amp = float(amplitude) if linearization == "difference" else 0.0
    return ImpulseResponses(ms, pan, r, phase, amp, background, len(pos), linearization)


def _chunks(n: int, batch: int) -> list[tuple[int, int, int]]:
    """(start, stop, padding) of chunks of ``batch`` covering ``n`` items; the last chunk
    is padded to ``batch`` (one compiled shape) when there is more than one chunk."""
    batch = max(1, int(batch))
    return [(i, min(i + batch, n), (batch - min(batch, n - i)) if n > batch else 0) for i in range(0, n, batch)]


def _pad_rows(a: np.ndarray, extra: int) -> np.ndarray:
    return np.concatenate([a, np.repeat(a[-1:], extra, 0)]) if extra else a


def _run_batched(method: Method, lrms: np.ndarray, pan: np.ndarray, scene: Scene, batch: int) -> np.ndarray:
    """Raw outputs (N, H, W, C) of ``method`` on (N, h, w, C) / (N, H, W, 1) inputs, in chunks."""
    outs = []
    for i, j, extra in _chunks(lrms.shape[0], batch):
        o = method.fuse_arrays(_pad_rows(lrms[i:j], extra), _pad_rows(pan[i:j], extra), sensor=scene.sensor, ratio=scene.ratio, clip=False)
        outs.append(o[: j - i])
    return np.concatenate(outs)


def _derivatives(method: Method, lr_bg: np.ndarray, pan_bg: np.ndarray, d_lr: np.ndarray, d_pan: np.ndarray, scene: Scene, batch: int) -> np.ndarray:
    """Jacobian-vector products (N, H, W, C) of ``method.jax_fn`` at the background, for the
    tangents (N, h, w, C) / (N, H, W, 1), in the method's precision."""
    import jax
    import jax.numpy as jnp

    from pansharp_jax.data.sensors import get_sensor

    fn = method.jax_fn(get_sensor(scene.sensor), int(scene.ratio))
    x64 = method.dtype == "float64"
    with jax.enable_x64(x64):
        dt = jnp.float64 if x64 else jnp.float32
        lr0, pan0 = jnp.asarray(lr_bg[None], dt), jnp.asarray(pan_bg[None], dt)
        if not np.isfinite(np.asarray(fn(lr0, pan0))).all():  # no derivative where there is no value
            return np.full((d_lr.shape[0], pan_bg.shape[0], pan_bg.shape[1], d_lr.shape[-1]), np.nan)

        @jax.jit
        def step(l0: jax.Array, p0: jax.Array, t_lr: jax.Array, t_pan: jax.Array) -> jax.Array:
            # jvp (not linearize: some layers, e.g. transposed convolutions, do not partially
            # evaluate); vmapped over tangents, the primal is computed once per chunk
            return jax.vmap(lambda a, b: jax.jvp(fn, (l0, p0), (a, b))[1])(t_lr, t_pan)

        outs = []
        for i, j, extra in _chunks(d_lr.shape[0], batch):
            t_lr = jnp.asarray(_pad_rows(d_lr[i:j], extra)[:, None], dt)
            t_pan = jnp.asarray(_pad_rows(d_pan[i:j], extra)[:, None], dt)
            outs.append(np.asarray(step(lr0, pan0, t_lr, t_pan), np.float64)[: j - i, 0])
    return np.concatenate(outs)


# --------------------------------------------------------------------------- decomposition
def _fft_conv_sum(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Full linear convolution summed over inputs: x (M1, M2, I), kernels (I, K, K, O) ->
    (M1 + K - 1, M2 + K - 1, O), ``y[m] = sum_i sum_j kern[i, j, o] x[m - j, i]``."""
    k = kernels.shape[1]
    shape = (x.shape[0] + k - 1, x.shape[1] + k - 1)
    fx = np.fft.rfft2(x, s=shape, axes=(0, 1))  # (F1, F2, I)
    fk = np.fft.rfft2(kernels, s=shape, axes=(1, 2))  # (I, F1, F2, O)
    return np.fft.irfft2(np.einsum("abi,iabo->abo", fx, fk), s=shape, axes=(0, 1))


def linear_part(resp: ImpulseResponses, lrms: np.ndarray, pan: np.ndarray, *, centre: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The two convolution terms of the linear part (no constant), each (H, W, C_out).

    Args:
      resp: measured :class:`ImpulseResponses`.
      lrms: (h, w, C_in) LRMS on [0, 1]; pan: (H, W[, 1]) PAN, H = ratio * h.
      centre: convolve the inputs' deviations from their per-band means (the expansion
        point of a flat background), else the inputs themselves (a zero background).

    Returns:
      ``(ms_term, pan_term)``: ``sum_k h_ms[k] * Z(lrms_k - m_k)`` and
      ``sum_p h_pan[p] * M_p(pan - m_pan)`` (``m = 0`` when not ``centre``).
    """
    r, rad, ph = resp.ratio, resp.radius, resp.phase
    lrms = np.asarray(lrms, np.float64)
    pan = np.asarray(pan, np.float64).reshape(lrms.shape[0] * r, lrms.shape[1] * r, 1)
    if centre:
        lrms, pan = lrms - lrms.mean(axis=(0, 1)), pan - pan.mean()
    if lrms.shape[-1] != resp.ms.shape[0]:
        raise InputError(f"the responses are for {resp.ms.shape[0]} bands, the LRMS has {lrms.shape[-1]}")
    pad = -(-rad // r) + 1  # LR pixels of reflect padding
    if min(lrms.shape[:2]) <= pad:
        raise InputError(f"LRMS {lrms.shape[0]}x{lrms.shape[1]} is too small for {resp.size}x{resp.size} responses")
    h, w = pan.shape[:2]
    lp = np.pad(lrms, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    z = np.zeros((lp.shape[0] * r, lp.shape[1] * r, lp.shape[2]))
    z[ph::r, ph::r] = lp
    off = pad * r + rad
    ms_term = _fft_conv_sum(z, resp.ms)[off : off + h, off : off + w]
    pp = np.pad(pan, ((pad * r, pad * r), (pad * r, pad * r), (0, 0)), mode="reflect")
    if resp.pan.shape[0] == 1:
        masked = pp
    else:
        rows, cols = np.arange(pp.shape[0]) % r, np.arange(pp.shape[1]) % r
        masked = np.stack([pp[..., 0] * ((rows[:, None] == py) & (cols[None, :] == px)) for py in range(r) for px in range(r)], axis=-1)
    pan_term = _fft_conv_sum(masked, resp.pan)[off : off + h, off : off + w]
    return ms_term, pan_term


@dataclasses.dataclass(frozen=True)
class Decomposition:
    """A method's output split into a linear and a non-linear part, all (H, W, C).

    Attributes:
      output: the method's raw (unclipped) output f(LRMS, PAN).
      linear: L = ms_term + pan_term + offset.
      nonlinear: N = output - linear.
      ms_term, pan_term: the two convolution terms of L.
      offset: (C,) the constant b of L (zero interior mean of N).
      border: pixels excluded on each side by :meth:`interior`.
    """

    output: np.ndarray
    linear: np.ndarray
    nonlinear: np.ndarray
    ms_term: np.ndarray
    pan_term: np.ndarray
    offset: np.ndarray
    border: int

    def interior(self, a: np.ndarray) -> np.ndarray:
        """``a`` without its border (the region where the decomposition is exact)."""
        b = self.border
        return a[b : a.shape[0] - b, b : a.shape[1] - b]


def decompose(method: Method, scene: Scene, resp: ImpulseResponses, *, output: np.ndarray | None = None) -> Decomposition:
    """Split ``method``'s raw output on ``scene`` into linear and non-linear parts.

    Args:
      method: the method the responses were measured on.
      scene: the scene (lrms (h, w, C), pan (H, W, 1) on [0, 1]).
      resp: its :class:`ImpulseResponses`.
      output: the raw output (H, W, C) when already computed.

    Returns:
      :class:`Decomposition`, interior border ``resp.radius + ratio``.
    """
    if output is None:
        output = method.fuse(scene, clip=False)
    output = np.asarray(output, np.float64)
    ms_term, pan_term = linear_part(resp, scene.lrms, scene.pan, centre=resp.background != "zero")
    border = resp.radius + resp.ratio
    if min(output.shape[:2]) <= 2 * border + 8:
        raise InputError(f"the scene ({output.shape[0]}x{output.shape[1]}) leaves no interior beyond a {border}-pixel border: use a smaller size or a larger crop")
    inner = (slice(border, output.shape[0] - border), slice(border, output.shape[1] - border))
    offset = (output - ms_term - pan_term)[inner].mean(axis=(0, 1))
    linear = ms_term + pan_term + offset
    return Decomposition(output, linear, output - linear, ms_term, pan_term, offset, border)


# --------------------------------------------------------------------------- frequency domain
def radial_frequency(n1: int, n2: int) -> np.ndarray:
    """(n1, n2) radial frequency in cycles per pixel, ``np.fft.fftfreq`` order (unshifted)."""
    fy, fx = np.fft.fftfreq(n1), np.fft.fftfreq(n2)
    return np.hypot(fy[:, None], fx[None, :])


def hann_spectrum(x: np.ndarray) -> np.ndarray:
    """Complex spectrum of each band: (H, W, C) -> (H, W, C), unshifted.

    Each band's mean is removed and a separable 2-D Hann window applied (against the
    leakage of the image edges). Unnormalised forward FFT.
    """
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=(0, 1), keepdims=True)
    win = np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))[..., None]
    return np.fft.fft2(x * win, axes=(0, 1))


def hf_energy(x: np.ndarray, ratio: int) -> float:
    """High-frequency energy of (H, W, C): sum over bands of the Hann-windowed spectrum's
    ``|F|^2`` at radial frequency > 1 / (2 * ratio) cycles/pixel, divided by H * W."""
    f = hann_spectrum(x)
    hf = radial_frequency(f.shape[0], f.shape[1]) > 1.0 / (2 * ratio)
    return float((np.abs(f) ** 2)[hf].sum() / (f.shape[0] * f.shape[1]))


def radial_profile(power: np.ndarray, nbins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a 2-D (unshifted) spectrum over rings of radial frequency up to 0.5.

    Args:
      power: (n1, n2) non-negative spectrum (power or magnitude), ``fftfreq`` order.
      nbins: rings (default ``min(n1, n2) // 2``).

    Returns:
      ``(f, profile)``: ring centres in cycles/pixel and the ring means (NaN if empty).
    """
    n1, n2 = power.shape
    nbins = int(nbins or min(n1, n2) // 2)
    rho = radial_frequency(n1, n2).ravel()
    edges = np.linspace(0.0, 0.5, nbins + 1)
    idx = np.digitize(rho, edges) - 1
    keep = (idx >= 0) & (idx < nbins)
    sums = np.bincount(idx[keep], weights=power.ravel()[keep], minlength=nbins)
    counts = np.bincount(idx[keep], minlength=nbins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (edges[1:] + edges[:-1]), sums / counts


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Frequency responses of the linear part.

    Attributes:
      freqs: (n,) cycles per HR pixel (``np.fft.fftfreq(n)``), the same on both axes.
      ms: (C_in, C_out, n, n) complex: DFT of ``h_ms[k, :, :, c]``, origin at the impulse.
      pan: (C_out, n, n) complex: DFT of the phase-averaged PAN response.
      ratio: PAN/MS ratio (an interpolator's MS DC gain is ``ratio**2``).
    """

    freqs: np.ndarray
    ms: np.ndarray
    pan: np.ndarray
    ratio: int

    def ms_diagonal(self) -> np.ndarray:
        """(C, n, n): each band's response to its own input band."""
        c = min(self.ms.shape[0], self.ms.shape[1])
        return np.stack([self.ms[i, i] for i in range(c)])


def _kernel_dft(kern: np.ndarray, n: int) -> np.ndarray:
    """DFT on an n x n grid of a (..., K, K) kernel whose origin is its centre."""
    k = kern.shape[-1]
    rad = k // 2
    if n < k:
        raise InputError(f"frequency grid n={n} is smaller than the {k}x{k} response")
    pad = np.zeros((*kern.shape[:-2], n, n))
    pad[..., :k, :k] = kern
    pad = np.roll(pad, (-rad, -rad), axis=(-2, -1))
    return np.fft.fft2(pad, axes=(-2, -1))


def transfer_functions(resp: ImpulseResponses, n: int | None = None) -> Transfer:
    """Frequency responses of the measured kernels on an ``n x n`` grid (default: the
    smallest power of two >= 2 * K), i.e. ``H(f) = sum_d h[d] exp(-2 pi i f . d)`` with
    ``d`` the HR offset from the impulse."""
    n = int(n or 2 ** math.ceil(math.log2(2 * resp.size)))
    ms = _kernel_dft(np.moveaxis(resp.ms, 3, 1), n)  # (C_in, C_out, n, n)
    pan = _kernel_dft(np.moveaxis(resp.pan_kernel(), 2, 0), n)  # (C_out, n, n)
    return Transfer(np.fft.fftfreq(n), ms, pan, resp.ratio)


# --------------------------------------------------------------------------- the whole analysis
@dataclasses.dataclass(frozen=True)
class HyraResult:
    """Everything :func:`hyra` measured; ``summary`` is JSON-ready."""

    method: str
    label: str
    responses: ImpulseResponses
    decomposition: Decomposition
    transfer: Transfer
    summary: dict[str, Any]


def _summary(dec: Decomposition, tr: Transfer, resp: ImpulseResponses, gt: np.ndarray | None) -> dict[str, Any]:
    r = resp.ratio
    parts = {"output": dec.output, "linear": dec.linear, "nonlinear": dec.nonlinear, "linear_ms": dec.ms_term, "linear_pan": dec.pan_term}
    if gt is not None:
        parts["gt"] = gt
    energy = {k: hf_energy(dec.interior(v), r) for k, v in parts.items()}
    e_l, e_n = energy["linear"], energy["nonlinear"]
    nyq = 1.0 / (2 * r)
    rho = radial_frequency(tr.ms.shape[-2], tr.ms.shape[-1])
    ring = np.abs(rho - nyq) <= 0.5 / tr.ms.shape[-1]
    ms_gain = np.abs(tr.ms_diagonal()).mean(axis=0) / r**2
    pan_gain = np.abs(tr.pan).mean(axis=0)
    inner_out = dec.interior(dec.output)
    return {
        "hf_threshold_cycles_per_pixel": nyq,
        "hf_share_nonlinear": e_n / (e_l + e_n) if e_l + e_n > 0 else float("nan"),
        "hf_nonlinear_to_output": e_n / energy["output"] if energy["output"] > 0 else float("nan"),
        "hf_energy": energy,
        "hf_output_to_gt": energy["output"] / energy["gt"] if gt is not None and energy["gt"] > 0 else None,
        "nonlinear_rms": float(np.sqrt(np.mean(dec.interior(dec.nonlinear) ** 2))),
        "output_rms_ac": float(np.sqrt(np.mean((inner_out - inner_out.mean(axis=(0, 1))) ** 2))),
        "offset": [float(v) for v in dec.offset],
        "ms_dc_gain": float(ms_gain[0, 0]),
        "ms_gain_at_ms_nyquist": float(ms_gain[ring].mean()),
        "ms_gain_hf_mean": float(ms_gain[rho > nyq].mean()),
        "pan_dc_gain": float(pan_gain[0, 0]),
        "pan_gain_at_ms_nyquist": float(pan_gain[ring].mean()),
        "pan_gain_hf_mean": float(pan_gain[rho > nyq].mean()),
        "ms_response_min": float(resp.ms.min()),
        "interior_border": dec.border,
    }


def hyra(
    method: Method,
    scene: Scene,
    *,
    size: int | None = None,
    linearization: str = "auto",
    amplitude: float = 0.1,
    background: str = "flat",
    pan_phases: str = "all",
    nfft: int | None = None,
    batch: int = 8,
    output: np.ndarray | None = None,
) -> HyraResult:
    """Hybrid response analysis of a pan-sharpening method on a scene.

    Measures the impulse responses (:func:`impulse_responses`), decomposes the raw output
    (:func:`decompose`), takes the linear part's frequency responses
    (:func:`transfer_functions`) and summarises (JSON-ready ``summary``): high-frequency
    energies of output / linear / non-linear parts (and GT when present), the non-linear
    HF share, the MS transfer's gain (divided by ``ratio**2``) at DC, at the MS Nyquist
    ring and above it, the same for the PAN transfer, and the most negative MS response.

    Args:
      method, scene: what to analyse; arrays on [0, 1].
      size, linearization, amplitude, background, pan_phases, batch: see
        :func:`impulse_responses`.
      nfft: frequency grid of the transfer functions (see :func:`transfer_functions`).
      output: the method's raw output on the scene, when already computed.
    """
    method.check(scene.nbands, scene.ratio, f"scene {scene.name}")
    resp = impulse_responses(
        method, scene, size=size, linearization=linearization, amplitude=amplitude, background=background,
        pan_phases=pan_phases, batch=batch,
    )  # fmt: skip
    dec = decompose(method, scene, resp, output=output)
    tr = transfer_functions(resp, nfft)
    summary = {"method": method.name, "label": method.label, "linearization": resp.linearization, "background": background,
               "amplitude": resp.amplitude, "size": resp.size, "pan_phases": pan_phases, "impulse_positions": resp.positions,
               **_summary(dec, tr, resp, scene.gt)}  # fmt: skip
    return HyraResult(method.name, method.label, resp, dec, tr, summary)


# --------------------------------------------------------------------------- single-input SR networks
def sr_impulse_response(
    apply: Callable[[np.ndarray], Any], *, ratio: int, lr_size: int = 33, amplitude: float = 1.0, background: float = 0.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """Impulse response of a single-band super-resolution function, before any clamping.

    Args:
      apply: ``(N, h, w, 1) -> (N, ratio*h, ratio*w, 1)``, raw (unclipped) output.
      ratio: its scale factor.
      lr_size: side of the constant LR image that holds the impulse at its centre pixel.
      amplitude: impulse height (the authors feed 1 on a zero image).
      background: the constant LR image's value (the authors': 0).

    Returns:
      ``(response, centre)``: (ratio*lr_size, ratio*lr_size) ``(apply(B + impulse) -
      apply(B)) / amplitude``, and the HR coordinates of the LR impulse's centre, ``ratio *
      c + (ratio - 1) / 2`` on both axes (a pixel-shuffle / MATLAB-bicubic grid: LR pixel
      c covers HR pixels ratio*c .. ratio*c + ratio - 1).
    """
    c = lr_size // 2
    x = np.full((2, lr_size, lr_size, 1), background, np.float32)
    x[1, c, c, 0] += amplitude
    y = np.asarray(apply(x), np.float64)
    if y.shape != (2, ratio * lr_size, ratio * lr_size, 1):
        raise InputError(f"the SR function returned {y.shape}, expected (2, {ratio * lr_size}, {ratio * lr_size}, 1)")
    centre = ratio * c + (ratio - 1) / 2
    return (y[1, ..., 0] - y[0, ..., 0]) / amplitude, (centre, centre)


def ideal_lowpass_1d(x: np.ndarray, ratio: int) -> np.ndarray:
    """The ideal x``ratio`` interpolator's 1-D kernel ``sinc(x / ratio)`` (cutoff at the LR
    Nyquist, 1/(2*ratio) cycles per HR pixel); ``x`` in HR pixels from the LR sample."""
    return np.sinc(np.asarray(x, np.float64) / ratio)
