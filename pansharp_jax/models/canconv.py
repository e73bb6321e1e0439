"""CANNet (Duan et al., CVPR 2024): a small U-Net of CANConv residual blocks.

Structure (``channels`` = 32, C = bands), as the official ``canconv/models/cannet``:

* ``head_conv``: 3x3 conv on ``concat[PAN, LMS]`` (C+1 -> 32; PAN first);
* ``rb1`` (32) -> ``down1`` -> ``rb2`` (64) -> ``down2`` -> ``rb3`` (128) -> ``up1`` (+ rb2's
  output) -> ``rb4`` (64) -> ``up2`` (+ rb1's output) -> ``rb5`` (32) -> ``tail_conv`` 3x3
  (32 -> C) -> + LMS;
* ``CANResBlock``: x + CANConv2(LeakyReLU(CANConv1(x))); CANConv2 reuses CANConv1's partition;
  rb4 reuses rb2's partition and rb5 rb1's; rb3 clusters on its own (k-means runs 3 times per
  forward: in ``rb1/conv1``, ``rb2/conv1``, ``rb3/conv1``);
* down (``dsconv``): conv 2x2 stride 2 -> LeakyReLU -> depthwise 3x3 (no bias) -> 1x1 (x2 ch);
* up: ConvTranspose 2x2 stride 2 (/2 ch) -> LeakyReLU -> + skip -> depthwise 3x3 (no bias) ->
  1x1 -> LeakyReLU. LeakyReLU slope 0.01 (PyTorch's default) everywhere.

Every CANConv: K = 32 clusters, ``filter_threshold`` 0.005 (so 33 partitions), low-rank kernel
generator, cluster bias (see :mod:`pansharp_jax.nn.canconv`). Parameter count 787,426 (C = 8)
and 785,118 (C = 4), equal to the released ``cannet_wv3.pth`` / ``cannet_gf2.pth`` /
``cannet_qb.pth``. No image size is fixed; PAN sides must be multiples of 4 (two 2x2 stride-2
downsamplings and their transposed upsamplings).

Registry contract: ``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms``, NHWC
float32 on [0, 1]; ``lrms`` is unused (the network works on LMS and PAN). Extra keyword
arguments for a training cluster cache (:class:`pansharp_jax.nn.canconv.ClusterCache`):
``kmeans_indices={"rb1": (B, P1), "rb2": (B, P2), "rb3": (B, P3)}`` and ``kmeans_mode``
(``"ready"`` | ``"update"``); the raw k-means indices of the forward pass are sown to
``'intermediates'`` (``rb1/conv1/kmeans_indices`` etc.; read them with
``apply(..., mutable=['intermediates'])``). As in the official code, the cache is meant for
training only: evaluation runs fresh k-means (fixed seed) on every forward. The trainer uses
it when ``config.cluster_cache.enabled`` (on in the ``configs/cannet_*.py``; see
:mod:`pansharp_jax.train.cluster_cache`: per-sample ids, one jitted step per mode, the cache
saved with every checkpoint).

Facts the records leave open, and what is done here: k-means is k-means++ + 20 Lloyd
iterations (kmcuda stops at < 1 % reassignments; its random generator differs), so outputs are
not bit-equal to the official CUDA run; with the same partitions the imported weights
reproduce the PyTorch network to float32 rounding (tests/test_cannet.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from pansharp_jax.errors import InputError
from pansharp_jax.models.cnn_baselines import Conv2d, ConvTranspose2d, torch_default_uniform
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.canconv import CANConv, ClusterCache  # noqa: F401  (ClusterCache re-exported)

__all__ = ["CANNet", "CANResBlock", "CANNET_ENTRY", "ClusterCache", "cannet_config", "kmeans_indices_from"]

_DN = ("NHWC", "HWIO", "NHWC")


def _lrelu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.01)


class _DepthwiseConv3(nn.Module):
    """``nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)``; kernel (3, 3, 1, c)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        kernel = self.param("kernel", torch_default_uniform(9), (3, 3, 1, c))
        return jax.lax.conv_general_dilated(
            x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN, feature_group_count=c
        )


