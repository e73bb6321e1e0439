"""Batched, jit-friendly k-means (Lloyd's algorithm with k-means++ seeding) on static shapes.

Used by CANConv (:mod:`pansharp_jax.nn.canconv`) to partition the pixels of every image into
``K`` clusters of similar 3x3 patches. The official CANConv clusters with the authors' fork of
kmcuda: k-means++ seeding (fixed seed 42), L2 metric, Lloyd iterations until fewer than 1 % of
the points change cluster (``tolerance=0.01``), or warm-started from given centres. Here:

* seeding: k-means++ (D^2 sampling, one centre per step, the first uniformly at random) from a
  JAX PRNG key; the key is fixed by the caller (CANConv uses ``key(42)``), so the result is
  deterministic for a given input, but not bit-equal to kmcuda's (another random generator);
* a fixed number of Lloyd iterations (``iters``, default 20) instead of the data-dependent stop:
  XLA needs a static trip count to compile once;
* empty clusters keep their previous centre (kmcuda does the same in practice: a centre with no
  members is not moved);
* every image of the batch is clustered on its own (``jax.vmap`` over the batch axis), as the
  official per-image loop.

All shapes are static: ``features`` (B, P, F) -> ``indices`` (B, P) int32 in [0, K),
``centroids`` (B, K, F). Works under ``jit``/``vmap``; no gradient flows through the
assignment (it is discrete; :func:`kmeans` stops gradients on its input).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["kmeans", "kmeans_single", "kmeanspp_init", "assign", "cluster_means"]


def _sq_dist(x: jax.Array, c: jax.Array) -> jax.Array:
    """Squared L2 distances (P, K) between points x (P, F) and centres c (K, F), >= 0."""
    xx = jnp.sum(x * x, axis=-1, keepdims=True)
    cc = jnp.sum(c * c, axis=-1)[None, :]
    xc = jnp.matmul(x, c.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.maximum(xx - 2.0 * xc + cc, 0.0)


def assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index (P,) int32 of the nearest centre (squared L2; ties -> lowest index).

    Args:
      x: (P, F) points. centroids: (K, F) centres.
    """
    return jnp.argmin(_sq_dist(x, centroids), axis=-1).astype(jnp.int32)


def cluster_means(x: jax.Array, indices: jax.Array, num_clusters: int) -> tuple[jax.Array, jax.Array]:
    """Per-cluster means and sizes of one image.

    Args:
      x: (P, F) points. indices: (P,) int in [0, num_clusters). num_clusters: K (static).

    Returns:
      ``(means (K, F), counts (K,))``; an empty cluster's mean is 0 and its count 0.
    """
    sums = jax.ops.segment_sum(x, indices, num_segments=num_clusters)
    counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), indices, num_segments=num_clusters)
    return sums / jnp.maximum(counts, 1.0)[:, None], counts


def kmeanspp_init(x: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
    """k-means++ seeding of one image: (P, F) points -> (K, F) initial centres.

    The first centre is a uniformly drawn point; each next one is drawn with probability
    proportional to its squared distance to the nearest centre chosen so far (uniformly when
    all distances are 0, e.g. a constant image).
    """
    p = x.shape[0]
    k0, key = jax.random.split(key)
    first = x[jax.random.randint(k0, (), 0, p)]
    centres = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)

    def body(j: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        centres, d2 = carry
        total = jnp.sum(d2)
        logits = jnp.where(total > 0, jnp.log(jnp.maximum(d2, 0.0) + 1e-30), jnp.zeros_like(d2))
        pick = jax.random.categorical(jax.random.fold_in(key, j), logits)
        c = x[pick]
        return centres.at[j].set(c), jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=-1))

    centres, _ = jax.lax.fori_loop(1, num_clusters, body, (centres, d2))
    return centres


def kmeans_single(
    x: jax.Array,
    num_clusters: int,
    key: jax.Array,
    *,
    iters: int = 20,
    init_centroids: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """k-means of one image: (P, F) points -> ``(indices (P,) int32, centroids (K, F))``.

    ``init_centroids`` (K, F) warm-starts Lloyd's iterations (kmcuda's "import" init, used by
    the official training cache in "update" mode); otherwise k-means++ from ``key``.
    ``num_clusters`` larger than P is reduced to P (as the official wrapper does); the
    returned centroids then have P rows.
    """
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    k = min(int(num_clusters), int(x.shape[0]))
    if init_centroids is None:
        centres = kmeanspp_init(x, k, key)
    else:
        centres = jax.lax.stop_gradient(init_centroids[:k].astype(jnp.float32))

    def body(_: jax.Array, centres: jax.Array) -> jax.Array:
        idx = assign(x, centres)
        means, counts = cluster_means(x, idx, k)
        return jnp.where(counts[:, None] > 0, means, centres)

    centres = jax.lax.fori_loop(0, int(iters), body, centres)
    return assign(x, centres), centres


def kmeans(
    features: jax.Array,
    num_clusters: int,
    key: jax.Array | None = None,
    *,
    iters: int = 20,
    init_centroids: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-image k-means of a batch.

    Args:
      features: (B, P, F) float features (any units; L2 metric). No gradient flows back.
      num_clusters: K (static); reduced to P when P < K.
      key: PRNG key for the k-means++ seeding (the same key is used for every image, as
        kmcuda's fixed seed); ``None`` -> ``jax.random.key(42)``.
      iters: number of Lloyd iterations (static).
      init_centroids: optional (B, K, F) warm-start centres (then ``key`` is unused).

    Returns:
      ``(indices (B, P) int32 in [0, min(K, P)), centroids (B, min(K, P), F) float32)``.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (B, P, F), got shape {features.shape}")
    if key is None:
        key = jax.random.key(42)
    if init_centroids is None:
        return jax.vmap(lambda f: kmeans_single(f, num_clusters, key, iters=iters))(features)
    return jax.vmap(lambda f, c: kmeans_single(f, num_clusters, key, iters=iters, init_centroids=c))(
        features, init_centroids
    )
