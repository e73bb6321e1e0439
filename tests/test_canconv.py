"""CANConv operator and k-means: equal to plain NumPy references; gradients; static shapes; cache.

* the layer (every kernel generator, bias mode and partition-wise method) equals a per-pixel
  NumPy loop over the official recipe (unfold, filter, centroids, generator, conv) to 1e-5;
* k-means equals a NumPy Lloyd loop from the same start, and recovers separated blobs;
* gradients (partition held fixed) pass ``jax.test_util.check_grads``;
* the layer lowers for abstract inputs (no value-dependent shapes) and the bucket method is
  exact in the extreme cases (one partition, all partitions equal size);
* the cluster cache schedule equals the official one and its state round-trips.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pansharp_jax.nn.canconv import (
    CANConv,
    ClusterCache,
    cache_mode_for_epoch,
    conv_by_partition,
    filter_small_clusters,
    filter_threshold_count,
)
from pansharp_jax.nn.kmeans import kmeans

KEY = functools.partial(jax.random.key, impl="unsafe_rbg")


def _compile(fn, *args):
    lowered = jax.jit(fn).lower(*args)
    try:
        return lowered.compile({"xla_backend_optimization_level": 0})
    except Exception:
        return lowered.compile()


# ---------------------------------------------------------------------------- NumPy reference


def _np_unfold(x: np.ndarray) -> np.ndarray:
    """(B, H, W, C) -> (B, H*W, C*9), index c*9 + ky*3 + kx, zero padding: written as loops."""
    b, h, w, c = x.shape
    out = np.zeros((b, h * w, c * 9))
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    for ky in range(3):
                        for kx in range(3):
                            yy, xx = i + ky - 1, j + kx - 1
                            if 0 <= yy < h and 0 <= xx < w:
                                out[n, i * w + j, ch * 9 + ky * 3 + kx] = x[n, yy, xx, ch]
    return out


def _lin(p, v):
    return v @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _relu(v):
    return np.maximum(v, 0)


def _sig(v):
    return 1 / (1 + np.exp(-v))


def _np_kernel_and_bias(params, c, gen, bias_mode, x_img):
    """Kernel (F, Cout) and bias (Cout,) that the official generator makes from centroid c (F,)."""
    w = np.asarray(params["kernels"], np.float64)
    if gen == "low_rank":
        h = _relu(_lin(params["kernel_head_2"], _relu(_lin(params["kernel_head_0"], c))))
        a_cin, a_area, a_cout = (_sig(_lin(params[n], h)) for n in ("to_cin", "to_area", "to_cout"))
        k = w * a_cin[:, None, None] * a_area[None, :, None] * a_cout[None, None, :]
        k = k.reshape(-1, w.shape[-1])
    else:
        h = _relu(_lin(params["centroid_to_kernel_2"], _relu(_lin(params["centroid_to_kernel_0"], c))))
        h = _lin(params["centroid_to_kernel_4"], h)
        if gen == "spatial":
            k = (w * _sig(h)[None, :, None]).reshape(-1, w.shape[-1])
        else:
            e = np.exp(h - h.max())
            k = np.tensordot(e / e.sum(), w, axes=1)
    if bias_mode == "cluster":
        hb = _relu(_lin(params["centroid_to_bias_2"], _relu(_lin(params["centroid_to_bias_0"], c))))
        b = _lin(params["centroid_to_bias_4"], hb)
    elif bias_mode == "global_param":
        b = np.asarray(params["bias"], np.float64)
    elif bias_mode == "global_adaptive":
        g = x_img.reshape(-1, x_img.shape[-1]).mean(0)
        b = _lin(params["global_bias_3"], _relu(_lin(params["global_bias_1"], g)))
    else:
        b = np.zeros(k.shape[1])
    return k, b


def _np_canconv(params, x, raw_idx, K, thr, gen, bias_mode):
    """Per image: filter raw k-means indices, centroids, then a per-pixel loop over clusters."""
    x = np.asarray(x, np.float64)
    bsz, h, w, _ = x.shape
    patches = _np_unfold(x)
    p = h * w
    filt = thr > 0
    nparts = K + 1 if filt else K
    out, parts = [], []
    for n in range(bsz):
        idx = np.asarray(raw_idx[n]).copy()
        if filt:
            limit = int(np.float32(thr) * np.float32(p))
            sizes = np.bincount(idx, minlength=K)
            idx = np.where(sizes[idx] <= limit, K, idx)
        y = np.zeros((p, params["kernels"].shape[-1]))
        for j in range(nparts):
            members = np.nonzero(idx == j)[0]
            if filt and j == K:
                c = patches[n].mean(0)
            else:
                c = patches[n, members].mean(0) if len(members) else np.zeros(patches.shape[2])
            k, b = _np_kernel_and_bias(params, c, gen, bias_mode, x[n])
            for q in members:
                y[q] = patches[n, q] @ k + b
        out.append(y.reshape(h, w, -1))
        parts.append(idx)
    return np.stack(out), np.stack(parts)


CASES = [
    ("low_rank", "cluster", "factorized"),
    ("low_rank", "cluster", "bucket"),
    ("low_rank", "cluster", "onehot"),
    ("spatial", "global_param", "factorized"),
    ("spatial", "none", "bucket"),
    ("weighted_sum", "global_adaptive", "onehot"),
    ("weighted_sum", "cluster", "auto"),
]


@pytest.mark.parametrize("gen,bias,method", CASES, ids=["-".join(c) for c in CASES])
def test_canconv_equals_numpy_reference(gen: str, bias: str, method: str) -> None:
    K, thr = 6, 0.05  # 8 x 8 = 64 pixels: clusters of <= 3 pixels are filtered
    layer = CANConv(5, cluster_num=K, kernel_generator=gen, bias=bias, filter_threshold=thr, method=method, kernel_count=3)
    x = jax.random.normal(KEY(1), (2, 8, 8, 3))
    # Two well-separated groups plus noise, so that clusters of many sizes appear.
    x = x + 3.0 * (jnp.arange(8)[None, :, None, None] > 4)
    params = layer.init(KEY(0), x)["params"]
    (y, part), state = _compile(lambda p, a: layer.apply({"params": p}, a, mutable=["intermediates"]), params, x)(params, x)
    raw = state["intermediates"]["kmeans_indices"][0]
    ref, ref_part = _np_canconv(params, x, raw, K, thr, gen, bias)
    np.testing.assert_array_equal(np.asarray(part), ref_part)
    assert np.asarray(raw).max() < K
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-5, rtol=1e-5)


def test_methods_agree_and_ablation_modes_run() -> None:
    x = jax.random.normal(KEY(2), (1, 6, 6, 4))
    part = jax.random.randint(KEY(3), (1, 36), 0, 5)
    base = CANConv(3, cluster_num=4, filter_threshold=0.05)
    params = jax.jit(base.init)(KEY(0), x, part)["params"]  # the same params for every method
    outs = []
    for method in ("factorized", "bucket", "onehot"):
        layer = CANConv(3, cluster_num=4, filter_threshold=0.05, method=method)
        outs.append(np.asarray(jax.jit(lambda p, a, q, layer=layer: layer.apply({"params": p}, a, q)[0])(params, x, part)))
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    np.testing.assert_allclose(outs[2], outs[0], atol=1e-5)
    # "global": one partition whose centroid is the image mean == every pixel forced into K
    glob = CANConv(3, cluster_num=4, filter_threshold=0.05, cluster_ablation="global")
    forced = jnp.full((1, 36), 4)
    np.testing.assert_allclose(
        np.asarray(jax.jit(lambda p, a: glob.apply({"params": p}, a)[0])(params, x)),
        np.asarray(jax.jit(lambda p, a: base.apply({"params": p}, a, forced)[0])(params, x)),
        atol=1e-5,
    )
    pix = CANConv(3, cluster_num=4, cluster_ablation="pixelwise")
    y, p = jax.jit(lambda p, a: pix.apply({"params": p}, a))(params, x)
    assert y.shape == (1, 6, 6, 3) and p.shape == (1, 36) and int(p[0, -1]) == 35


# ---------------------------------------------------------------------------- k-means


def _np_lloyd(x, c, iters):
    x, c = np.asarray(x, np.float64), np.asarray(c, np.float64).copy()
    for _ in range(iters):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        a = d.argmin(1)
        for j in range(len(c)):
            if np.any(a == j):
                c[j] = x[a == j].mean(0)
    return ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1), c


def test_kmeans_equals_numpy_lloyd_from_the_same_start() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 200, 4)).astype(np.float32) + rng.integers(0, 3, (3, 200, 1)) * 2.0
    init = feats[:, :5].copy()
    init[:, 4] = 100.0  # a centre far away: stays empty, must keep its place
    idx, cents = kmeans(jnp.asarray(feats), 5, iters=7, init_centroids=jnp.asarray(init))
    for n in range(3):
        ref_idx, ref_c = _np_lloyd(feats[n], init[n], 7)
        np.testing.assert_array_equal(np.asarray(idx[n]), ref_idx)
        np.testing.assert_allclose(np.asarray(cents[n]), ref_c, atol=1e-4)
        assert np.all(np.asarray(cents[n, 4]) == 100.0)


def test_kmeanspp_recovers_separated_blobs_per_image() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (2, 300))
    centres = rng.normal(size=(2, 4, 3)) * 20
    feats = np.take_along_axis(centres, labels[..., None], axis=1) + 0.1 * rng.normal(size=(2, 300, 3))
    idx, _ = jax.jit(lambda f: kmeans(f, 4, iters=10))(jnp.asarray(feats, jnp.float32))
    for n in range(2):  # same partition up to a relabelling
        pairs = set(zip(labels[n].tolist(), np.asarray(idx[n]).tolist(), strict=True))
        assert len(pairs) == 4
    # fewer points than clusters: K is reduced to P, as the official wrapper does
    small, c = kmeans(jnp.asarray(feats[:, :3], jnp.float32), 8)
    assert c.shape == (2, 3, 3) and int(small.max()) < 3


def test_filter_small_clusters_matches_the_official_rule() -> None:
    assert filter_threshold_count(0.005, 4096) == 20 and filter_threshold_count(0.005, 256) == 1
    idx = np.array([[0] * 30 + [1] * 20 + [2] * 21 + [3] * 4025])
    got = np.asarray(filter_small_clusters(jnp.asarray(idx), 4, 0.005))
    want = np.where(np.isin(idx, [1]), 4, idx)  # 20 <= 20 filtered; 21 kept
    np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------------- gradients, shapes


def test_gradients_with_fixed_partition() -> None:
    layer = CANConv(2, cluster_num=3, filter_threshold=0.1)
    x = jax.random.normal(KEY(4), (1, 4, 4, 2))
    part = jnp.asarray([[0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2, 3, 3, 0, 1, 2]])
    params = jax.jit(layer.init)(KEY(0), x, part)["params"]
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(x, jnp.float64)

        f = jax.jit(lambda p, a: layer.apply({"params": p}, a, part)[0])

        check_grads(f, (p64, x64), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
    g = jax.jit(jax.grad(lambda a: jnp.sum(layer.apply({"params": params}, a)[0] ** 2)))(x)  # k-means inside
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).max()) > 0


def test_static_shapes_under_jit_and_bucket_extremes() -> None:
    layer = CANConv(4, cluster_num=8, filter_threshold=0.005)
    spec = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.float32)
    params = jax.eval_shape(layer.init, KEY(0), spec)["params"]
    lowered = jax.jit(lambda p, a: layer.apply({"params": p}, a)).lower(params, spec)  # abstract: no data
    out = lowered.out_info
    assert out[0].shape == (2, 16, 16, 4) and out[1].shape == (2, 256) and out[1].dtype == jnp.int32
    rng = np.random.default_rng(2)
    bucket = jax.jit(functools.partial(conv_by_partition, method="bucket"), static_argnames="tile")
    patches = jnp.asarray(rng.normal(size=(2, 40, 6)), jnp.float32)
    kern = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
    for part in (np.zeros((2, 40), int), np.repeat(np.arange(5), 8)[None].repeat(2, 0), rng.integers(0, 5, (2, 40))):
        want = np.einsum("bpf,bpfo->bpo", patches, np.asarray(kern)[np.arange(2)[:, None], part])
        want = want + np.asarray(bias)[np.arange(2)[:, None], part]
        for tile in (0, 3, 64):
            got = bucket(patches, jnp.asarray(part), kern, bias, tile=tile)
            np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


# ---------------------------------------------------------------------------- cache


def test_cache_schedule_equals_the_official_policy() -> None:
    policy = [[10, 1], [100, 10], [300, 20], 50]
    modes = {e: cache_mode_for_epoch(e, policy) for e in range(1, 501)}
    assert modes[1] == "init"
    assert all(modes[e] == "update" for e in range(2, 11))
    assert [e for e in range(11, 101) if modes[e] == "update"] == list(range(20, 101, 10))
    assert [e for e in range(101, 301) if modes[e] == "update"] == list(range(120, 301, 20))
    assert [e for e in range(301, 501) if modes[e] == "update"] == [350, 400, 450, 500]
    assert cache_mode_for_epoch(7, 5) == "ready" and cache_mode_for_epoch(10, 5) == "update"


def test_cluster_cache_round_trip() -> None:
    cache = ClusterCache()
    assert cache.mode(1) == "init" and cache.mode(11) == "ready" and not cache.has([0])
    rng = np.random.default_rng(3)
    a = {"rb1": rng.integers(0, 32, (3, 64)), "rb2": rng.integers(0, 32, (3, 4, 4))}
    cache.put([5, 9, 2], a)
    cache.put([7], {"rb1": a["rb1"][:1], "rb2": a["rb2"][:1]})
    state = cache.state_dict()
    other = ClusterCache(policy=3)
    other.load_state_dict(jax.tree.map(np.copy, state))
    assert other.policy == cache.policy and len(other) == 4 and other.has([2, 5, 7, 9]) and not other.has([1])
    got = other.get([9, 7])
    np.testing.assert_array_equal(got["rb1"], np.stack([a["rb1"][1], a["rb1"][0]]))
    np.testing.assert_array_equal(got["rb2"], np.stack([a["rb2"][1].ravel(), a["rb2"][0].ravel()]))
    with pytest.raises(KeyError):
        other.get([1])
    # cached indices drive the layer: "ready" reproduces the partition from them
    layer = CANConv(2, cluster_num=4)
    x = jax.random.normal(KEY(5), (2, 4, 4, 2))
    params = jax.jit(layer.init)(KEY(0), x)["params"]
    cached = jnp.asarray(rng.integers(0, 4, (2, 16)))
    run = jax.jit(lambda p, a, c, mode: layer.apply({"params": p}, a, kmeans_indices=c, kmeans_mode=mode), static_argnums=3)
    _, part = run(params, x, cached, "ready")
    np.testing.assert_array_equal(np.asarray(part), np.asarray(cached))
    _, upd = run(params, x, cached, "update")
    assert upd.shape == (2, 16) and int(upd.max()) < 4
