"""CrossDiff (Xing et al. 2024, arXiv:2401.05153): self-supervised pan-sharpening by
cross-predictive diffusion, then a fusion head on frozen encoder features (registry ``crossdiff``).

One model holds two conditional DDPM UNets and the head; ``stage`` (a config field) picks the
objective of :meth:`CrossDiff.training_loss`:

* ``'pretext'`` (stage 1, needs no ground truth, so it trains on full-resolution patches,
  ``config.data.resolution = 'full'``): **PAN2MS** (``params['pan2ms']``) denoises the MS
  image on the PAN grid (``lms``, (N, H, W, C')) conditioned on the PAN; **MS2PAN**
  (``params['ms2pan']``) denoises the PAN (N, H, W, 1) conditioned on ``lms``. Both use the
  diffusion core (:mod:`pansharp_jax.generative.diffusion`): cosine schedule, T = 1000,
  epsilon prediction, L2 loss (the mean over elements, not the official sum). Images enter
  the diffusion on ``[-1, 1]`` (``2 x - 1``, SR3's range); the condition is concatenated with
  ``x_t`` at the UNet input. Classifier-free training: each sample's condition is zeroed with
  probability ``p_uncond`` (0.1, per sample; the official code drops it per batch). The loss is
  ``l_p2m + l_m2p`` (both reported as metrics).
* ``'head'`` (stage 2): both encoders run once at the fixed noise level ``feature_t`` (50):
  ``x_t = q_sample(x0, 50, noise)`` with x0 the MS (PAN2MS) / the PAN (MS2PAN) of the batch
  itself, giving 4 feature maps each (widths ``widths``, at H, H/2, H/4, H/8). The head
  (:class:`FusionHead`) reduces each level's concatenated pair to ``head_channels``, fuses the
  levels top-down with attention-guided blocks (:class:`AttentionFuse`: channel and spatial
  gates), and predicts a residual added to ``lms``; L1 loss against ``gt``. The UNets are frozen
  with ``config.optim.frozen = 'pan2ms,ms2pan'`` (:data:`HEAD_FROZEN`; optax masks) and loaded
  from the stage-1 run with ``config.init_from`` (``configs/crossdiff_wv2_real.py``).

The noise at t = 50. Training draws fresh noise every step (from the step key), as the
official code does. Fusion (``__call__``, ``pansharp fuse``) and validation (``eval_output``)
use the fixed key ``PRNGKey(feature_seed)`` (``feature_seed``, 0 by default), so the fused
image is a deterministic function of the inputs; the noise is drawn for the whole input, so a
tile of a scene sees other noise than the same pixels fused whole. ``make_sampler`` (the
generative hook of :mod:`pansharp_jax.methods.sources`, used by ``pansharp sample``) draws S
noises ``split(rng, S)[s]`` and returns the mean and per-pixel std of the S fused images: the
spread the t = 50 noise causes. Its ``steps`` argument is ignored (one network pass per draw).

Cross-sensor use. The UNets' input and output convolutions are band-count specific; the head
always reads and writes all ``bands`` of the data. ``band_map`` (a tuple of data-band indices,
one per encoder band; empty = identity) says which data band feeds each encoder band, so that
encoders pre-trained on one sensor take another sensor's images: WV2 (8 bands) -> a 4-band
B, G, R, NIR sensor uses ``(0, 0, 1, 1, 2, 2, 3, 3)`` (coastal <- blue, yellow <- green, red
edge <- red, NIR2 <- NIR); a 4-band sensor -> WV2 uses ``(1, 2, 4, 6)`` (blue, green, red,
NIR1). :func:`band_map` gives these. Retraining the input convolutions was the alternative;
mapping keeps every pre-trained weight frozen and the head the only trained part.

Sizes: the official UNet widths (32, 64, 128, 256) with one residual block per level (the
official ``res_blocks`` 0 has none) and GroupNorm groups ``groups``; H and W must be multiples
of ``2 ** (len(widths) - 1)``. Parameters are drawn with JAX's ``'rbg'`` PRNG
(:meth:`CrossDiff.init`, as SSDiff: fast to compile on a CPU).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.generative import diffusion
from pansharp_jax.generative.ssdiff import _rbg_key
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.unet import ResBlock, timestep_embedding

STAGES = ("pretext", "head")
HEAD_FROZEN = ("pan2ms", "ms2pan")  # stage 2: both UNets (their encoders feed the head; decoders unused)
PRETEXT_FROZEN = ("head",)  # stage 1: the head takes no part
BGRN_TO_WV2 = (1, 2, 4, 6)  # WV2 data -> encoders of a B, G, R, NIR sensor
WV2_TO_BGRN = (0, 0, 1, 1, 2, 2, 3, 3)  # B, G, R, NIR data -> WV2 encoders


def band_map(encoder_bands: int, data_bands: int) -> tuple[int, ...]:
    """The ``band_map`` for encoders of ``encoder_bands`` bands on data of ``data_bands`` bands.

    ``()`` when equal; WV2-style 8 <-> B, G, R, NIR 4 as in the module docstring; InputError
    otherwise (give the tuple by hand in the config).
    """
    e, d = int(encoder_bands), int(data_bands)
    if e == d:
        return ()
    if (e, d) == (4, 8):
        return BGRN_TO_WV2
    if (e, d) == (8, 4):
        return WV2_TO_BGRN
    raise InputError(f"no default band map from {d}-band data to {e}-band encoders: set model.band_map")


def _conv(features: int, k: int = 3, stride: int = 1, **kw: Any) -> nn.Conv:
    p = (k - 1) // 2
    return nn.Conv(features, (k, k), strides=(stride, stride), padding=((p, p), (p, p)), **kw)


def _up2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 upsampling (B, H, W, C) -> (B, 2H, 2W, C) by broadcasting (cheap gradients)."""
    b, h, w, c = x.shape
    return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


