"""PanAdapter (Wu et al., AAAI 2025): CNN priors (stage 1), then cascaded adapters in a frozen ViT (stage 2).

Arrays: lrms (N, h, w, C), pan (N, H, W, 1), lms (N, H, W, C), H = ratio * h, float32 on [0, 1];
output (N, H, W, C) = LMS + the network (not clipped).

Stage 1 (``stage=1``), the spatial-spectral prior network (SSPEN):

* two CNN bodies in the EDSR-baseline layout (3x3 conv head, ``blocks`` residual blocks
  conv-ReLU-conv without BN and with residual scale 1, one nn.scan; 3x3 conv + the head's
  skip): the *spectral* body on the LRMS, the *spatial* body on concat(LMS, PAN);
* Local Prior Extraction (LPE) on every tap of a body (each residual block's output and the
  body's output): 1x1 conv F -> ``lpe_dim``, GELU, depthwise 3x3; one LPE per tap (nn.vmap);
* the taps' LPE features concatenated, 1x1 conv -> ``prior_dim``: prior A (N, h, w, m,
  spectral) and B (N, H, W, m, spatial);
* a light head (our choice; the paper releases no stage-1 objective): conv3x3(concat(
  bilinear-up(A), B)) -> C, + LMS, trained on the fusion loss, so the priors are supervised.

Stage 2 (``stage=2``): the priors feed cascaded adapters injected into a frozen ViT.

* ViT: LMS patches of ``vit_patch`` pixels -> Dense(``vit_dim``) + fixed sine-cosine positions
  -> ``vit_depth`` pre-LN blocks (:mod:`pansharp_jax.nn.vit`); its params (``vit/embed``,
  ``vit/encoder``) have the layout of :class:`~pansharp_jax.models.mae.MAE`'s ``embed`` and
  ``encoder``, so an MAE pre-training run loads in with ``init_from``.
* tokens of width k = ``adapter_dim`` on the ViT's grid (H/P, W/P): A unfolded by (P/r)^2
  pixels, B by P^2 pixels, each Dense -> k (``embed_a``, ``embed_b``).
* ``adapters`` layers (one nn.scan): each runs ``vit_depth / adapters`` frozen ViT blocks,
  then
  - v = Dense(k)(ViT tokens);
  - CTF on each branch (P = its own tokens, O = the other's, both before this layer):
    F = P * sigmoid(MLP(O)) + P (MLP k -> k/4 -> k, GELU); F += MHA(q=v, k=F, v=F);
    F += FFN(F) (k -> k -> k, GELU);
  - CTI: U = Dense(k)(concat(spatial, spectral)); ViT tokens += W (s * MHA(q=U, k=v, v=v)),
    W a k -> D projection without bias (so s alone gates the injection), the scalar s
    initialised to zero: training starts from the frozen backbone.
* tail: both branches' tokens as (H/P, W/P, k) maps, bilinearly resized to (H, W), with a
  2-channel coordinate grid on [-1, 1]; a SIREN-style MLP (Dense ``tail_hidden``, sin(w0 x),
  Dense C); + LMS. As in the released code the ViT's own output is discarded. The tail's
  output layer starts at zero (``tail_zero_init``, our choice; the code uses PyTorch's default
  init), so stage 2 starts at the LMS: a random SIREN output layer adds noise of the images'
  own magnitude and 100 CPU steps did not remove it (held-out Q2n 0.29, below the LMS's 0.62).

Code vs paper, and the choices made here (training ones through the config: ``optim.frozen``,
``loss``; sizes and the adapter count through model fields):

* whether stage 1 fine-tunes the CNN (paper: yes; code: frozen EDSRs): no EDSR weights are in
  the project, so the bodies train in stage 1 by default; ``--config.optim.frozen=
  spectral/body,spatial/body`` freezes them (after :func:`import_edsr`, the code's setting);
* stage-1 objective: none released; here the light head above on the fusion loss (MSE);
* spectral input: the code feeds a bicubic x1/4 of the LMS; we feed the LRMS itself;
* LPE taps: the code taps the 16 block outputs only (leaving the body's last conv unused);
  we add the body's output as one more tap;
* the backbone: IPT (Chen et al. 2021, 576 wide, 12 layers) is not available; ours is the MAE
  encoder of ``configs/mae_wv2_real.py`` (or random and frozen in ``:smoke``), fed the LMS;
* adapter placement (unspecified; 6 adapters in 12 layers in the code): after every
  ``vit_depth / adapters``-th block;
* both CTF branches update from the other branch's previous tokens (simultaneously);
* the CTI's output projection has no bias (the code's Linear has one), so s = 0 means no
  injection at any point of training, not only at its start;
* the code's grid_sample with a batch-1 grid is a plain bilinear resize here (any batch).
* stage 2 trains ``embed_a``, ``embed_b``, ``adapters``, ``tail``; ``spectral``, ``spatial``
  (bodies and LPE) and ``vit`` are frozen (``optim.frozen``), as the code's ``set_stage(2)``.
  Because the ViT output is discarded, the LAST adapter's CTI (its injection) cannot reach
  the prediction: its params get zero gradients and keep their initial values.

Call: ``apply({'params': p}, lrms, pan, lms, train=False)``; ``return_vit=True`` (stage 2)
returns the ViT path instead: the tokens after every block, injection and the final LayerNorm,
(N, L, D) (with s = 0 they equal the frozen backbone's own output).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.models.mae import mae_config, visible_band_stats
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.unroll import resolve_unroll
from pansharp_jax.nn.vit import Encoder, EncoderBlock, patchify, sincos_pos_embed_2d


class ResBlock(nn.Module):
    """EDSR residual block without BN: x + conv(relu(conv(x))); ``(x, _) -> (x', x')`` for the scan."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array, _: None = None) -> tuple[jax.Array, jax.Array]:
        y = nn.Conv(self.features, (3, 3), name="conv1")(x)
        x = x + nn.Conv(self.features, (3, 3), name="conv2")(nn.relu(y))
        return x, x


