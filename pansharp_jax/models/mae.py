"""A masked autoencoder (MAE, He et al. 2022) for C-band multispectral patches.

The shared pre-trained prior of the deep-unfolding network (:mod:`pansharp_jax.models.unfolding`)
and a backbone option of PanAdapter. Two masking schemes (``config.masking``):

* ``spatial``: one token per ``patch`` x ``patch`` square holding every band
  (``patch * patch * C`` values); a random ``mask_ratio`` of the squares is hidden.
* ``spectral`` (spatial-spectral): each square is split into ``band_groups`` tokens of
  ``C / band_groups`` consecutive bands; a random ``mask_ratio`` of the (square, group) tokens
  is hidden, so the network must infer missing bands from the other bands of the same place
  as well as missing places.

Encoder: the visible tokens only (linear embedding + fixed 2-D sine-cosine positions, plus a
learned embedding per band group in the spectral scheme) through a ViT
(:class:`~pansharp_jax.nn.vit.Encoder`, one ``nn.scan`` over blocks). Decoder: a narrower ViT
over all tokens (encoded visible ones + a learned mask token at the hidden places) predicting
each token's pixels. Loss: mean squared error over the hidden tokens only, on [0, 1] pixels
(``norm_pix_loss`` normalises each target token by its own mean and std, as the MAE paper's
option). No class token: nothing is classified.

Input standardisation (``standardize``, on by default): each image is standardised per band by
the mean and std of its VISIBLE pixels before the embedding, and the head's output is put back
on that scale (``pred = mu + sd * head``, the head zero-initialised, so an untrained MAE predicts
each band's visible mean). The MAE paper normalises by ImageNet's statistics; reflectances on
[0, 1] vary by a few hundredths, and without any normalisation the network stayed at the
dataset-mean solution (held-out masked MSE 0.0116 against 0.0081 for the per-sample mean fill,
after 1500 and after 5000 steps). Per-sample statistics of the visible pixels only leak nothing
of the hidden ones (tested) and make the prior independent of the scene's radiometric level.

Design choices the unfolding paper leaves open (ICCV 2023, code unreleased), each a config
field: patch 8 on 64 x 64 patches (64 squares), ViT width 128 / depth 4 / 4 heads, decoder 64 /
2 / 4, mask ratio 0.75 (spatial) and 0.5 (spectral, two band groups), trained from scratch on
Wald-reduced patches of the real scenes (no ImageNet weights: they have 3 bands).

Call: ``MAE(...).apply({'params': p}, images, rng=key, mask_ratio=None)`` with images
(N, H, W, C) float32 on [0, 1] -> dict ``pred`` (N, L, T) token predictions, ``target``
(N, L, T), ``mask`` (N, L) with 1 at hidden tokens, and ``image`` (N, H, W, C): the
predictions of every token put back into image form. ``mask_ratio=0`` hides nothing (the
prior's use inside the unfolding). The hidden set is drawn from ``rng`` (static count).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.vit import Encoder, patchify, sincos_pos_embed_2d, unpatchify


def group_tokens(x: jax.Array, patch: int, groups: int) -> jax.Array:
    """(N, H, W, C) -> (N, (H/p)(W/p) * groups, p*p*C/groups): each square's band groups in order."""
    n, h, w, c = x.shape
    if c % groups:
        raise InputError(f"{c} bands do not split into {groups} equal band groups")
    per = c // groups
    xs = x.reshape(n, h, w, groups, per)
    tok = jnp.stack([patchify(xs[..., g, :], patch) for g in range(groups)], axis=2)  # (N, L, G, T)
    return tok.reshape(n, -1, patch * patch * per)


def ungroup_tokens(tokens: jax.Array, patch: int, grid: tuple[int, int], groups: int, bands: int) -> jax.Array:
    """Inverse of :func:`group_tokens`."""
    n = tokens.shape[0]
    per = bands // groups
    tok = tokens.reshape(n, grid[0] * grid[1], groups, patch * patch * per)
    parts = [unpatchify(tok[:, :, g], patch, grid, per) for g in range(groups)]
    return jnp.concatenate(parts, axis=-1)


