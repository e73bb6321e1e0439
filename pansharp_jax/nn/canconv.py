"""CANConv: clustering-based, content-adaptive non-local convolution (Duan et al., CVPR 2024).

For an input X (B, H, W, Cin) and a 3x3 kernel (as the official ``CANConv`` layer):

1. **unfold**: the 3x3 zero-padded neighbourhood of every pixel, a vector p of Cin*9 values in
   PyTorch's ``nn.Unfold`` order (channel-major: index ``cin * 9 + ky * 3 + kx``);
2. **cluster** (SRP): per image, k-means (:mod:`pansharp_jax.nn.kmeans`) on a feature of every
   pixel: ``"channel"`` (default; the per-channel mean of p over the 9 positions, Cin values),
   ``"spatial"`` (the per-position mean over channels, 9 values) or ``"pixel"`` (the pixel
   itself) -> indices in [0, K);
3. **small-cluster filter** (``filter_threshold`` > 0): every cluster with at most
   ``int(float32(filter_threshold) * H * W)`` pixels is moved to an extra partition K, whose
   centroid is the mean patch of the whole image (global fallback); K + 1 partitions;
4. **centroids**: the mean unfolded patch (Cin*9) of every partition; an empty partition's is 0.
   Gradients flow through the centroids (unless ``detach_centroid``), not through the indices;
5. **kernel and bias generation** from every centroid c (``kernel_generator``):

   * ``"low_rank"`` (default): h = ReLU(L2(ReLU(L1(c)))) (Cin*9 -> 16 -> 16);
     W(c) = W ⊙ (σ(to_cin h) ⊗ σ(to_area h) ⊗ σ(to_cout h)), W a learned (Cin, 9, Cout) tensor;
   * ``"spatial"``: W(c) = W ⊙ σ(MLP(c)) with a 9-vector (area scaling only);
   * ``"weighted_sum"``: W(c) = Σ_n softmax(MLP(c))_n W_n over ``kernel_count`` kernels
     (the official layer applies ``nn.Softmax()`` without ``dim`` to a 3-D tensor, which
     PyTorch resolves to the batch axis; here the softmax is over the kernels, as intended);

   and ``bias``: ``"cluster"`` (default; b(c) = MLP(c), Cin*9 -> 16 -> 16 -> Cout),
   ``"global_param"`` (one learned vector), ``"global_adaptive"`` (LAGConv-like,
   1x1(ReLU(1x1(mean_HW x)))) or ``"none"``;
6. **partition-wise convolution**: y_p = p_pᵀ W(c_{I_p}) + b(c_{I_p}).

Ablations of the official code: ``cluster_ablation="global"`` (one partition, the image-mean
centroid) and ``"pixelwise"`` (every pixel its own "centroid", i.e. LAGConv-like).

**Static shapes; three implementations of step 6** (``method``), all exact:

* ``"onehot"`` — the dense form Y = Σ_j 1[I = j] (P W_j + b_j): a ``lax.scan`` over the K+1
  partitions, one full (B·P, Cin·9) x (Cin·9, Cout) matmul each; memory O(B·P·Cout), compute
  (K+1) convolutions. Works for every generator.
* ``"bucket"`` — sort and pad: per image the pixels are sorted by partition, every partition is
  padded to a multiple of a tile height T, so the padded length is at most
  P + (K+1)(T-1) (a static bound), the tiles (each inside one partition) are multiplied by
  their partition's kernel in one batched matmul, and the result is gathered back. Compute
  about 1-2 convolutions plus a sort; works for every generator (the official CUDA op does
  the same on variable shapes).
* ``"factorized"`` — uses the structure of the generators instead of per-partition kernels:
  for ``low_rank``, y_p = σ_cout[I_p] ⊙ ((p_p ⊙ (σ_cin[I_p] ⊗ σ_area[I_p])) W) + b[I_p], i.e.
  a per-pixel gather of three small vectors and ONE shared matmul; ``spatial`` likewise;
  ``weighted_sum`` needs ``kernel_count`` shared matmuls. No per-partition kernel is formed.

``method="auto"`` (default) picks ``"factorized"`` for ``low_rank`` and ``spatial`` and
``"bucket"`` for ``weighted_sum``. Why, measured with ``benchmarks/canconv_speed.py`` on a
2-core CPU shared with other jobs (medians; partition fixed, K = 32, filter 0.005):

* CANNet's rb1 layer (32 -> 32, 64 x 64, batch 32): forward factorized 0.71 s, bucket 0.84 s,
  one-hot 1.63 s; forward + backward factorized 1.42 s, bucket 1.09 s, one-hot 5.39 s;
* the whole CANNet (batch 32, 64 x 64): forward factorized 5.2 s vs bucket 6.8-7.6 s; the
  Adam train step 14.3 s (4.5 GiB peak RSS) with factorized, while the bucket train step ran
  out of the machine's 23 GiB: the bucket (and one-hot) forms materialise per-partition kernels
  (B, K+1, Cin*9, Cout) and per-tile copies of them, which for rb3 (128 channels, 1152 x 128
  kernels) is ~0.6-1.2 GB per layer at batch 32, and the backward pass keeps them.

So the factorized form is the default wherever the generator allows it: it is the fastest
forward, its memory is that of a plain unfolded convolution, and it is the only one whose
training step fits comfortably. The bucket form remains the general method (and is slightly
faster per layer in the backward pass when memory is not a concern).

**Cluster indices** can be passed in (``partition``: the final partition, shared across the
CANNet U-Net as the official code shares them; no clustering is then done), taken from a
training cache (``kmeans_indices`` with ``kmeans_mode`` ``"ready"`` = use them as the k-means
result, or ``"update"`` = warm-start k-means from their cluster centres), or computed (fresh
k-means from a fixed key, as the official fixed seed). The raw k-means indices are sown to
the ``'intermediates'`` collection as ``kmeans_indices`` (B, P) so that a trainer can cache
them (:class:`ClusterCache`).

Precision: the matmuls use JAX's default precision (exact float32 on CPU); on GPUs defaulting
to TF32 wrap calls in ``jax.default_matmul_precision("highest")`` for ~1e-6 agreement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.nn.kmeans import cluster_means, kmeans

__all__ = [
    "CANConv",
    "ClusterCache",
    "cache_mode_for_epoch",
    "centroids_of",
    "conv_by_partition",
    "filter_small_clusters",
    "filter_threshold_count",
    "unfold3x3",
]

METHODS = ("auto", "onehot", "bucket", "factorized")


# ---------------------------------------------------------------------------- building blocks


def unfold3x3(x: jax.Array, k: int = 3) -> jax.Array:
    """``torch.nn.functional.unfold`` (k x k, stride 1, zero padding (k-1)/2) on NHWC.

    Args:
      x: (B, H, W, C) any float.
    Returns:
      (B, H, W, C * k * k), channel-major (index ``c * k*k + ky * k + kx``), as PyTorch.
    """
    p = (k - 1) // 2
    h, w = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = jnp.stack([xp[:, i : i + h, j : j + w, :] for i in range(k) for j in range(k)], axis=-1)
    return cols.reshape(*x.shape[:3], x.shape[3] * k * k)


def filter_threshold_count(ratio: float, num_pixels: int) -> int:
    """The official small-cluster size limit ``static_cast<int>(float(ratio) * P)``: clusters
    with at most this many pixels go to the global partition (float32 product, truncated)."""
    return int(np.float32(ratio) * np.float32(num_pixels))


def filter_small_clusters(indices: jax.Array, num_clusters: int, threshold_ratio: float) -> jax.Array:
    """Move the pixels of every small cluster to the extra partition ``num_clusters``.

    Args:
      indices: (B, P) int k-means indices in [0, num_clusters).
      num_clusters: K (static).
      threshold_ratio: fraction of P (the official ``filter_threshold``, e.g. 0.005); a cluster
        with ``count <= int(ratio * P)`` pixels is filtered.
    Returns:
      (B, P) int32 in [0, K]; K is the global-fallback partition.
    """
    limit = filter_threshold_count(threshold_ratio, indices.shape[1])
    counts = jax.vmap(lambda i: jnp.bincount(i, length=num_clusters + 1))(indices)
    small = jnp.take_along_axis(counts, indices, axis=1) <= limit
    return jnp.where(small, num_clusters, indices).astype(jnp.int32)


def centroids_of(patches: jax.Array, partition: jax.Array, num_partitions: int, global_last: bool) -> jax.Array:
    """Mean patch of every partition (differentiable in ``patches``).

    Args:
      patches: (B, P, F) unfolded patches. partition: (B, P) int in [0, num_partitions).
      num_partitions: static count. global_last: replace the last centroid by the mean of all
        patches (the official global fallback of the small-cluster filter).
    Returns:
      (B, num_partitions, F); empty partitions get 0 (as the official scatter mean).
    """
    cents = jax.vmap(lambda p, i: cluster_means(p, i, num_partitions)[0])(patches, partition)
    if global_last:
        cents = cents.at[:, num_partitions - 1].set(jnp.mean(patches, axis=1))
    return cents


def _onehot_conv(patches: jax.Array, partition: jax.Array, kernels: jax.Array, bias: jax.Array | None) -> jax.Array:
    """Dense form: scan over partitions, y += 1[I = j] (P W_j + b_j). (B,P,F),(B,P),(B,K,F,O)."""
    b, p, _ = patches.shape
    cout = kernels.shape[-1]

    def body(y: jax.Array, j_w_b: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        j, w, bj = j_w_b  # w (B, F, O), bj (B, O)
        z = jnp.einsum("bpf,bfo->bpo", patches, w) + bj[:, None, :]
        return y + jnp.where((partition == j)[..., None], z, 0.0), None

    kp = kernels.shape[1]
    bias_ = bias if bias is not None else jnp.zeros((b, kp, cout), patches.dtype)
    y0 = jnp.zeros((b, p, cout), jnp.result_type(patches, kernels))
    y, _ = jax.lax.scan(body, y0, (jnp.arange(kp), jnp.moveaxis(kernels, 1, 0), jnp.moveaxis(bias_, 1, 0)))
    return y


def bucket_tile(num_pixels: int, num_partitions: int) -> int:
    """Default tile height of the bucket method: a power of two in [8, 256] near P / (2(K+1))
    (padding then adds at most ~50 % rows)."""
    t = max(num_pixels // (2 * num_partitions), 1)
    return int(min(256, max(8, 2 ** int(math.floor(math.log2(t))))))


def _bucket_conv_single(
    x: jax.Array, idx: jax.Array, kernels: jax.Array, bias: jax.Array | None, tile: int
) -> jax.Array:
    """Sort-and-bucket partition-wise matmul of one image: (P,F),(P,),(K,F,O),(K,O) -> (P,O)."""
    p, f = x.shape
    kp = kernels.shape[0]
    n_tiles = -(-(p + kp * (tile - 1)) // tile)  # static bound on the padded length / tile
    counts = jnp.bincount(idx, length=kp)
    padded = (counts + tile - 1) // tile * tile
    start_pad = jnp.cumsum(padded) - padded  # exclusive
    start = jnp.cumsum(counts) - counts
    order = jnp.argsort(idx, stable=True)
    sorted_idx = idx[order]
    dest_sorted = start_pad[sorted_idx] + (jnp.arange(p) - start[sorted_idx])
    dest = jnp.zeros((p,), jnp.int32).at[order].set(dest_sorted.astype(jnp.int32))  # per pixel
    buf = jnp.zeros((n_tiles * tile, f), x.dtype).at[dest].set(x, unique_indices=True)
    ends = jnp.cumsum(padded)
    tile_part = jnp.minimum(jnp.searchsorted(ends, jnp.arange(n_tiles) * tile, side="right"), kp - 1)
    y = jnp.einsum("ntf,nfo->nto", buf.reshape(n_tiles, tile, f), kernels[tile_part])
    if bias is not None:
        y = y + bias[tile_part][:, None, :]
    return y.reshape(n_tiles * tile, -1)[dest]


def conv_by_partition(
    patches: jax.Array,
    partition: jax.Array,
    kernels: jax.Array,
    bias: jax.Array | None = None,
    *,
    method: str = "bucket",
    tile: int = 0,
) -> jax.Array:
    """Partition-wise matmul y_p = p_pᵀ W_{I_p} + b_{I_p} with explicit per-partition kernels.

    Args:
      patches: (B, P, F) unfolded patches (F = Cin*9). partition: (B, P) int in [0, K').
      kernels: (B, K', F, Cout) per-image, per-partition kernels. bias: (B, K', Cout) or None.
      method: ``"onehot"`` (masked dense scan) or ``"bucket"`` (sort + padded tiles).
      tile: bucket tile height (0 -> :func:`bucket_tile`).
    Returns:
      (B, P, Cout).
    """
    if method == "onehot":
        return _onehot_conv(patches, partition, kernels, bias)
    if method != "bucket":
        raise ValueError(f"conv_by_partition: method must be 'onehot' or 'bucket', got {method!r}")
    t = int(tile) or bucket_tile(patches.shape[1], kernels.shape[1])
    if bias is None:
        return jax.vmap(lambda x, i, w: _bucket_conv_single(x, i, w, None, t))(patches, partition, kernels)
    return jax.vmap(lambda x, i, w, b: _bucket_conv_single(x, i, w, b, t))(patches, partition, kernels, bias)


def _gather(a: jax.Array, partition: jax.Array) -> jax.Array:
    """(B, K', D) per-partition rows -> (B, P, D) per-pixel rows."""
    return jnp.take_along_axis(a, partition[..., None], axis=1)


# ---------------------------------------------------------------------------- initialisers


def _torch_uniform(fan_in: int) -> Any:
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)

    return init


def _kaiming_normal_torch(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """``nn.init.kaiming_normal_(t, nonlinearity='relu')``: std sqrt(2 / fan_in), PyTorch's
    fan_in = shape[1] * prod(shape[2:]) (for the (Cin, 9, Cout) kernels: 9 * Cout)."""
    fan_in = int(shape[1]) * int(np.prod(shape[2:]))
    return jax.random.normal(key, tuple(shape), dtype) * math.sqrt(2.0 / fan_in)


def _dense(features: int, fan_in: int, name: str) -> nn.Dense:
    """``torch.nn.Linear`` (default init); kernel (in, out) = PyTorch weight transposed."""
    return nn.Dense(features, kernel_init=_torch_uniform(fan_in), bias_init=_torch_uniform(fan_in), name=name)


# ---------------------------------------------------------------------------- the layer


class CANConv(nn.Module):
    """The CANConv layer on NHWC (see the module docstring); parameter names mirror PyTorch's.

    Call: ``y, partition = CANConv(...)(x, partition=None, kmeans_indices=None,
    kmeans_mode="ready")`` with x (B, H, W, Cin) float; y (B, H, W, Cout); partition (B, H*W)
    int32 in [0, K] (K = the global partition when ``filter_threshold`` > 0).

    Attributes:
      features: Cout. cluster_num: K (32). kernel_size: 3 (odd). mlp_inner_dims: 16.
      bias: "cluster" | "global_param" | "global_adaptive" | "none".
      detach_centroid: stop gradients through the centroids.
      cluster_source: "channel" | "spatial" | "pixel".
      kernel_generator: "low_rank" | "spatial" | "weighted_sum". kernel_count: 8 (weighted_sum).
      cluster_ablation: "none" | "global" | "pixelwise".
      filter_threshold: small-cluster fraction (0 = off; CANNet uses 0.005).
      kmeans_iters: Lloyd iterations. kmeans_seed: k-means++ seed (kmcuda's is 42).
      method: "auto" | "onehot" | "bucket" | "factorized". tile: bucket tile (0 = automatic).
    """

    features: int
    cluster_num: int = 32
    kernel_size: int = 3
    mlp_inner_dims: int = 16
    bias: str = "cluster"
    detach_centroid: bool = False
    cluster_source: str = "channel"
    kernel_generator: str = "low_rank"
    kernel_count: int = 8
    cluster_ablation: str = "none"
    filter_threshold: float = 0.0
    kmeans_iters: int = 20
    kmeans_seed: int = 42
    method: str = "auto"
    tile: int = 0

    # -- generator ---------------------------------------------------------------------

    def _check(self) -> None:
        if self.kernel_generator not in ("low_rank", "spatial", "weighted_sum"):
            raise ValueError("kernel_generator must be either 'spatial' or 'weighted_sum' or 'low_rank'")
        if self.bias not in ("cluster", "global_param", "global_adaptive", "none"):
            raise ValueError(f"bias must be cluster|global_param|global_adaptive|none, got {self.bias!r}")
        if self.cluster_source not in ("channel", "spatial", "pixel"):
            raise ValueError("cluster_source must be either 'channel', 'spatial', or 'pixel'")
        if self.cluster_ablation not in ("none", "global", "pixelwise"):
            raise ValueError(f"cluster_ablation must be none|global|pixelwise, got {self.cluster_ablation!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    def _factors(self, c: jax.Array, cin: int) -> dict[str, jax.Array]:
        """Generator outputs for centroids c (..., F): the small factors of W(c)."""
        area, cout, hid, f = self.kernel_size**2, self.features, self.mlp_inner_dims, cin * self.kernel_size**2
        if self.kernel_generator == "low_rank":
            h = nn.relu(_dense(hid, f, "kernel_head_0")(c))
            h = nn.relu(_dense(hid, hid, "kernel_head_2")(h))
            return {
                "cin": jax.nn.sigmoid(_dense(cin, hid, "to_cin")(h)),
                "area": jax.nn.sigmoid(_dense(area, hid, "to_area")(h)),
                "cout": jax.nn.sigmoid(_dense(cout, hid, "to_cout")(h)),
            }
        n_out = area if self.kernel_generator == "spatial" else self.kernel_count
        h = nn.relu(_dense(hid, f, "centroid_to_kernel_0")(c))
        h = nn.relu(_dense(hid, hid, "centroid_to_kernel_2")(h))
        h = _dense(n_out, hid, "centroid_to_kernel_4")(h)
        if self.kernel_generator == "spatial":
            return {"area": jax.nn.sigmoid(h)}
        return {"mix": jax.nn.softmax(h, axis=-1)}

    def _shared_kernels(self, cin: int) -> jax.Array:
        area, cout = self.kernel_size**2, self.features
        if self.kernel_generator == "weighted_sum":
            return self.param("kernels", _kaiming_normal_torch, (self.kernel_count, cin * area, cout))
        return self.param("kernels", _kaiming_normal_torch, (cin, area, cout))

    def _dense_kernels(self, fac: dict[str, jax.Array], w: jax.Array) -> jax.Array:
        """Per-partition kernels (B, K', F, Cout) from factors (B, K', ...)."""
        if self.kernel_generator == "weighted_sum":
            return jnp.einsum("bkn,nfo->bkfo", fac["mix"], w)
        cin, area, cout = w.shape
        scale = fac["area"][:, :, None, :, None]
        if self.kernel_generator == "low_rank":
            scale = scale * fac["cin"][:, :, :, None, None] * fac["cout"][:, :, None, None, :]
        kern = scale * w[None, None]
        return kern.reshape(*kern.shape[:2], cin * area, cout)

    def _factorized(self, patches: jax.Array, fac_px: dict[str, jax.Array], w: jax.Array) -> jax.Array:
        """y (B, P, Cout) from per-pixel factors (B, P, ...) with shared matmul(s) only."""
        b, p, f = patches.shape
        if self.kernel_generator == "weighted_sum":
            z = jnp.einsum("bpf,nfo->bpno", patches, w)
            return jnp.einsum("bpno,bpn->bpo", z, fac_px["mix"])
        cin, area, cout = w.shape
        x = patches.reshape(b, p, cin, area) * fac_px["area"][:, :, None, :]
        if self.kernel_generator == "low_rank":
            x = x * fac_px["cin"][:, :, :, None]
        y = jnp.einsum("bpf,fo->bpo", x.reshape(b, p, f), w.reshape(f, cout))
        if self.kernel_generator == "low_rank":
            y = y * fac_px["cout"]
        return y

    def _bias(self, c: jax.Array, x: jax.Array) -> jax.Array | None:
        """Per-partition bias (B, K', Cout), a global one (B, 1, Cout) / (Cout,), or None."""
        cout, hid, f = self.features, self.mlp_inner_dims, c.shape[-1]
        if self.bias == "cluster":
            h = nn.relu(_dense(hid, f, "centroid_to_bias_0")(c))
            h = nn.relu(_dense(hid, hid, "centroid_to_bias_2")(h))
            return _dense(cout, hid, "centroid_to_bias_4")(h)
        if self.bias == "global_param":
            return self.param("bias", lambda k, s: jax.random.normal(k, s), (cout,))
        if self.bias == "global_adaptive":
            cin = x.shape[-1]
            g = jnp.mean(x, axis=(1, 2))  # (B, Cin)
            g = nn.relu(_dense(cout, cin, "global_bias_1")(g))
            return _dense(cout, cout, "global_bias_3")(g)[:, None, :]
        return None

    # -- forward -----------------------------------------------------------------------

    def _cluster_features(self, x: jax.Array, patches: jax.Array) -> jax.Array:
        b, h, w, cin = x.shape
        area = self.kernel_size**2
        if self.cluster_source == "channel":
            return patches.reshape(b, h * w, cin, area).mean(axis=-1)
        if self.cluster_source == "spatial":
            return patches.reshape(b, h * w, cin, area).mean(axis=-2)
        return x.reshape(b, h * w, cin)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        partition: jax.Array | None = None,
        kmeans_indices: jax.Array | None = None,
        kmeans_mode: str = "ready",
    ) -> tuple[jax.Array, jax.Array]:
        """Apply the layer.

        Args:
          x: (B, H, W, Cin) float features.
          partition: optional (B, H*W) or (B, H, W) int final partition (as the official
            ``cluster_override``): no clustering, no filtering.
          kmeans_indices: optional (B, H*W) or (B, H, W) int raw k-means indices in [0, K)
            from a training cache: ``kmeans_mode="ready"`` uses them as the k-means result,
            ``"update"`` warm-starts k-means from their cluster centres.
        Returns:
          ``(y (B, H, W, Cout), partition (B, H*W) int32)``.
        """
        self._check()
        b, h, w, cin = x.shape
        p, area, cout = h * w, self.kernel_size**2, self.features
        patches = unfold3x3(x, self.kernel_size).reshape(b, p, cin * area)
        wk = self._shared_kernels(cin)
        method = self.method
        if method == "auto":
            method = "bucket" if self.kernel_generator == "weighted_sum" else "factorized"

        if self.cluster_ablation in ("global", "pixelwise"):
            if self.cluster_ablation == "global":
                cents = jnp.mean(patches, axis=1, keepdims=True)
                part = jnp.zeros((b, p), jnp.int32)
            else:
                cents, part = patches, jnp.broadcast_to(jnp.arange(p, dtype=jnp.int32), (b, p))
            if self.detach_centroid:
                cents = jax.lax.stop_gradient(cents)
            fac = self._factors(cents, cin)
            if self.cluster_ablation == "global":
                fac = {k: _gather(v, part) for k, v in fac.items()}
            y = self._factorized(patches, fac, wk)
            bias = self._bias(cents, x)
            if bias is not None:
                y = y + (bias if bias.ndim == 1 or bias.shape[1] in (1, p) else _gather(bias, part))
            return y.reshape(b, h, w, cout), part

        filt = self.filter_threshold > 0
        kp = self.cluster_num + 1 if filt else self.cluster_num
        if partition is not None:
            part = partition.reshape(b, p).astype(jnp.int32)
        else:
            feats = self._cluster_features(x, patches)
            key = jax.random.key(self.kmeans_seed)
            if kmeans_indices is not None and kmeans_mode == "ready":
                raw = kmeans_indices.reshape(b, p).astype(jnp.int32)
            elif kmeans_indices is not None and kmeans_mode == "update":
                k_eff = min(self.cluster_num, p)
                prev = kmeans_indices.reshape(b, p).astype(jnp.int32)
                init = jax.vmap(lambda f, i: cluster_means(f, i, k_eff)[0])(jax.lax.stop_gradient(feats), prev)
                raw, _ = kmeans(feats, self.cluster_num, key, iters=self.kmeans_iters, init_centroids=init)
            elif kmeans_indices is not None:
                raise ValueError(f"kmeans_mode must be 'ready' or 'update', got {kmeans_mode!r}")
            else:
                raw, _ = kmeans(feats, self.cluster_num, key, iters=self.kmeans_iters)
            self.sow("intermediates", "kmeans_indices", raw)
            part = filter_small_clusters(raw, self.cluster_num, self.filter_threshold) if filt else raw

        cents = centroids_of(patches, part, kp, global_last=filt)
        if self.detach_centroid:
            cents = jax.lax.stop_gradient(cents)
        fac = self._factors(cents, cin)
        bias = self._bias(cents, x)
        cluster_bias = self.bias == "cluster"
        if method == "factorized":
            y = self._factorized(patches, {k: _gather(v, part) for k, v in fac.items()}, wk)
            if cluster_bias:
                y = y + _gather(bias, part)  # type: ignore[arg-type]
        else:
            kern = self._dense_kernels(fac, wk)
            y = conv_by_partition(patches, part, kern, bias if cluster_bias else None, method=method, tile=self.tile)
        if not cluster_bias and bias is not None:
            y = y + bias
        return y.reshape(b, h, w, cout), part


# ---------------------------------------------------------------------------- training cache


def cache_mode_for_epoch(epoch: int, policy: int | Sequence[Any]) -> str:
    """The official ``KMeansCacheScheduler`` mode for a 1-based ``epoch``.

    Epoch 1 -> ``"init"`` (k-means from scratch, stored). Later: ``"update"`` (k-means
    warm-started from the stored assignment's centres, stored) when the epoch hits the
    policy's period, else ``"ready"`` (stored indices reused). ``policy`` is an int period or
    a list of ``[last_epoch, period]`` pairs ending with an int period, e.g. the default
    ``[[10, 1], [100, 10], [300, 20], 50]``: every epoch up to 10, every 10th up to 100,
    every 20th up to 300, then every 50th.
    """
    if epoch < 1:
        raise ValueError(f"epoch is 1-based, got {epoch}")
    if epoch == 1:
        return "init"
    if isinstance(policy, int):
        return "update" if epoch % policy == 0 else "ready"
    for item in policy:
        if isinstance(item, int):
            return "update" if epoch % item == 0 else "ready"
        last, period = int(item[0]), int(item[1])
        if epoch > last:
            continue
        return "update" if epoch % period == 0 else "ready"
    return "ready"  # a policy without a final int period: past its last range, reuse


class ClusterCache:
    """Host-side store of the raw k-means indices per training sample and clustering layer.

    Keys: the dataset sample index (int) and the layer name (``"rb1"``, ``"rb2"``, ``"rb3"``
    for CANNet: the three layers that run k-means). Values: (P,) small ints (uint8 while
    K < 256). ``mode(epoch)`` gives the schedule's mode; ``get``/``put`` move batches.
    ``state_dict()`` / ``load_state_dict()`` give plain NumPy arrays and ints, to be saved
    with a checkpoint so that a resumed run reuses the same clusters.
    """

    def __init__(self, policy: int | Sequence[Any] = ((10, 1), (100, 10), (300, 20), 50)) -> None:
        self.policy: Any = policy if isinstance(policy, int) else [p if isinstance(p, int) else list(p) for p in policy]
        self._store: dict[str, dict[int, np.ndarray]] = {}

    def mode(self, epoch: int) -> str:
        """``"init"``, ``"update"`` or ``"ready"`` for a 1-based epoch (see :func:`cache_mode_for_epoch`)."""
        return cache_mode_for_epoch(epoch, self.policy)

    def __len__(self) -> int:
        return max((len(v) for v in self._store.values()), default=0)

    def has(self, sample_ids: Iterable[int]) -> bool:
        """True when every layer holds every one of ``sample_ids`` (and some layer exists)."""
        ids = [int(i) for i in sample_ids]
        return bool(self._store) and all(all(i in d for i in ids) for d in self._store.values())

    def put(self, sample_ids: Iterable[int], indices: Mapping[str, Any]) -> None:
        """Store a batch: ``indices[layer]`` (B, P) or (B, H, W) ints for ``sample_ids`` (B,)."""
        ids = [int(i) for i in sample_ids]
        for layer, arr in indices.items():
            a = np.asarray(arr)
            a = a.reshape(a.shape[0], -1)
            if a.shape[0] != len(ids):
                raise ValueError(f"layer {layer}: {a.shape[0]} rows for {len(ids)} sample ids")
            dtype = np.uint8 if a.size == 0 or a.max() < 256 else np.int32
            d = self._store.setdefault(str(layer), {})
            for i, row in zip(ids, a, strict=True):
                d[i] = row.astype(dtype)

    def get(self, sample_ids: Iterable[int]) -> dict[str, np.ndarray]:
        """``{layer: (B, P) int32}`` for ``sample_ids``; KeyError when one is missing."""
        ids = [int(i) for i in sample_ids]
        return {layer: np.stack([d[i] for i in ids]).astype(np.int32) for layer, d in self._store.items()}

    def state_dict(self) -> dict[str, Any]:
        """Plain arrays: ``{"policy": ..., "layers": {layer: {"ids": (N,), "indices": (N, P)}}}``."""
        layers = {}
        for layer, d in self._store.items():
            ids = np.asarray(sorted(d), np.int64)
            rows = np.stack([d[int(i)] for i in ids]) if len(ids) else np.zeros((0, 0), np.uint8)
            layers[layer] = {"ids": ids, "indices": rows}
        return {"policy": self.policy, "layers": layers}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (replaces the current content)."""
        self.policy = state["policy"]
        self._store = {}
        for layer, entry in state["layers"].items():
            ids, idx = np.asarray(entry["ids"]), np.asarray(entry["indices"])
            self._store[str(layer)] = {int(i): idx[n].copy() for n, i in enumerate(ids)}