class EDSRBody(nn.Module):
    """Head conv (in -> F), ``blocks`` residual blocks (one scan), conv + head skip.

    Returns the taps (blocks + 1, N, H, W, F): every block's output, then the body's output.
    """

    features: int = 64
    blocks: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        head = nn.Conv(self.features, (3, 3), name="head")(x)
        stack = nn.scan(  # unrolled on the CPU, where the rolled loop's reverse pass is 10x slower
            ResBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.blocks,
            unroll=resolve_unroll(0, self.blocks),
        )
        y, taps = stack(self.features, name="blocks")(head, None)
        out = nn.Conv(self.features, (3, 3), name="tail")(y) + head
        return jnp.concatenate([taps, out[None]], axis=0)


class LPE(nn.Module):
    """Local Prior Extraction: 1x1 conv F -> d, GELU, depthwise 3x3; (N, H, W, F) -> (N, H, W, d)."""

    dim: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.gelu(nn.Conv(self.dim, (1, 1), name="reduce")(x))
        return nn.Conv(self.dim, (3, 3), feature_group_count=self.dim, name="depthwise")(y)


class PriorBranch(nn.Module):
    """EDSR body -> one LPE per tap -> concat -> 1x1 conv; (N, H, W, Cin) -> (N, H, W, prior_dim)."""

    features: int
    blocks: int
    lpe_dim: int
    prior_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        taps = EDSRBody(self.features, self.blocks, name="body")(x)
        lpe = nn.vmap(LPE, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0, out_axes=0)
        local = lpe(self.lpe_dim, name="lpe")(taps)  # (T, N, H, W, d)
        t, n, h, w, d = local.shape
        cat = jnp.moveaxis(local, 0, -2).reshape(n, h, w, t * d)  # tap-major channels
        return nn.Conv(self.prior_dim, (1, 1), name="fuse")(cat)