def random_keep(rng: jax.Array, n: int, length: int, keep: int) -> tuple[jax.Array, jax.Array]:
    """Per-sample random permutation: (ids_keep (n, keep), ids_restore (n, length))."""
    noise = jax.random.uniform(rng, (n, length))
    shuffle = jnp.argsort(noise, axis=1)
    return shuffle[:, :keep], jnp.argsort(shuffle, axis=1)


def masked_mse(pred: jax.Array, target: jax.Array, mask: jax.Array, *, norm_pix: bool = False) -> jax.Array:
    """Mean over hidden tokens of the per-token MSE; pred/target (N, L, T), mask (N, L) in {0, 1}.

    ``norm_pix``: targets standardised per token (mean 0, std 1, eps 1e-6) first.
    """
    if norm_pix:
        mu = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True)
        target = (target - mu) / jnp.sqrt(var + 1e-6)
    per_token = jnp.mean((pred - target) ** 2, axis=-1)
    return jnp.sum(per_token * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class MAE(nn.Module):
    """Masked autoencoder over C-band images (see the module docstring)."""

    bands: int
    patch: int = 8
    embed_dim: int = 128
    depth: int = 4
    heads: int = 4
    decoder_dim: int = 64
    decoder_depth: int = 2
    decoder_heads: int = 4
    masking: str = "spatial"
    band_groups: int = 2
    mask_ratio: float = 0.75
    remat: bool = False
    standardize: bool = True  # per-sample, per-band standardisation by the visible pixels (module docstring)
    dtype: jnp.dtype | None = None  # layers' compute dtype; None: promoted (float32, bf16 under a bf16 policy)

    @property
    def groups(self) -> int:
        return self.band_groups if self.masking == "spectral" else 1

    def tokens(self, x: jax.Array) -> jax.Array:
        """The token targets (N, L, T) of images (N, H, W, C)."""
        return group_tokens(x, self.patch, self.groups)

    @nn.compact
    def __call__(self, images: jax.Array, *, rng: jax.Array | None = None, mask_ratio: float | None = None) -> dict[str, jax.Array]:
        if self.masking not in ("spatial", "spectral"):
            raise InputError(f"masking must be 'spatial' or 'spectral', got {self.masking!r}")
        n, h, w, c = images.shape
        if c != self.bands:
            raise InputError(f"wrong band count: the MAE has {self.bands} bands, the images have {c}")
        grid = (h // self.patch, w // self.patch)
        g = self.groups
        images = images.astype(jnp.float32)
        target = self.tokens(images)
        length = target.shape[1]
        ratio = self.mask_ratio if mask_ratio is None else float(mask_ratio)
        keep = length if ratio <= 0 else max(1, int(round(length * (1.0 - ratio))))
        if keep < length and rng is None:
            raise InputError("masking needs an rng key (or mask_ratio=0)")
        if keep < length:
            ids_keep, ids_restore = random_keep(rng, n, length, keep)
            mask = jnp.ones((n, length)).at[jnp.arange(n)[:, None], ids_keep].set(0.0)
        else:
            ids_keep = ids_restore = None
            mask = jnp.zeros((n, length))
        if self.standardize:
            mu, sd = visible_band_stats(images, mask, self.patch, g)
            tokens_in = self.tokens((images - mu) / sd)
        else:
            tokens_in = target

        pos = np.repeat(sincos_pos_embed_2d(*grid, self.embed_dim), g, axis=0)  # (L, D), groups share a place
        dpos = np.repeat(sincos_pos_embed_2d(*grid, self.decoder_dim), g, axis=0)
        x = nn.Dense(self.embed_dim, dtype=self.dtype, name="embed")(tokens_in) + pos
        if g > 1:
            gemb = self.param("group_embed", nn.initializers.normal(0.02), (g, self.embed_dim))
            x = x + jnp.tile(gemb, (length // g, 1))
        if ids_keep is not None:
            x = jnp.take_along_axis(x, ids_keep[..., None], axis=1)
        x = Encoder(self.depth, self.heads, remat=self.remat, dtype=self.dtype, name="encoder")(x)

        y = nn.Dense(self.decoder_dim, dtype=self.dtype, name="decoder_embed")(x)
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.decoder_dim))  # always created
        if ids_restore is not None:
            y = jnp.concatenate([y, jnp.broadcast_to(mask_token, (n, length - keep, self.decoder_dim))], axis=1)
            y = jnp.take_along_axis(y, ids_restore[..., None], axis=1)
        y = y + dpos
        if g > 1:
            dgemb = self.param("decoder_group_embed", nn.initializers.normal(0.02), (g, self.decoder_dim))
            y = y + jnp.tile(dgemb, (length // g, 1))
        y = Encoder(self.decoder_depth, self.decoder_heads, remat=self.remat, dtype=self.dtype, name="decoder")(y)
        head_init = nn.initializers.zeros if self.standardize else nn.initializers.lecun_normal()
        pred = nn.Dense(target.shape[-1], dtype=jnp.float32, kernel_init=head_init, name="head")(y).astype(jnp.float32)
        if self.standardize:  # back to [0, 1] pixels: a zero prediction is the visible per-band mean
            pred = self.tokens(ungroup_tokens(pred, self.patch, grid, g, c) * sd + mu)
        image = ungroup_tokens(pred, self.patch, grid, g, c)
        return {"pred": pred, "target": target, "mask": mask, "image": image}


def visible_band_stats(images: jax.Array, mask: jax.Array, patch: int, groups: int) -> tuple[jax.Array, jax.Array]:
    """Per-sample, per-band mean and std of the VISIBLE pixels; images (N, H, W, C), mask (N, L).

    Returns (mu, sd), each (N, 1, 1, C); sd = sqrt(var + 1e-6). A band none of whose tokens is
    visible (spectral masking) gets the mean 0 and std 1e-3 of an empty set. Hidden pixels never
    enter the statistics, so the standardisation leaks nothing of what is to be predicted.
    """
    n, h, w, c = images.shape
    grid = (h // patch, w // patch)
    per = patch * patch * c // groups
    vis = ungroup_tokens(jnp.broadcast_to(1.0 - mask[..., None], (n, mask.shape[1], per)), patch, grid, groups, c)
    count = jnp.maximum(jnp.sum(vis, axis=(1, 2), keepdims=True), 1.0)
    mu = jnp.sum(images * vis, axis=(1, 2), keepdims=True) / count
    var = jnp.sum(jnp.square(images - mu) * vis, axis=(1, 2), keepdims=True) / count
    return mu, jnp.sqrt(var + 1e-6)


def compose(images: jax.Array, out: dict[str, jax.Array], patch: int, groups: int) -> jax.Array:
    """The MAE's reconstruction: visible tokens from ``images``, hidden ones predicted; (N, H, W, C)."""
    n, h, w, c = images.shape
    m = out["mask"][..., None]
    tokens = out["target"] * (1.0 - m) + out["pred"] * m
    return ungroup_tokens(tokens, patch, (h // patch, w // patch), groups, c)


class MAEPretrain(nn.Module):
    """The MAE as a model of the one trainer (registry name ``mae``).

    * ``__call__(lrms, pan, lms, train=False)`` (the registry contract): the MAE's unmasked
      reconstruction of ``lms`` (N, H, W, C), so that ``fuse`` and shape checks work; it is
      not a pan-sharpening method.
    * ``training_loss(batch, rng)``: masked MSE of the reconstruction of the batch's GT
      patches (``batch['gt']``, the high-resolution MS the prior must know), hidden tokens
      drawn from ``rng``; metrics ``masked_mse`` and ``mean_fill_mse`` (the error of filling
      every hidden token with the patch's visible mean, the baseline to beat).
    * ``eval_output(batch, rng)``: the composed reconstruction (visible pixels from the GT,
      hidden ones predicted), which the trainer scores against the GT.

    Its MAE's params sit under ``params['mae']`` (what a later run's ``init_from`` takes).
    """

    fields: tuple[tuple[str, Any], ...]
    norm_pix_loss: bool = False

    def setup(self) -> None:
        self.mae = MAE(**dict(self.fields))

    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        return self.mae(lms, mask_ratio=0.0)["image"]

    def training_loss(self, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        out = self.mae(batch["gt"], rng=rng)
        loss = masked_mse(out["pred"], out["target"], out["mask"], norm_pix=self.norm_pix_loss)
        return loss, {"masked_mse": masked_mse(out["pred"], out["target"], out["mask"]),
                      "mean_fill_mse": mean_fill_mse(out["target"], out["mask"])}  # fmt: skip

    def eval_output(self, batch: dict[str, jax.Array], rng: jax.Array) -> jax.Array:
        out = self.mae(batch["gt"], rng=rng)
        return compose(batch["gt"], out, self.mae.patch, self.mae.groups)


def mean_fill_mse(target: jax.Array, mask: jax.Array) -> jax.Array:
    """MSE over hidden tokens when each is filled with the mean of its sample's visible tokens
    (per value position): the trivial baseline of masked reconstruction. (N, L, T), (N, L)."""
    vis = 1.0 - mask[..., None]
    fill = jnp.sum(target * vis, axis=1, keepdims=True) / jnp.maximum(jnp.sum(vis, axis=1, keepdims=True), 1.0)
    return masked_mse(jnp.broadcast_to(fill, target.shape), target, mask)


def mae_fields(cfg: ml_collections.ConfigDict) -> tuple[tuple[str, Any], ...]:
    """The :class:`MAE` constructor arguments of a model config, as a hashable tuple."""
    return (
        ("bands", int(cfg.bands)), ("patch", int(cfg.patch)), ("embed_dim", int(cfg.embed_dim)), ("depth", int(cfg.depth)),
        ("heads", int(cfg.heads)), ("decoder_dim", int(cfg.decoder_dim)), ("decoder_depth", int(cfg.decoder_depth)),
        ("decoder_heads", int(cfg.decoder_heads)), ("masking", str(cfg.masking)), ("band_groups", int(cfg.band_groups)),
        ("mask_ratio", float(cfg.mask_ratio)), ("remat", bool(cfg.get("remat", False))),
        ("standardize", bool(cfg.get("standardize", True))),
    )  # fmt: skip


def mae_config(bands: int = 8) -> ml_collections.ConfigDict:
    """The MAE's model config: the sizes of the module docstring (spatial masking)."""
    return ml_collections.ConfigDict(
        {"name": "mae", "bands": bands, "patch": 8, "embed_dim": 128, "depth": 4, "heads": 4, "decoder_dim": 64,
         "decoder_depth": 2, "decoder_heads": 4, "masking": "spatial", "band_groups": 2, "mask_ratio": 0.75,
         "norm_pix_loss": False, "remat": False, "standardize": True}
    )  # fmt: skip


def build_mae(cfg: ml_collections.ConfigDict) -> MAE:
    """The bare :class:`MAE` of a model config (:func:`mae_config`)."""
    return MAE(**dict(mae_fields(cfg)))


def build_mae_pretrain(cfg: ml_collections.ConfigDict) -> MAEPretrain:
    """The trainer's :class:`MAEPretrain` of a model config (:func:`mae_config`)."""
    return MAEPretrain(mae_fields(cfg), bool(cfg.get("norm_pix_loss", False)))


MAE_ENTRY = ModelEntry("mae", build_mae_pretrain, mae_config, "masked autoencoder (spatial or spatial-spectral masking) for C-band patches")

__all__ = [
    "MAE", "MAE_ENTRY", "MAEPretrain", "build_mae", "build_mae_pretrain", "compose", "group_tokens", "mae_config", "mae_fields",
    "masked_mse", "mean_fill_mse", "random_keep", "ungroup_tokens", "visible_band_stats",
]  # fmt: skip
