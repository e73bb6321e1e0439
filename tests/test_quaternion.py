"""Quaternion algebra and QSVD against independent NumPy constructions (written here)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.restoration import quaternion as qt


def np_left_matrix(q: np.ndarray) -> np.ndarray:
    """4x4 real matrix of left multiplication by q = (a, b, c, d): L(q) p = q p."""
    a, b, c, d = q
    return np.array([[a, -b, -c, -d], [b, a, -d, c], [c, d, a, -b], [d, -c, b, a]])


def np_real_rep(q: np.ndarray) -> np.ndarray:
    """(m, n, 4) quaternion matrix -> (4m, 4n) real representation (blocks L(q_ij))."""
    m, n, _ = q.shape
    out = np.zeros((4 * m, 4 * n))
    for i in range(m):
        for j in range(n):
            out[4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = np_left_matrix(q[i, j])
    return out


def np_adjoint(q: np.ndarray) -> np.ndarray:
    """Complex adjoint built here: A = q0 + q1 i, B = q2 + q3 i, [[A, B], [-conj B, conj A]]."""
    a = q[..., 0] + 1j * q[..., 1]
    b = q[..., 2] + 1j * q[..., 3]
    return np.block([[a, b], [-np.conj(b), np.conj(a)]])


def np_qmatmul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quaternion matrix product through the 4x4 left-multiplication blocks."""
    m, k, _ = p.shape
    n = q.shape[1]
    out = np.zeros((m, n, 4))
    for i in range(m):
        for j in range(n):
            for t in range(k):
                out[i, j] += np_left_matrix(p[i, t]) @ q[t, j]
    return out


def rand_q(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, 4)).astype(np.float32)


def test_hamilton_rules_and_random_products() -> None:
    one, i, j, k = np.eye(4, dtype=np.float32)
    assert np.allclose(qt.qmul(i, j), k) and np.allclose(qt.qmul(j, i), -k)
    assert np.allclose(qt.qmul(j, k), i) and np.allclose(qt.qmul(k, i), j)
    assert np.allclose(qt.qmul(i, i), -one)
    p, q = rand_q((5,), 1), rand_q((5,), 2)
    want = np.stack([np_left_matrix(a) @ b for a, b in zip(p, q)])
    np.testing.assert_allclose(np.asarray(qt.qmul(jnp.asarray(p), jnp.asarray(q))), want, rtol=1e-5, atol=1e-5)


def test_matmul_and_adjoint_homomorphism() -> None:
    p, q = rand_q((3, 4), 3), rand_q((4, 2), 4)
    pq = np.asarray(qt.matmul(jnp.asarray(p), jnp.asarray(q)))
    np.testing.assert_allclose(pq, np_qmatmul(p.astype(np.float64), q.astype(np.float64)), atol=1e-5)
    np.testing.assert_allclose(np_adjoint(pq), np_adjoint(p) @ np_adjoint(q), atol=1e-5)
    np.testing.assert_allclose(np.asarray(qt.adjoint(jnp.asarray(p))), np_adjoint(p), atol=1e-6)
    back = np.asarray(qt.from_adjoint(qt.adjoint(jnp.asarray(p))))
    np.testing.assert_allclose(back, p, atol=1e-6)
    f = np.sqrt((p.astype(np.float64) ** 2).sum())
    assert abs(float(qt.frobenius_norm(jnp.asarray(p))) - f) < 1e-4 * f


def test_qsvd_reconstructs_and_matches_numpy_adjoint() -> None:
    q = rand_q((6, 9), 5)
    u, s, v = (np.asarray(a, np.float64) for a in qt.qsvd(jnp.asarray(q)))
    assert u.shape == (6, 6, 4) and s.shape == (6,) and v.shape == (9, 6, 4)
    # independent: singular values of the complex adjoint (pairs) and of the real representation (quadruples)
    s_chi = np.linalg.svd(np_adjoint(q.astype(np.float64)), compute_uv=False)
    np.testing.assert_allclose(s, s_chi[::2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s_chi[::2], s_chi[1::2], rtol=1e-6)
    s_real = np.linalg.svd(np_real_rep(q.astype(np.float64)), compute_uv=False)
    np.testing.assert_allclose(s, s_real[::4], rtol=1e-5, atol=1e-5)
    # reconstruction U diag(s) V^H with the quaternion product written here
    vh = np.swapaxes(v * np.array([1, -1, -1, -1]), 0, 1)
    rec = np_qmatmul(u * s[None, :, None], vh)
    assert np.abs(rec - q).max() < 1e-5
    # quaternion-orthonormal columns: U^H U = I
    uhu = np_qmatmul(np.swapaxes(u * np.array([1, -1, -1, -1]), 0, 1), u)
    np.testing.assert_allclose(uhu[..., 0], np.eye(6), atol=1e-5)
    assert np.abs(uhu[..., 1:]).max() < 1e-5
    np.testing.assert_allclose(np.asarray(qt.singular_values(jnp.asarray(q))), s_chi[::2], rtol=1e-5, atol=1e-5)


def test_shrink_equals_numpy_adjoint_shrink_and_is_vmappable() -> None:
    q = rand_q((4, 5, 11), 6)  # 4 groups of 5 x 11 quaternion matrices

    def np_shrink(x: np.ndarray, t: float) -> np.ndarray:
        c = np_adjoint(x.astype(np.float64))
        uu, ss, vh = np.linalg.svd(c, full_matrices=False)
        c2 = (uu * np.maximum(ss - t, 0)) @ vh
        m, n = x.shape[:2]
        a, b = c2[:m, :n], c2[:m, n:]
        return np.stack([a.real, a.imag, b.real, b.imag], -1)

    fn = jax.jit(jax.vmap(lambda x: qt.shrink_singular_values(x, lambda s: jnp.maximum(s - 1.5, 0.0))))
    got = np.asarray(fn(jnp.asarray(q)))
    want = np.stack([np_shrink(x, 1.5) for x in q])
    np.testing.assert_allclose(got, want, atol=2e-4)
    # batched qsvd == per-matrix qsvd singular values
    s_b = np.asarray(jax.vmap(lambda x: qt.qsvd(x)[1])(jnp.asarray(q)))
    for g in range(4):
        np.testing.assert_allclose(s_b[g], np.linalg.svd(np_adjoint(q[g].astype(np.float64)), compute_uv=False)[::2], rtol=1e-5, atol=1e-5)


def test_rgb_roundtrip_pure_quaternion() -> None:
    rgb = np.random.default_rng(7).uniform(size=(3, 2, 3)).astype(np.float32)
    q = np.asarray(qt.from_rgb(jnp.asarray(rgb)))
    assert np.all(q[..., 0] == 0) and np.array_equal(q[..., 1:], rgb)
    assert np.array_equal(np.asarray(qt.to_rgb(jnp.asarray(q))), rgb)