class _Conv2x2S2(nn.Module):
    """``nn.Conv2d(cin, cout, 2, 2, 0)`` on NHWC (even H, W); kernel (2, 2, cin, cout)."""

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        init = torch_default_uniform(4 * c)
        kernel = self.param("kernel", init, (2, 2, c, self.features))
        bias = self.param("bias", init, (self.features,))
        xr = x.reshape(b, h // 2, 2, w // 2, 2, c)
        return jnp.einsum("bhiwjc,ijco->bhwo", xr, kernel) + bias


class ConvDown(nn.Module):
    """Official ``ConvDown`` (dsconv): names ``conv_0`` (2x2/2), ``conv_2`` (dw 3x3), ``conv_3`` (1x1)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = _lrelu(_Conv2x2S2(c, name="conv_0")(x))
        x = _DepthwiseConv3(name="conv_2")(x)
        return Conv2d(2 * c, 1, 0, name="conv_3")(x)


class ConvUp(nn.Module):
    """Official ``ConvUp``: ``conv1`` (ConvT 2x2/2), ``conv2_0`` (dw 3x3), ``conv2_1`` (1x1)."""

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array) -> jax.Array:
        c = x.shape[-1] // 2
        x = _lrelu(ConvTranspose2d(c, 2, 2, 0, name="conv1")(x)) + skip
        x = _DepthwiseConv3(name="conv2_0")(x)
        return _lrelu(Conv2d(c, 1, 0, name="conv2_1")(x))


class CANResBlock(nn.Module):
    """x + conv2(LeakyReLU(conv1(x))); conv2 reuses conv1's partition. Returns (y, partition)."""

    channels: int
    cluster_num: int = 32
    filter_threshold: float = 0.005
    kmeans_iters: int = 20
    method: str = "auto"

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        partition: jax.Array | None = None,
        kmeans_indices: jax.Array | None = None,
        kmeans_mode: str = "ready",
    ) -> tuple[jax.Array, jax.Array]:
        kw = dict(
            cluster_num=self.cluster_num,
            filter_threshold=self.filter_threshold,
            kmeans_iters=self.kmeans_iters,
            method=self.method,
        )
        r, idx = CANConv(self.channels, name="conv1", **kw)(x, partition, kmeans_indices, kmeans_mode)
        r, _ = CANConv(self.channels, name="conv2", **kw)(_lrelu(r), idx)
        return x + r, idx


class CANNet(nn.Module):
    """CANNet (see the module docstring). ``channels`` 32, ``cluster_num`` 32, ``filter_threshold`` 0.005."""

    bands: int = 8
    channels: int = 32
    cluster_num: int = 32
    filter_threshold: float = 0.005
    kmeans_iters: int = 20
    method: str = "auto"

    @nn.compact
    def __call__(
        self,
        lrms: jax.Array,
        pan: jax.Array,
        lms: jax.Array | None = None,
        train: bool = False,
        kmeans_indices: Mapping[str, jax.Array] | None = None,
        kmeans_mode: str = "ready",
    ) -> jax.Array:
        """lrms (B, h, w, C) (unused), pan (B, H, W, 1), lms (B, H, W, C) -> hrms (B, H, W, C).

        All float32 on [0, 1]; H, W multiples of 4. ``lms`` is required (the network adds it).
        ``kmeans_indices``/``kmeans_mode``: optional cached clusters (see the module docstring).
        """
        if lms is None:
            raise InputError("CANNet needs lms (the upsampled MS)")
        h, w = pan.shape[1], pan.shape[2]
        if h % 4 or w % 4:
            raise InputError(f"CANNet needs PAN sides that are multiples of 4, got {h} x {w}")
        if lms.shape[-1] != self.bands:
            raise InputError(f"CANNet built for {self.bands} bands, got lms with {lms.shape[-1]}")
        ki = dict(kmeans_indices or {})
        c = self.channels
        rb = dict(
            cluster_num=self.cluster_num,
            filter_threshold=self.filter_threshold,
            kmeans_iters=self.kmeans_iters,
            method=self.method,
        )
        dtype = jnp.result_type(pan, lms)
        x1 = Conv2d(c, 3, 1, name="head_conv")(jnp.concatenate([pan, lms], axis=-1).astype(dtype))
        x1, idx1 = CANResBlock(c, name="rb1", **rb)(x1, None, ki.get("rb1"), kmeans_mode)
        x2 = ConvDown(name="down1")(x1)
        x2, idx2 = CANResBlock(2 * c, name="rb2", **rb)(x2, None, ki.get("rb2"), kmeans_mode)
        x3 = ConvDown(name="down2")(x2)
        x3, _ = CANResBlock(4 * c, name="rb3", **rb)(x3, None, ki.get("rb3"), kmeans_mode)
        x4 = ConvUp(name="up1")(x3, x2)
        x4, _ = CANResBlock(2 * c, name="rb4", **rb)(x4, idx2)
        x5 = ConvUp(name="up2")(x4, x1)
        x5, _ = CANResBlock(c, name="rb5", **rb)(x5, idx1)
        return lms + Conv2d(self.bands, 3, 1, name="tail_conv")(x5)