def _to_pm1(x: jax.Array) -> jax.Array:
    """[0, 1] -> [-1, 1] (the diffusion's range)."""
    return 2.0 * x.astype(jnp.float32) - 1.0


# ----------------------------------------------------------------------------- the UNets
class Encoder(nn.Module):
    """Time embedding, input conv on ``concat([x_t, cond])`` and one ResBlock per level.

    ``(x_t (B, H, W, Cx), t (B,), cond (B, H, W, Cc)) -> (feats, temb)``: feats[i]
    (B, H / 2**i, W / 2**i, widths[i]), i = 0..L-1 (a stride-2 conv between levels); temb
    (B, 4 widths[0]).
    """

    widths: tuple[int, ...]
    groups: int = 8

    @nn.compact
    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> tuple[list[jax.Array], jax.Array]:
        b, base = x_t.shape[0], self.widths[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32).reshape(-1), (b,))
        temb = nn.Dense(4 * base)(nn.silu(nn.Dense(4 * base)(timestep_embedding(t, base))))
        h = _conv(base)(jnp.concatenate([x_t, cond.astype(x_t.dtype)], axis=-1))
        feats = []
        for i, width in enumerate(self.widths):
            h = ResBlock(width, self.groups)(h, temb)
            feats.append(h)
            if i < len(self.widths) - 1:
                h = _conv(width, stride=2)(h)
        return feats, temb


class Decoder(nn.Module):
    """Two middle ResBlocks on the deepest feature, then up (nearest x2 + conv3x3), skip concat and
    a ResBlock per level, and GroupNorm -> SiLU -> conv3x3 to ``out_channels``: (B, H, W, out)."""

    out_channels: int
    widths: tuple[int, ...]
    groups: int = 8

    @nn.compact
    def __call__(self, feats: Sequence[jax.Array], temb: jax.Array) -> jax.Array:
        h = feats[-1]
        h = ResBlock(self.widths[-1], self.groups)(h, temb)
        h = ResBlock(self.widths[-1], self.groups)(h, temb)
        for i in reversed(range(len(self.widths))):
            if i < len(self.widths) - 1:
                h = _conv(self.widths[i])(_up2(h))
            h = ResBlock(self.widths[i], self.groups)(jnp.concatenate([h, feats[i]], axis=-1), temb)
        return _conv(self.out_channels, name="out")(nn.silu(nn.GroupNorm(num_groups=self.groups)(h)))


