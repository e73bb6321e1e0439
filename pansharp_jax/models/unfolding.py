"""MAE-prior deep unfolding for pan-sharpening (after Zhou et al., ICCV 2023).

Degradation model, on [0, 1] NHWC images with X the (N, H, W, C) high-resolution MS:

    LRMS = D(X) = decimate(blur(X))      (blur: one depthwise k x k kernel per band)
    PAN  = R(X) = X . w                  (a spectral response, C -> 1)

Each of ``stages`` stages is a proximal-gradient step, unrolled:

    Z  = X - eta_k [ Dt(D(X) - LRMS) + lam_k Rt(R(X) - PAN) ]          (gradient step)
    X' = Z + Prox_k([Z, MAE(Z)])                                        (proximal step)

with learnable operators D, Dt (blur kernels initialised from the sensor's MTF filter, the
adjoint's kernel from the same filter; Dt zero-inserts at the toolbox's decimation phase
``ratio // 2``), R, Rt (initialised to the band mean and its adjoint), per-stage step sizes
eta_k, weights lam_k (softplus-positive) and a per-stage proximal CNN Prox_k. ``MAE(Z)`` is the
reconstruction of Z by a frozen masked autoencoder (:mod:`pansharp_jax.models.mae`, no
masking) pre-trained with spatial masking: the "image reasoning prior"; ``prior=False`` drops
it (the ablation). X starts at LMS.

The stages are ONE ``nn.scan`` over stacked per-stage params (eta, lam, Prox), the shared
operators and the MAE's params broadcast to every stage, so compile time does not depend on
``stages``. ``apply(..., return_stages=True)`` returns (N, K, H, W, C), every stage's output.
``scan_unroll`` (0 = auto) unrolls the compiled loop on the CPU, where XLA's reverse pass of the
rolled loop is 13x slower (:func:`pansharp_jax.nn.unroll.resolve_unroll`); the params stay stacked either way.

Design choices the paper leaves open (code unreleased), each a config field: proximal
gradient descent (not half-quadratic splitting); stages 4; blur kernel 9 x 9 cut from the
41-tap MTF filter's centre; Prox = conv3x3(2C -> 32) - ReLU - conv3x3(32 -> 32) - ReLU -
conv3x3(32 -> C), residual; eta_0 = 1, lam_0 = 1; the MAE sizes of ``mae_config``. The
training loss adds a spatial-spectral MAE consistency term (:meth:`Unfolding.training_loss`).

Registry contract: ``apply({'params': p}, lrms, pan, lms, train=False) -> hrms`` as every
fusion model; the MAE prior's params live under ``params['prior']`` and are loaded from a
pre-training run and frozen by the config (``init_from``, ``optim.frozen``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.data.sensors import get_sensor
from pansharp_jax.data.wald import mtf_kernels
from pansharp_jax.models.mae import MAE, mae_config, mae_fields
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.unroll import resolve_unroll


def blur(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Depthwise 'same' correlation of (N, H, W, C) with (k, k, C) kernels, edge-replicated.

    A sum of k * k shifted copies, not a grouped convolution: XLA's CPU gradient of a grouped
    convolution's kernel was the slowest op of the training step (4x the forward time here).
    """
    k = kernel.shape[0]
    p = k // 2
    dtype = jnp.promote_types(x.dtype, kernel.dtype)  # mixed precision: a bf16 kernel on float32 images runs in float32
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="edge").astype(dtype)
    w = jnp.asarray(kernel).astype(dtype)
    h, wd = x.shape[1], x.shape[2]
    out = xp[:, :h, :wd, :] * w[0, 0]
    for i, j in np.ndindex(k, k):
        if i or j:
            out = out + xp[:, i : i + h, j : j + wd, :] * w[i, j]
    return out


def down(x: jax.Array, kernel: jax.Array, ratio: int) -> jax.Array:
    """D: blur then keep rows/cols ``ratio//2, ratio//2 + ratio, ...`` (the toolbox's phase)."""
    s = ratio // 2
    return blur(x, kernel)[:, s::ratio, s::ratio, :]


