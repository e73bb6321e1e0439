"""Selective scan (sequential / associative / chunked) and the 2-D scan helpers."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from pansharp_jax.errors import InputError
from pansharp_jax.nn.scan2d import (
    SERIAL_DIRECTIONS_ABOVE,
    bidirectional_merge,
    bidirectional_scan,
    cross_merge,
    cross_scan,
    direction_transforms,
    flip_sequence,
    window_merge,
    window_partition,
    window_valid_mask,
    use_serial_directions,
)
from pansharp_jax.nn.selective_scan import selective_scan

TOL = 1e-5


def _inputs(seed, b=2, L=13, d=4, n=3):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return dict(
        u=f(b, L, d),
        delta=0.5 * f(b, L, d),
        A=-np.exp(0.5 * f(d, n)).astype(np.float32),
        B=f(b, L, n),
        C=f(b, L, n),
        D=f(d),
        z=f(b, L, d),
        delta_bias=0.3 * f(d),
        h0=f(b, d, n),
    )


def _numpy_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True, h0=None):
    """The recurrence written out as a float64 loop over batch, time, channel and state."""
    u, delta, A, B, C = (np.asarray(a, np.float64) for a in (u, delta, A, B, C))
    b, L, d = u.shape
    n = A.shape[1]
    h = np.zeros((b, d, n)) if h0 is None else np.array(h0, np.float64)
    y = np.zeros((b, L, d))
    for i in range(b):
        for t in range(L):
            for c in range(d):
                dt = delta[i, t, c] + (0.0 if delta_bias is None else float(delta_bias[c]))
                if delta_softplus:
                    dt = np.log1p(np.exp(dt))
                acc = 0.0
                for s in range(n):
                    h[i, c, s] = np.exp(dt * A[c, s]) * h[i, c, s] + dt * B[i, t, s] * u[i, t, c]
                    acc += C[i, t, s] * h[i, c, s]
                if D is not None:
                    acc += float(D[c]) * u[i, t, c]
                if z is not None:
                    zz = float(z[i, t, c])
                    acc *= zz / (1.0 + np.exp(-zz))
                y[i, t, c] = acc
    return y, h


# L = 13 in these cases: chunk 1, 5 (does not divide L), 13 (= L) and 64 (> L).
METHODS = [("sequential", 128), ("associative", 128)] + [("chunked", c) for c in (1, 5, 13, 64)]
# (D, z, delta_bias, softplus, h0): all off, all on, each one off, and softplus alone.
_ALL = (True,) * 5
OPTIONS = [(False,) * 5, _ALL] + [_ALL[:i] + (False,) + _ALL[i + 1 :] for i in range(5)] + [(False, False, False, True, False)]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: "".join("DzbSh"[i] if v else "-" for i, v in enumerate(o)))
def test_methods_match_numpy_loop(opts):
    use_D, use_z, use_bias, softplus, use_h0 = opts
    x = _inputs(sum((1 << i) * v for i, v in enumerate(opts)))
    kw = dict(
        D=x["D"] if use_D else None,
        z=x["z"] if use_z else None,
        delta_bias=x["delta_bias"] if use_bias else None,
        delta_softplus=softplus,
    )
    h0 = x["h0"] if use_h0 else None
    if not softplus:  # keep the raw step positive so the recurrence stays stable
        x["delta"] = np.abs(x["delta"]) + (0 if use_bias else 0.1)
        if use_bias:
            kw["delta_bias"] = np.abs(kw["delta_bias"])
    y_ref, h_ref = _numpy_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], h0=h0, **kw)
    for method, chunk in METHODS:
        fn = jax.jit(lambda *a, m=method, c=chunk: selective_scan(*a, h0=h0, method=m, chunk=c, return_state=True, **kw))
        y, h = fn(x["u"], x["delta"], x["A"], x["B"], x["C"])
        assert y.shape == y_ref.shape and h.shape == h_ref.shape
        np.testing.assert_allclose(y, y_ref, atol=TOL, rtol=TOL, err_msg=f"{method}/{chunk}")
        np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL, err_msg=f"{method}/{chunk} state")


@pytest.mark.parametrize("remat", [False, True])
def test_chunked_padding_keeps_final_state(remat):
    # L = 7 with chunk 3 (two padded steps) and chunk 32 > L; a bias makes padded deltas nonzero.
    x = _inputs(11, b=1, L=7, d=3, n=2)
    y_ref, h_ref = _numpy_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=x["delta_bias"], h0=x["h0"])
    for chunk in (3, 32):
        y, h = selective_scan(
            x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=x["delta_bias"], h0=x["h0"],
            method="chunked", chunk=chunk, remat=remat, return_state=True,
        )
        np.testing.assert_allclose(y, y_ref, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL)


def _loss(method, chunk=4, remat=False):
    def loss(u, delta, A, B, C, D, z, delta_bias, h0):
        y, h = selective_scan(u, delta, A, B, C, D, z, delta_bias, h0=h0, method=method, chunk=chunk, remat=remat, return_state=True)
        return jnp.sum(jnp.sin(y)) + jnp.sum(h * h)

    return loss


ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "h0")


def test_check_grads_associative_and_chunked():
    x = _inputs(5, b=1, L=6, d=2, n=2)
    with jax.enable_x64(True):
        args = [jnp.asarray(x[k], jnp.float64) for k in ARGS]
        for method, chunk in (("associative", 128), ("chunked", 4)):
            check_grads(jax.jit(_loss(method, chunk)), args, order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("L", [6, 23])
def test_check_grads_sequential_custom_vjp(L):
    # the sequential scan has a hand-written reverse mode (states recomputed in chunks of about
    # sqrt(L) tokens): check it against finite differences, with L not a multiple of the chunk
    x = _inputs(7, b=2, L=L, d=2, n=3)
    with jax.enable_x64(True):
        args = [jnp.asarray(x[k], jnp.float64) for k in ARGS]
        check_grads(jax.jit(_loss("sequential", 4)), args, order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_gradients_agree_across_methods():
    x = _inputs(6, b=2, L=11, d=3, n=4)
    args = [jnp.asarray(x[k]) for k in ARGS]
    grad = lambda m, c=4, r=False: jax.jit(jax.grad(_loss(m, c, r), argnums=tuple(range(9))))(*args)  # noqa: E731
    g_assoc = grad("associative")
    for g in (grad("chunked", 4), grad("chunked", 8, True), grad("sequential")):
        for name, a, c in zip(ARGS, g_assoc, g):
            np.testing.assert_allclose(a, c, atol=TOL, rtol=TOL, err_msg=name)


@pytest.mark.parametrize("method, chunk", [("sequential", 128), ("associative", 128), ("chunked", 5)])
def test_bfloat16_inputs_keep_a_float32_state(method, chunk):
    # mixed precision: every array bf16 but h0 (as the models cast their parameters). The state must be float32 (a bf16 state drifts
    # by ~1e-2 within a few tokens): the final state matches the float64 loop on the same
    # bf16-rounded values to float32 tolerance, y comes back in bf16 within bf16 rounding.
    x = _inputs(21, b=2, L=13, d=4, n=3)
    bf = {k: jnp.asarray(x[k], jnp.bfloat16) for k in ("u", "delta", "z", "B", "C", "A", "D", "delta_bias")}
    r = {k: np.asarray(v.astype(jnp.float32)) for k, v in bf.items()}
    y_ref, h_ref = _numpy_scan(r["u"], r["delta"], r["A"], r["B"], r["C"], r["D"], r["z"], r["delta_bias"], h0=x["h0"])
    y, h = jax.jit(lambda *a: selective_scan(*a, h0=x["h0"], method=method, chunk=chunk, return_state=True))(
        bf["u"], bf["delta"], bf["A"], bf["B"], bf["C"], bf["D"], bf["z"], bf["delta_bias"]
    )
    assert y.dtype == jnp.bfloat16 and h.dtype == jnp.float32
    np.testing.assert_allclose(h, h_ref, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, atol=1e-2, rtol=1e-2)


def test_auto_method_resolves_by_backend():
    x = _inputs(2)
    y = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], method="auto")
    y_ref, _ = _numpy_scan(x["u"], x["delta"], x["A"], x["B"], x["C"])
    np.testing.assert_allclose(y, y_ref, atol=TOL, rtol=TOL)


def test_bad_inputs_raise():
    x = _inputs(0)
    with pytest.raises(InputError, match="unknown method"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], method="parallel")
    with pytest.raises(InputError, match="h0"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], h0=x["h0"][:, :1], method="associative")
    with pytest.raises(InputError, match="chunk"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], method="chunked", chunk=0)


# ---------------------------------------------------------------- scan2d


def test_cross_scan_orders_and_merge():
    b, H, W, d = 2, 3, 5, 4
    x = np.random.default_rng(0).standard_normal((b, H, W, d)).astype(np.float32)
    xs = np.asarray(jax.jit(cross_scan)(x))
    L = H * W
    assert xs.shape == (b, 4, L, d)
    for i in range(H):
        for j in range(W):
            np.testing.assert_array_equal(xs[:, 0, i * W + j], x[:, i, j])
            np.testing.assert_array_equal(xs[:, 1, L - 1 - (i * W + j)], x[:, i, j])
            np.testing.assert_array_equal(xs[:, 2, j * H + i], x[:, i, j])
            np.testing.assert_array_equal(xs[:, 3, L - 1 - (j * H + i)], x[:, i, j])
    np.testing.assert_allclose(jax.jit(cross_merge, static_argnums=(1, 2))(xs, H, W), 4 * x, rtol=1e-6)
    # merging distinct per-direction values: each direction lands back on its pixel
    y = np.random.default_rng(1).standard_normal((b, 4, L, d)).astype(np.float32)
    expect = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            expect[:, i, j] = y[:, 0, i * W + j] + y[:, 1, L - 1 - (i * W + j)] + y[:, 2, j * H + i] + y[:, 3, L - 1 - (j * H + i)]
    np.testing.assert_allclose(cross_merge(y, H, W), expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ndir", [2, 4])
def test_direction_transforms_match_the_index_orders(ndir):
    b, H, W, d = 2, 3, 5, 4
    L = H * W
    x = np.random.default_rng(2).standard_normal((b, L, d)).astype(np.float32)  # row-major tokens
    to, back = direction_transforms(ndir, (H, W))
    assert len(to) == len(back) == ndir
    rows = [i * W + j for i in range(H) for j in range(W)]  # token -> pixel (row-major)
    cols = [i * W + j for j in range(W) for i in range(H)]  # column-major order, as row-major indices
    orders = [rows, rows[::-1], cols, cols[::-1]][:ndir]
    for k, order in enumerate(orders):
        moved = np.asarray(jax.jit(lambda v, k=k: jax.lax.switch(k, to, v))(x))
        np.testing.assert_array_equal(moved, x[:, order])
        np.testing.assert_array_equal(np.asarray(back[k](moved)), x)
    assert not use_serial_directions("auto", SERIAL_DIRECTIONS_ABOVE - 1)
    assert use_serial_directions("auto", SERIAL_DIRECTIONS_ABOVE) and use_serial_directions("serial", 1)
    assert not use_serial_directions("batched", 10 * SERIAL_DIRECTIONS_ABOVE)
    with pytest.raises(InputError, match="scan_directions"):
        use_serial_directions("diagonal", 1)
    with pytest.raises(InputError, match="hw"):
        direction_transforms(4, None)


def test_bidirectional_helpers():
    x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    np.testing.assert_array_equal(flip_sequence(x), x[:, ::-1])
    s = bidirectional_scan(x)
    assert s.shape == (2, 2, 5, 3)
    np.testing.assert_array_equal(s[:, 1], x[:, ::-1])
    np.testing.assert_array_equal(bidirectional_merge(s), 2 * x)


@pytest.mark.parametrize("H, W, win", [(4, 6, 2), (5, 7, 3), (2, 3, 4)])
def test_window_partition_round_trip(H, W, win):
    b, d = 2, 3
    x = np.random.default_rng(H * W).standard_normal((b, H, W, d)).astype(np.float32)
    w = np.asarray(jax.jit(window_partition, static_argnums=1)(x, win))
    nh, nw = -(-H // win), -(-W // win)
    assert w.shape == (b * nh * nw, win * win, d)
    for bi, wi, wj, p, q in itertools.product(range(b), range(nh), range(nw), range(win), range(win)):
        i, j = wi * win + p, wj * win + q
        expect = x[bi, i, j] if (i < H and j < W) else np.zeros(d, np.float32)
        np.testing.assert_array_equal(w[(bi * nh + wi) * nw + wj, p * win + q], expect)
    np.testing.assert_array_equal(window_merge(w, win, H, W), x)
    mask = np.asarray(window_valid_mask(H, W, win))
    assert mask.shape == (nh * nw, win * win) and mask.sum() == H * W
    np.testing.assert_array_equal(mask, np.any(w[: nh * nw] != 0, axis=-1))