class CondUNet(nn.Module):
    """A conditional epsilon-prediction UNet with a separable encoder (``params['encoder']``).

    ``__call__(x_t, t, cond) -> eps^`` (B, H, W, out_channels); ``encode(x_t, t, cond) ->
    feats`` (the :class:`Encoder`'s list). H, W multiples of ``2 ** (len(widths) - 1)``.
    """

    out_channels: int
    widths: tuple[int, ...] = (32, 64, 128, 256)
    groups: int = 8

    def setup(self) -> None:
        self.encoder = Encoder(tuple(self.widths), self.groups)
        self.decoder = Decoder(self.out_channels, tuple(self.widths), self.groups)

    def _check(self, x_t: jax.Array) -> None:
        f = 2 ** (len(self.widths) - 1)
        if x_t.ndim != 4 or x_t.shape[1] % f or x_t.shape[2] % f:
            raise InputError(f"CrossDiff UNet input must be NHWC with H, W multiples of {f}, got {x_t.shape}")

    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        self._check(x_t)
        feats, temb = self.encoder(x_t, t, cond)
        return self.decoder(feats, temb)

    def encode(self, x_t: jax.Array, t: jax.Array, cond: jax.Array, decode: bool = False) -> list[jax.Array]:
        """The encoder's feature maps (see :class:`Encoder`); ``decode`` also runs the decoder
        (its output discarded: creates its params under ``init`` without a second encoder pass)."""
        self._check(x_t)
        feats, temb = self.encoder(x_t, t, cond)
        if decode:
            self.decoder(feats, temb)
        return feats