# ---------------------------------------------------------------------------- config and entry


def cannet_config() -> ml_collections.ConfigDict:
    """The published sizes: 8 bands (WV3), 32 channels, K = 32, filter 0.005, 20 k-means iterations."""
    return ml_collections.ConfigDict(
        {
            "name": "cannet",
            "bands": 8,
            "channels": 32,
            "cluster_num": 32,
            "filter_threshold": 0.005,
            "kmeans_iters": 20,
            "method": "auto",
        }
    )


def _build(cfg: ml_collections.ConfigDict) -> CANNet:
    def pos(key: str, default: int) -> int:
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"model config 'cannet': {key} must be a positive integer, got {v!r}")
        return int(v)

    thr = float(cfg.get("filter_threshold", 0.005))
    if not 0.0 <= thr < 1.0:
        raise InputError(f"model config 'cannet': filter_threshold must be in [0, 1), got {thr}")
    method = str(cfg.get("method", "auto"))
    if method not in ("auto", "onehot", "bucket", "factorized"):
        raise InputError(f"model config 'cannet': method must be auto|onehot|bucket|factorized, got {method!r}")
    return CANNet(
        bands=pos("bands", 8),
        channels=pos("channels", 32),
        cluster_num=pos("cluster_num", 32),
        filter_threshold=thr,
        kmeans_iters=pos("kmeans_iters", 20),
        method=method,
    )


CANNET_ENTRY = ModelEntry(
    "cannet", _build, cannet_config, "CANNet (Duan et al. 2024): clustering-based adaptive convs in a U-Net + LMS"
)


CLUSTERING_LAYERS = ("rb1", "rb2", "rb3")
"""The CANNet blocks whose first CANConv runs k-means (the keys of ``kmeans_indices``)."""


def kmeans_indices_from(intermediates: Mapping[str, Any]) -> dict[str, jax.Array]:
    """The raw k-means indices of a forward pass, keyed for ``kmeans_indices`` / ClusterCache.

    Args:
      intermediates: ``state['intermediates']`` of
        ``module.apply(..., mutable=['intermediates'])``.
    Returns:
      ``{"rb1": (B, H*W), "rb2": (B, H*W/4), "rb3": (B, H*W/16)}`` int32 in [0, K) (only the
      layers that clustered in that pass).
    """
    return {
        k: intermediates[k]["conv1"]["kmeans_indices"][0]
        for k in CLUSTERING_LAYERS
        if k in intermediates and "conv1" in intermediates[k]
    }


def count_params(params: Any) -> int:
    """Total number of scalars in a params tree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