def up_adjoint(y: jax.Array, kernel: jax.Array, ratio: int) -> jax.Array:
    """Dt: zero-insert (N, h, w, C) at the decimation phase to (N, h r, w r, C), then blur with
    the flipped kernel (the adjoint of :func:`down` up to the border handling)."""
    n, h, w, c = y.shape
    s = ratio // 2
    z = jnp.zeros((n, h * ratio, w * ratio, c), y.dtype).at[:, s::ratio, s::ratio, :].set(y)
    return blur(z, kernel[::-1, ::-1, :])


class ProxNet(nn.Module):
    """Residual proximal CNN of one stage: [Z, prior(Z)] (2C) -> correction (C)."""

    bands: int
    features: int = 32

    @nn.compact
    def __call__(self, z: jax.Array, prior: jax.Array) -> jax.Array:
        h = jnp.concatenate([z, prior], axis=-1)
        h = nn.relu(nn.Conv(self.features, (3, 3))(h))
        h = nn.relu(nn.Conv(self.features, (3, 3))(h))
        return nn.Conv(self.bands, (3, 3), kernel_init=nn.initializers.zeros)(h)


class Stage(nn.Module):
    """One unfolding stage (per-stage params: eta, lam, Prox); ``(x, _) -> (x', x')`` for the scan."""

    bands: int
    ratio: int
    features: int
    use_prior: bool
    mae_fields: tuple[tuple[str, Any], ...] = ()  # the MAE's constructor arguments (static)

    @nn.compact
    def __call__(self, x: jax.Array, shared: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
        eta = nn.softplus(self.param("eta", nn.initializers.constant(np.log(np.e - 1.0)), ()))  # softplus^-1(1)
        lam = nn.softplus(self.param("lam", nn.initializers.constant(np.log(np.e - 1.0)), ()))
        r = self.ratio
        grad_ms = up_adjoint(down(x, shared["kernel"], r) - shared["lrms"], shared["kernel_t"], r)
        residual_pan = jnp.einsum("nhwc,c->nhw", x, shared["response"])[..., None] - shared["pan"]
        grad_pan = residual_pan * shared["response_t"]
        z = x - eta * (grad_ms + lam * grad_pan)
        if self.use_prior:
            mae = MAE(**dict(self.mae_fields), parent=None)  # a pure function of the broadcast prior params
            prior = mae.apply({"params": shared["prior"]}, z, mask_ratio=0.0)["image"]
        else:
            prior = jnp.zeros_like(z)
        x_new = z + ProxNet(self.bands, self.features, name="prox")(z, prior)
        return x_new, x_new


class Unfolding(nn.Module):
    """The unfolded network (module docstring); ``__call__(lrms, pan, lms, train, return_stages)``."""

    bands: int
    ratio: int = 4
    stages: int = 4
    scan_unroll: int = 0  # stages per scan iteration; 0: auto (resolve_unroll)
    features: int = 32
    kernel_size: int = 9
    gains: Sequence[float] = ()
    prior: bool = True
    mae_fields: tuple[tuple[str, Any], ...] = ()  # MAE constructor arguments; () = no prior
    consistency_fields: tuple[tuple[str, Any], ...] = ()  # the consistency MAE's; () = no such loss term
    consistency_weight: float = 0.0

    @nn.compact
    def __call__(
        self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False, return_stages: bool = False
    ) -> jax.Array:
        c, r, k = self.bands, self.ratio, self.kernel_size
        gains = tuple(self.gains) or (0.3,) * c
        full = mtf_kernels(gains, r, 41)
        lo = 20 - k // 2
        init_kernel = np.asarray(full[lo : lo + k, lo : lo + k, :], np.float32)

        def const(value: np.ndarray) -> Any:
            return lambda *_: jnp.asarray(value)

        shared: dict[str, Any] = {
            "kernel": self.param("blur", const(init_kernel)),
            "kernel_t": self.param("blur_t", const(init_kernel)),
            "response": self.param("response", const(np.full((c,), 1.0 / c, np.float32))),
            "response_t": self.param("response_t", const(np.full((c,), 1.0 / c, np.float32))),
            "lrms": lrms.astype(jnp.float32),
            "pan": pan.astype(jnp.float32),
        }
        use_prior = self.prior and bool(self.mae_fields)
        if use_prior:
            # The prior's params: created by an MAE submodule so that they sit under params['prior']
            # (replaced by the pre-trained ones); the stages apply it as a pure function.
            MAE(**dict(self.mae_fields), name="prior")(lms[:1], mask_ratio=0.0)
            shared["prior"] = self.variables["params"]["prior"]
        scan = nn.scan(
            Stage, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=nn.broadcast, length=self.stages,
            unroll=resolve_unroll(self.scan_unroll, self.stages),
        )
        stage = scan(c, r, self.features, use_prior, self.mae_fields if use_prior else (), name="stages")
        x, xs = stage(lms.astype(jnp.float32), shared)
        if self.consistency_fields and self.is_initializing():
            MAE(**dict(self.consistency_fields), name="consistency")(lms[:1], mask_ratio=0.0)  # its (frozen) params
        return jnp.moveaxis(xs, 0, 1) if return_stages else x

    def training_loss(self, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """L1 to the GT + ``consistency_weight`` x the spatial-spectral MAE consistency term.

        The term is the L1 distance between the frozen spatial-spectral MAE's
        reconstructions of the output and of the GT, both with the same hidden (square,
        band-group) tokens drawn from ``rng``: the output must be as predictable from its
        own visible bands and places as the GT is. Metrics: ``l1``, ``consistency``.
        """
        fused = self(batch["lrms"], batch["pan"], batch["lms"])
        l1 = jnp.mean(jnp.abs(fused - batch["gt"]))
        if not self.consistency_fields or self.consistency_weight <= 0:
            return l1, {"l1": l1}
        mae = MAE(**dict(self.consistency_fields), parent=None)
        p = self.variables["params"]["consistency"]
        rec_f = mae.apply({"params": p}, fused, rng=rng)["image"]
        rec_g = mae.apply({"params": p}, batch["gt"], rng=rng)["image"]
        term = jnp.mean(jnp.abs(rec_f - rec_g))
        return l1 + self.consistency_weight * term, {"l1": l1, "consistency": term}


def spectral_mae_config(bands: int = 8) -> ml_collections.ConfigDict:
    """The spatial-spectral MAE of the consistency loss: :func:`mae_config` with ``masking='spectral'``."""
    c = mae_config(bands)
    c.masking, c.mask_ratio = "spectral", 0.5
    return c


def unfolding_config(bands: int = 8, sensor: str = "WV3") -> ml_collections.ConfigDict:
    """Model config: 4 stages, MAE prior on, consistency weight 0.1 (MAE sizes: :func:`mae_config`)."""
    return ml_collections.ConfigDict(
        {"name": "unfolding", "bands": bands, "ratio": 4, "stages": 4, "scan_unroll": 0, "features": 32, "kernel_size": 9,
         "sensor": sensor, "prior": True, "mae": mae_config(bands), "consistency_weight": 0.1,
         "consistency_mae": spectral_mae_config(bands)}
    )  # fmt: skip


def build_unfolding(cfg: ml_collections.ConfigDict) -> Unfolding:
    """The :class:`Unfolding` of a model config (:func:`unfolding_config`)."""
    bands = int(cfg.bands)
    gains = get_sensor(str(cfg.get("sensor", "") or None) if cfg.get("sensor") else None).gains(bands)
    mae_cfg = ml_collections.ConfigDict(cfg.mae) if "mae" in cfg else mae_config(bands)
    mae_cfg.bands = bands
    consistency_cfg = ml_collections.ConfigDict(cfg.consistency_mae) if "consistency_mae" in cfg else spectral_mae_config(bands)
    consistency_cfg.bands = bands
    return Unfolding(
        bands=bands, ratio=int(cfg.ratio), stages=int(cfg.stages), scan_unroll=int(cfg.get("scan_unroll", 0)),
        features=int(cfg.features), kernel_size=int(cfg.kernel_size),
        gains=tuple(gains), prior=bool(cfg.prior), mae_fields=mae_fields(mae_cfg) if bool(cfg.prior) else (),
        consistency_fields=mae_fields(consistency_cfg) if float(cfg.consistency_weight) > 0 else (),
        consistency_weight=float(cfg.consistency_weight),
    )  # fmt: skip


UNFOLDING_ENTRY = ModelEntry(
    "unfolding", build_unfolding, unfolding_config, "MAE-prior deep unfolding (Zhou et al. 2023): K proximal-gradient stages in one scan"
)

__all__ = ["Stage", "UNFOLDING_ENTRY", "Unfolding", "blur", "build_unfolding", "down", "unfolding_config", "up_adjoint"]