# ----------------------------------------------------------------------------- the head
class AttentionFuse(nn.Module):
    """Attention-guided fusion of a level's features ``x`` with the upsampled coarser ``up``.

    Both (B, H, W, c). ``z = concat([x, up])`` is gated by a channel attention
    (sigmoid(Dense(SiLU(Dense(mean_HW z)))), (B, 1, 1, 2c)) and a spatial attention
    (sigmoid(conv3x3(z)) to one map, (B, H, W, 1)); then conv3x3 -> GroupNorm -> SiLU to c, plus
    ``up``: (B, H, W, c).
    """

    channels: int
    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array, up: jax.Array) -> jax.Array:
        z = jnp.concatenate([x, up], axis=-1)
        c2 = z.shape[-1]
        ch = jax.nn.sigmoid(nn.Dense(c2)(nn.silu(nn.Dense(max(c2 // 4, 4))(jnp.mean(z, axis=(1, 2))))))[:, None, None, :]
        sp = jax.nn.sigmoid(_conv(1)(z))
        h = _conv(self.channels)(z * ch * sp)
        return up + nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, self.channels))(h))


class FusionHead(nn.Module):
    """Stage 2's head: ``(feats_a, feats_b, lms, pan) -> hrms`` (B, H, W, bands).

    Per level i: ``conv3x3 -> GroupNorm -> SiLU`` of ``concat([feats_a[i], feats_b[i]])`` to
    ``channels``; top-down from the deepest level, ``g <- AttentionFuse(reduced[i], up2(g))``;
    then ``conv3x3(concat([g, 2 lms - 1, 2 pan - 1])) -> SiLU -> conv3x3`` to ``bands``
    (zero-initialised, so an untrained head returns ``lms``), added to ``lms``.
    """

    bands: int
    channels: int = 32
    groups: int = 8

    @nn.compact
    def __call__(self, feats_a: Sequence[jax.Array], feats_b: Sequence[jax.Array], lms: jax.Array, pan: jax.Array) -> jax.Array:
        gn = math.gcd(self.groups, self.channels)
        reduced = [
            nn.silu(nn.GroupNorm(num_groups=gn)(_conv(self.channels)(jnp.concatenate([a, b], axis=-1))))
            for a, b in zip(feats_a, feats_b, strict=True)
        ]
        g = reduced[-1]
        for i in reversed(range(len(reduced) - 1)):
            g = AttentionFuse(self.channels, self.groups)(reduced[i], _up2(g))
        h = nn.silu(_conv(self.channels)(jnp.concatenate([g, _to_pm1(lms), _to_pm1(pan)], axis=-1)))
        res = _conv(self.bands, kernel_init=nn.initializers.zeros_init(), name="out")(h)
        return lms.astype(jnp.float32) + res


# ----------------------------------------------------------------------------- the model
class CrossDiff(nn.Module):
    """Both UNets and the head (module docstring), with the trainer's own-objective hooks.

    * ``__call__(lrms, pan, lms, train=False)``: the fused image with the fixed feature key
      ``PRNGKey(feature_seed)``; (N, H, W, bands) on [0, 1], not clipped. Under ``init`` it
      also runs both decoders once, so that every parameter (both UNets whole, the head) exists.
    * ``training_loss(batch, rng)``: the ``stage``'s loss (``'pretext'``: ``lms``, ``pan``
      only; ``'head'``: also ``gt``) and its metrics.
    * ``eval_output(batch, rng)``: ``__call__``'s image (the fixed feature key, not ``rng``).
    * ``make_sampler(params)``: mean and std over S draws of the t = 50 noise.
    * ``features(lms, pan, key)``: the two encoders' feature lists at ``feature_t``.

    Params: ``pan2ms``, ``ms2pan`` (each ``encoder`` / ``decoder``) and ``head``.
    """

    bands: int
    widths: tuple[int, ...] = (32, 64, 128, 256)
    groups: int = 8
    head_channels: int = 32
    band_map: tuple[int, ...] = ()
    stage: str = "pretext"
    schedule: str = "cosine"
    T: int = 1000
    feature_t: int = 50
    p_uncond: float = 0.1
    loss: str = "l2"
    feature_seed: int = 0
    guidance: float = 3.0

    @property
    def enc_bands(self) -> int:
        """The UNets' MS band count: ``len(band_map)``, or ``bands`` without a map."""
        return len(self.band_map) or int(self.bands)

    def setup(self) -> None:
        w = tuple(int(v) for v in self.widths)
        self.pan2ms = CondUNet(self.enc_bands, w, self.groups)
        self.ms2pan = CondUNet(1, w, self.groups)
        self.head = FusionHead(int(self.bands), int(self.head_channels), self.groups)

    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Flax ``init`` with the params drawn by the ``'rbg'`` PRNG seeded from the given key(s)."""
        rngs = {k: _rbg_key(v) for k, v in rngs.items()} if isinstance(rngs, dict) else _rbg_key(rngs)
        return super().init(rngs, *args, **kwargs)

    def _enc_ms(self, lms: jax.Array) -> jax.Array:
        if lms.shape[-1] != self.bands:
            raise InputError(f"wrong band count: this CrossDiff has {self.bands} bands, the input has {lms.shape[-1]}")
        lms = jnp.asarray(lms, jnp.float32)
        return jnp.take(lms, np.asarray(self.band_map, np.int32), axis=-1) if self.band_map else lms

    def _schedule(self) -> diffusion.Schedule:
        return diffusion.make_schedule(self.schedule, int(self.T))

    def features(self, lms: jax.Array, pan: jax.Array, key: jax.Array) -> tuple[list[jax.Array], list[jax.Array]]:
        """(PAN2MS features, MS2PAN features) at ``feature_t`` for lms (N, H, W, bands), pan (N, H, W, 1).

        Noise: ``k_ms, k_pan = split(key)``, standard normal of the MS (N, H, W, enc_bands) and
        PAN (N, H, W, 1) shapes.
        """
        ms = _to_pm1(self._enc_ms(lms))
        p = _to_pm1(pan)
        k_ms, k_pan = jax.random.split(key)
        n = ms.shape[0]
        t = jnp.full((n,), int(self.feature_t), jnp.int32)
        sched = self._schedule()
        x_ms = diffusion.q_sample(sched, ms, t, jax.random.normal(k_ms, ms.shape, jnp.float32))
        x_pan = diffusion.q_sample(sched, p, t, jax.random.normal(k_pan, p.shape, jnp.float32))
        init = self.is_initializing()
        return self.pan2ms.encode(x_ms, t, p, decode=init), self.ms2pan.encode(x_pan, t, ms, decode=init)

    def fuse_key(self, lms: jax.Array, pan: jax.Array, key: jax.Array) -> jax.Array:
        """The head's fused image (N, H, W, bands) with the t = 50 noise from ``key``.

        The features are constants for the head (``stop_gradient``): the encoders are frozen
        in stage 2, so no gradient is computed through them.
        """
        fa, fb = jax.lax.stop_gradient(self.features(lms, pan, key))
        return self.head(fa, fb, lms.astype(jnp.float32), pan.astype(jnp.float32))

    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del lrms, train  # under init, features() also creates the decoders' params
        return self.fuse_key(lms, pan, jax.random.PRNGKey(int(self.feature_seed)))

    def pretext_losses(self, lms: jax.Array, pan: jax.Array, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(PAN2MS loss, MS2PAN loss), float32 scalars: :func:`~pansharp_jax.generative.diffusion.diffusion_loss`
        (eps, ``loss``) with conditions dropped per sample with probability ``p_uncond``.

        Keys: ``k_a, k_b, k_da, k_db = split(rng, 4)``; the losses use ``k_a`` / ``k_b``, the
        dropout masks ``bernoulli(k_da / k_db, p_uncond, (N,))``.
        """
        ms, p = _to_pm1(self._enc_ms(lms)), _to_pm1(pan)
        k_a, k_b, k_da, k_db = jax.random.split(rng, 4)
        n = ms.shape[0]

        def drop(cond: jax.Array, key: jax.Array) -> jax.Array:
            keep = 1.0 - jax.random.bernoulli(key, float(self.p_uncond), (n,)).astype(jnp.float32)
            return cond * keep[:, None, None, None]

        sched = self._schedule()
        l_a = diffusion.diffusion_loss(lambda _, x, t, c: self.pan2ms(x, t, c), None, ms, drop(p, k_da), k_a, sched, "eps", self.loss)
        l_b = diffusion.diffusion_loss(lambda _, x, t, c: self.ms2pan(x, t, c), None, p, drop(ms, k_db), k_b, sched, "eps", self.loss)
        return l_a, l_b

    def training_loss(self, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``'pretext'``: ``l_p2m + l_m2p`` with metrics ``p2m``, ``m2p``; ``'head'``: the L1 of
        the fused image (noise from ``rng``) against ``gt`` with metric ``lms_l1`` (the baseline)."""
        lms, pan = batch["lms"].astype(jnp.float32), batch["pan"].astype(jnp.float32)
        if self.stage == "pretext":
            l_a, l_b = self.pretext_losses(lms, pan, rng)
            return l_a + l_b, {"p2m": l_a, "m2p": l_b}
        gt = batch["gt"].astype(jnp.float32)
        fused = self.fuse_key(lms, pan, rng)
        return jnp.mean(jnp.abs(fused - gt)), {"lms_l1": jnp.mean(jnp.abs(lms - gt))}

    def eval_output(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        """The fused image with the fixed feature key (as ``__call__``; ``rng`` unused): (N, H, W, bands)."""
        del rng
        return self.fuse_key(batch["lms"], batch["pan"], jax.random.PRNGKey(int(self.feature_seed)))

    def make_sampler(self, params: Any) -> Callable[..., tuple[jax.Array, jax.Array]]:
        """``fn(lrms, pan, lms, rng, *, samples, steps) -> (mean, std)``, (N, H, W, bands) each.

        Draw s is the fused image with the t = 50 noise of ``split(rng, samples)[s]``; ``steps``
        is ignored (one pass per draw). ``params``: the whole tree (or ``{'params': tree}``).
        Pure; callable on an unbound module.
        """
        tree = params["params"] if "params" in params else params

        def fn(lrms: Any, pan: Any, lms: Any, rng: Any, *, samples: int, steps: int) -> tuple[jax.Array, jax.Array]:
            del lrms, steps
            lms_, pan_ = jnp.asarray(lms, jnp.float32), jnp.asarray(pan, jnp.float32)
            one = lambda k: self.apply({"params": tree}, lms_, pan_, k, method="fuse_key")  # noqa: E731
            return diffusion.draw_many(one, rng, int(samples))

        return fn

    def pretext_sample(
        self, params: Any, lms: jax.Array, pan: jax.Array, rng: jax.Array, *, which: str = "pan2ms", steps: int = 20,
        guidance: float | None = None,
    ) -> jax.Array:  # fmt: skip
        """A guided DDIM (eta 0) sample of the pretext task, to look at: ``'pan2ms'`` gives the
        MS (N, H, W, enc_bands) from the PAN, ``'ms2pan'`` the PAN (N, H, W, 1) from the MS; [0, 1]
        scale, clipped. Classifier-free guidance ``(w + 1) eps(x, c) - w eps(x, 0)``, ``w =
        guidance`` (None: the config's, 3). ``params``: the whole tree. Callable unbound."""
        if which not in HEAD_FROZEN:
            raise InputError(f"which must be 'pan2ms' or 'ms2pan', got {which!r}")
        tree = params["params"] if "params" in params else params
        ms, p = _to_pm1(self._enc_ms(jnp.asarray(lms))), _to_pm1(jnp.asarray(pan))
        cond, shape = (p, ms.shape) if which == "pan2ms" else (ms, p.shape)
        fn = _guided(shape[-1], tuple(int(v) for v in self.widths), int(self.groups), float(self.guidance if guidance is None else guidance))
        x0 = diffusion.sample(fn, tree[which], cond, rng, self._schedule(), shape=tuple(shape), steps=int(steps), clip_x0=(-1.0, 1.0))
        return jnp.clip((x0 + 1.0) / 2.0, 0.0, 1.0)


@functools.lru_cache(maxsize=16)
def _guided(out_channels: int, widths: tuple[int, ...], groups: int, w: float) -> diffusion.ApplyFn:
    """The classifier-free guided eps of an unbound :class:`CondUNet` (cached: a static sampler argument)."""
    net = CondUNet(out_channels, widths, groups, parent=None)

    def apply(params: Any, x: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        e_c = net.apply({"params": params}, x, t, cond)
        e_u = net.apply({"params": params}, x, t, jnp.zeros_like(cond))
        return (w + 1.0) * e_c - w * e_u

    return apply


# ----------------------------------------------------------------------------- config and registry
def crossdiff_config(bands: int = 8) -> ml_collections.ConfigDict:
    """CrossDiff's model config: the official sizes (module docstring) and stage ``'pretext'``."""
    return ml_collections.ConfigDict(
        {"name": "crossdiff", "bands": bands, "widths": (32, 64, 128, 256), "groups": 8, "head_channels": 32,
         "band_map": (), "stage": "pretext", "schedule": "cosine", "T": 1000, "feature_t": 50, "p_uncond": 0.1,
         "loss": "l2", "feature_seed": 0, "guidance": 3.0}
    )  # fmt: skip


def build_crossdiff(cfg: Any) -> CrossDiff:
    """The :class:`CrossDiff` of a model config (:func:`crossdiff_config`); InputError for bad fields."""
    cfg = ml_collections.ConfigDict(cfg) if isinstance(cfg, dict) else cfg
    d = crossdiff_config(int(cfg.bands))
    d.update({k: cfg[k] for k in d if k in cfg})
    if str(d.stage) not in STAGES:
        raise InputError(f"crossdiff: unknown stage {d.stage!r}: use one of {', '.join(STAGES)}")
    if str(d.loss) not in diffusion.LOSSES or str(d.schedule) not in diffusion.SCHEDULES:
        raise InputError(f"crossdiff: bad loss {d.loss!r} or schedule {d.schedule!r}")
    bmap = tuple(int(i) for i in (d.band_map or ()))
    if any(not 0 <= i < int(d.bands) for i in bmap):
        raise InputError(f"crossdiff: band_map {bmap} indexes outside the {d.bands} data bands")
    if not 0 <= int(d.feature_t) < int(d.T):
        raise InputError(f"crossdiff: feature_t must be in [0, T={d.T}), got {d.feature_t}")
    return CrossDiff(
        bands=int(d.bands), widths=tuple(int(v) for v in d.widths), groups=int(d.groups), head_channels=int(d.head_channels),
        band_map=bmap, stage=str(d.stage), schedule=str(d.schedule), T=int(d.T), feature_t=int(d.feature_t),
        p_uncond=float(d.p_uncond), loss=str(d.loss), feature_seed=int(d.feature_seed), guidance=float(d.guidance),
    )  # fmt: skip


CROSSDIFF_ENTRY = ModelEntry(
    "crossdiff", build_crossdiff, crossdiff_config,
    "CrossDiff (cross-predictive PAN<->MS diffusion pre-training at full resolution; fusion head on frozen encoders)",
)  # fmt: skip

__all__ = [
    "AttentionFuse", "BGRN_TO_WV2", "CROSSDIFF_ENTRY", "CondUNet", "CrossDiff", "Decoder", "Encoder", "FusionHead",
    "HEAD_FROZEN", "PRETEXT_FROZEN", "STAGES", "WV2_TO_BGRN", "band_map", "build_crossdiff", "crossdiff_config",
]  # fmt: skip