def _mha(dim: int, heads: int, name: str) -> nn.MultiHeadDotProductAttention:
    return nn.MultiHeadDotProductAttention(num_heads=heads, qkv_features=dim, out_features=dim, deterministic=True, name=name)


class CTF(nn.Module):
    """Cross-token fusion of one branch: own tokens ``p``, other branch ``o``, ViT query ``v``; (N, L, k)."""

    dim: int
    heads: int

    @nn.compact
    def __call__(self, p: jax.Array, o: jax.Array, v: jax.Array) -> jax.Array:
        gate = nn.Dense(self.dim, name="gate_out")(nn.gelu(nn.Dense(max(1, self.dim // 4), name="gate_in")(o)))
        f = p * nn.sigmoid(gate) + p
        f = f + _mha(self.dim, self.heads, "attn")(v, inputs_k=f, inputs_v=f)
        return f + nn.Dense(self.dim, name="ffn_out")(nn.gelu(nn.Dense(self.dim, name="ffn_in")(f)))


class AdapterLayer(nn.Module):
    """``per`` frozen ViT blocks (pure functions of the scanned ``blocks`` params), then CTF x 2 and CTI.

    Carry ``(x (N, L, D), spatial (N, L, k), spectral (N, L, k))``; for :class:`PanAdapter`'s scan.
    """

    dim: int
    heads: int
    vit_heads: int
    per: int

    @nn.compact
    def __call__(self, carry: tuple[jax.Array, ...], blocks: Any) -> tuple[tuple[jax.Array, ...], None]:
        x, spa, spe = carry
        block = EncoderBlock(self.vit_heads, parent=None)
        for j in range(self.per):
            x = block.apply({"params": jax.tree.map(lambda a, j=j: a[j], blocks)}, x)[0]
        v = nn.Dense(self.dim, name="v_proj")(x)
        spa_new = CTF(self.dim, self.heads, name="ctf_spatial")(spa, spe, v)
        spe_new = CTF(self.dim, self.heads, name="ctf_spectral")(spe, spa, v)
        u = nn.Dense(self.dim, name="cti_in")(jnp.concatenate([spa_new, spe_new], axis=-1))
        scale = self.param("scale", nn.initializers.zeros, ())
        delta = scale * _mha(self.dim, self.heads, "cti_attn")(u, inputs_k=v, inputs_v=v)
        x = x + nn.Dense(x.shape[-1], use_bias=False, name="cti_out")(delta)  # s = 0: no injection at all
        return (x, spa_new, spe_new), None


class ViTBackbone(nn.Module):
    """The frozen ViT: ``embed`` (Dense on P x P x C patches) + sine-cosine positions, ``encoder``.

    ``standardize``: each image standardised per band first (its own mean and std), as the MAE
    that pre-trained these params saw its visible pixels (:func:`~pansharp_jax.models.mae.visible_band_stats`).
    """

    patch: int
    dim: int
    depth: int
    heads: int
    standardize: bool = True

    def setup(self) -> None:
        self.embed = nn.Dense(self.dim)
        self.encoder = Encoder(self.depth, self.heads)

    def tokens(self, images: jax.Array) -> jax.Array:
        """(N, H, W, C) -> embedded tokens with positions (N, (H/P)(W/P), D)."""
        n, h, w, _ = images.shape
        pos = sincos_pos_embed_2d(h // self.patch, w // self.patch, self.dim)
        if self.standardize:
            mu, sd = visible_band_stats(images, jnp.zeros((n, (h // self.patch) * (w // self.patch))), self.patch, 1)
            images = (images - mu) / sd
        return self.embed(patchify(images, self.patch)) + pos

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.encoder(self.tokens(images))


class SirenTail(nn.Module):
    """Token maps (N, g, g', k) x 2 -> bilinear to (H, W) + coordinates -> Dense, sin(w0 .), Dense C."""

    bands: int
    hidden: int
    w0: float = 1.0
    zero_init: bool = True

    @nn.compact
    def __call__(self, maps: jax.Array, size: tuple[int, int]) -> jax.Array:
        n, (h, w) = maps.shape[0], size
        feats = jax.image.resize(maps, (n, h, w, maps.shape[-1]), "bilinear")
        rows, cols = jnp.meshgrid(jnp.linspace(-1.0, 1.0, h), jnp.linspace(-1.0, 1.0, w), indexing="ij")
        coords = jnp.broadcast_to(jnp.stack([rows, cols], -1), (n, h, w, 2))
        y = jnp.sin(self.w0 * nn.Dense(self.hidden, name="hidden")(jnp.concatenate([feats, coords], -1)))
        init = nn.initializers.zeros if self.zero_init else nn.linear.default_kernel_init
        return nn.Dense(self.bands, kernel_init=init, name="out")(y)


class PanAdapter(nn.Module):
    """Two-stage PanAdapter (module docstring); ``__call__(lrms, pan, lms, train, return_vit)``."""

    bands: int
    ratio: int = 4
    stage: int = 2
    features: int = 64
    blocks: int = 16
    lpe_dim: int = 16
    prior_dim: int = 64
    vit_patch: int = 8
    vit_dim: int = 128
    vit_depth: int = 4
    vit_heads: int = 4
    vit_standardize: bool = True  # as the MAE that pre-trained the ViT (its config's ``standardize``)
    adapters: int = 2
    adapter_dim: int = 96
    adapter_heads: int = 4
    tail_hidden: int = 256
    w0: float = 1.0
    tail_zero_init: bool = True

    def _check(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array) -> None:
        c, r, p = self.bands, self.ratio, self.vit_patch
        if lrms.ndim != 4 or lrms.shape[-1] != c or lms.shape[-1] != c:
            raise InputError(f"PanAdapter has {c} bands: got lrms {lrms.shape}, lms {lms.shape}")
        if pan.shape[-1] != 1 or pan.shape[:3] != lms.shape[:3] or lms.shape[1:3] != (lrms.shape[1] * r, lrms.shape[2] * r):
            raise InputError(f"PanAdapter needs pan (N, {r}h, {r}w, 1) and lms (N, {r}h, {r}w, C) for lrms (N, h, w, C)")
        if self.stage not in (1, 2):
            raise InputError(f"PanAdapter stage must be 1 or 2, got {self.stage}")
        if self.stage == 2 and (p % r or lms.shape[1] % p or lms.shape[2] % p):
            raise InputError(f"PanAdapter: the ViT patch {p} must be a multiple of the ratio {r} and divide the PAN size")
        if self.stage == 2 and self.vit_depth % self.adapters:
            raise InputError(f"PanAdapter: {self.adapters} adapters do not divide the ViT's {self.vit_depth} blocks")

    @nn.compact
    def __call__(
        self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False, return_vit: bool = False
    ) -> jax.Array:
        self._check(lrms, pan, lms)
        lrms, pan, lms = (a.astype(jnp.float32) for a in (lrms, pan, lms))
        n, h, w, c = lms.shape
        m = self.prior_dim
        branch = dict(features=self.features, blocks=self.blocks, lpe_dim=self.lpe_dim, prior_dim=m)
        prior_a = PriorBranch(**branch, name="spectral")(lrms)  # (N, h/r, w/r, m)
        prior_b = PriorBranch(**branch, name="spatial")(jnp.concatenate([lms, pan], -1))  # (N, h, w, m)
        if self.stage == 1:
            up = jax.image.resize(prior_a, (n, h, w, m), "bilinear")
            return lms + nn.Conv(c, (3, 3), name="prior_head")(jnp.concatenate([up, prior_b], -1))

        p, k = self.vit_patch, self.adapter_dim
        vit = ViTBackbone(p, self.vit_dim, self.vit_depth, self.vit_heads, self.vit_standardize, name="vit")
        x = vit.tokens(lms)
        if self.is_initializing():
            vit.encoder(x[:1])  # creates the frozen blocks' params, in the MAE encoder's layout
        enc = self.variables["params"]["vit"]["encoder"]
        per = self.vit_depth // self.adapters
        grouped = jax.tree.map(lambda a: a.reshape((self.adapters, per) + a.shape[1:]), enc["blocks"])
        tok_a = nn.Dense(k, name="embed_a")(patchify(prior_a, p // self.ratio))
        tok_b = nn.Dense(k, name="embed_b")(patchify(prior_b, p))
        scan = nn.scan(AdapterLayer, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0, length=self.adapters)
        (x, spa, spe), _ = scan(k, self.adapter_heads, self.vit_heads, per, name="adapters")((x, tok_b, tok_a), grouped)
        if return_vit:
            return nn.LayerNorm(epsilon=1e-6, parent=None).apply({"params": enc["norm"]}, x)
        grid = (n, h // p, w // p, k)
        maps = jnp.concatenate([spa.reshape(grid), spe.reshape(grid)], -1)
        return lms + SirenTail(c, self.tail_hidden, self.w0, self.tail_zero_init, name="tail")(maps, (h, w))


STAGE2_FROZEN = ("spectral", "spatial", "vit")
"""Param prefixes frozen in stage 2 (``optim.frozen``); the rest (embed_a/b, adapters, tail) trains."""


def panadapter_config(bands: int = 8) -> ml_collections.ConfigDict:
    """Model config: EDSR-baseline bodies (64 features, 16 blocks), LPE 16, priors 64; the ViT of
    :func:`~pansharp_jax.models.mae.mae_config` (``vit``: patch 8, 128 wide, depth 4, 4 heads);
    2 adapters 96 wide with 4 heads; tail 256 hidden, w0 1, zero-initialised output; stage 2."""
    return ml_collections.ConfigDict(
        {"name": "panadapter", "bands": bands, "ratio": 4, "stage": 2, "features": 64, "blocks": 16, "lpe_dim": 16,
         "prior_dim": 64, "vit": mae_config(bands), "adapters": 2, "adapter_dim": 96, "adapter_heads": 4,
         "tail_hidden": 256, "w0": 1.0, "tail_zero_init": True}
    )  # fmt: skip


def build_panadapter(cfg: ml_collections.ConfigDict) -> PanAdapter:
    """The :class:`PanAdapter` of a model config (:func:`panadapter_config`)."""
    vit = cfg.vit if "vit" in cfg else mae_config(int(cfg.bands))
    return PanAdapter(
        bands=int(cfg.bands), ratio=int(cfg.ratio), stage=int(cfg.stage), features=int(cfg.features), blocks=int(cfg.blocks),
        lpe_dim=int(cfg.lpe_dim), prior_dim=int(cfg.prior_dim), vit_patch=int(vit.patch), vit_dim=int(vit.embed_dim),
        vit_depth=int(vit.depth), vit_heads=int(vit.heads), vit_standardize=bool(vit.get("standardize", True)),
        adapters=int(cfg.adapters), adapter_dim=int(cfg.adapter_dim), adapter_heads=int(cfg.adapter_heads),
        tail_hidden=int(cfg.tail_hidden), w0=float(cfg.w0), tail_zero_init=bool(cfg.get("tail_zero_init", True)),
    )  # fmt: skip


def _conv(w: np.ndarray) -> np.ndarray:
    """PyTorch conv weight (out, in, kh, kw) -> Flax kernel (kh, kw, in, out)."""
    return np.ascontiguousarray(np.transpose(np.asarray(w, np.float32), (2, 3, 1, 0)))


def edsr_body_params(state_dict: Mapping[str, np.ndarray], body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An EDSR state dict's body tensors in the layout of our :class:`EDSRBody` params ``body``.

    EDSR names (``module.`` / ``model.`` prefixes dropped): ``head.0`` -> ``head``;
    ``body.{i}.body.0`` / ``body.{i}.body.2`` -> ``blocks/conv1`` / ``blocks/conv2`` (block i,
    stacked; the first ``blocks`` of the file); ``body.{B}`` (the conv after the B blocks) ->
    ``tail``. Tensors whose shape differs (e.g. the RGB head for C+1 inputs) keep ``body``'s
    values. Returns (new body params, names of the loaded tensors). The mean-shift and
    upsampler layers are not used.
    """
    sd = {k.removeprefix("module.").removeprefix("model."): np.asarray(v) for k, v in state_dict.items()}
    nfile = len({k.split(".")[1] for k in sd if k.startswith("body.") and ".body.0.weight" in k})
    ours = int(np.shape(body["blocks"]["conv1"]["kernel"])[0])
    if nfile < ours or f"body.{nfile}.weight" not in sd:
        raise InputError(f"not an EDSR body with at least {ours} residual blocks (found {nfile})")
    new = jax.tree.map(np.asarray, dict(body))
    loaded: list[str] = []

    def put(dst: tuple[str, ...], kernel: np.ndarray, bias: np.ndarray, name: str) -> None:
        node = new
        for key in dst[:-1]:
            node = node[key]
        leaf = dict(node[dst[-1]])
        if kernel.shape == np.shape(leaf["kernel"]) and bias.shape == np.shape(leaf["bias"]):
            leaf["kernel"], leaf["bias"] = kernel, bias
            node[dst[-1]] = leaf
            loaded.append(name)

    put(("head",), _conv(sd["head.0.weight"]), sd["head.0.bias"].astype(np.float32), "head.0")
    for conv, idx in (("conv1", 0), ("conv2", 2)):
        ks = np.stack([_conv(sd[f"body.{i}.body.{idx}.weight"]) for i in range(ours)])
        bs = np.stack([sd[f"body.{i}.body.{idx}.bias"].astype(np.float32) for i in range(ours)])
        put(("blocks", conv), ks, bs, f"body.0-{ours - 1}.body.{idx}")
    put(("tail",), _conv(sd[f"body.{nfile}.weight"]), sd[f"body.{nfile}.bias"].astype(np.float32), f"body.{nfile}")
    return new, loaded


def import_edsr(path: str | Path, params: Mapping[str, Any], branches: tuple[str, ...] = ("spectral", "spatial")) -> tuple[dict[str, Any], list[str]]:
    """``params`` (a PanAdapter's) with an EDSR .pt/.pth file's body copied into each branch's ``body``.

    E.g. EDSR-baseline x2 (Lim et al. 2017; not shipped with the project): its 16 blocks and
    final body conv load (64 features); the 3-band head does not fit C or C+1 inputs and
    stays as it is. Read without PyTorch (:mod:`pansharp_jax.models.torch_reader`). Returns
    (params, ``"branch: tensor"`` names loaded).
    """
    from pansharp_jax.models.torch_reader import load_torch_state_dict

    sd = load_torch_state_dict(path)
    out = dict(params)
    names: list[str] = []
    for b in branches:
        body, loaded = edsr_body_params(sd, params[b]["body"])
        out[b] = {**params[b], "body": body}
        names += [f"{b}: {x}" for x in loaded]
    return out, names


PANADAPTER_ENTRY = ModelEntry(
    "panadapter", build_panadapter, panadapter_config, "PanAdapter (Wu et al. 2025): CNN priors + LPE, cascaded adapters in a frozen ViT"
)

__all__ = [
    "AdapterLayer", "CTF", "EDSRBody", "LPE", "PANADAPTER_ENTRY", "PanAdapter", "PriorBranch", "ResBlock", "STAGE2_FROZEN",
    "SirenTail", "ViTBackbone", "build_panadapter", "edsr_body_params", "import_edsr", "panadapter_config",
]  # fmt: skip
