"""Quaternion matrices in JAX, through the complex adjoint representation.

A quaternion ``q = q0 + q1 i + q2 j + q3 k`` is stored as a real array with a trailing
axis of 4 components ``(q0, q1, q2, q3)``; an m x n quaternion matrix is a real
``(..., m, n, 4)`` array. Colour pixels are pure quaternions ``q = R i + G j + B k``
(:func:`from_rgb` / :func:`to_rgb`).

Cayley-Dickson form: ``Q = A + B j`` with complex ``A = q0 + q1 i`` and ``B = q2 + q3 i``
(since ``k = i j``). The complex adjoint is the 2m x 2n complex matrix

    chi(Q) = [[A, B], [-conj(B), conj(A)]],

a ring homomorphism (``chi(P Q) = chi(P) chi(Q)``, ``chi(Q^H) = chi(Q)^H``). Its singular
values are the quaternion singular values, each repeated twice; the quaternion SVD
``Q = U diag(s) V^H`` takes every other singular triplet of ``chi(Q)`` (the partner of a
left/right vector pair ``[x; y]`` is ``[-conj(y); conj(x)]``, which is the same quaternion
vector). All functions are pure, jittable and broadcast over leading (group) axes, so
``jax.vmap`` over patch groups is not needed but also works.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def from_rgb(rgb: jax.Array) -> jax.Array:
    """Pure quaternions ``R i + G j + B k`` from colour values: (..., 3) -> (..., 4), same units."""
    rgb = jnp.asarray(rgb)
    return jnp.concatenate([jnp.zeros_like(rgb[..., :1]), rgb], axis=-1)


def to_rgb(q: jax.Array) -> jax.Array:
    """The imaginary parts ``(q1, q2, q3)`` of quaternions: (..., 4) -> (..., 3); the real part is dropped."""
    return q[..., 1:]


def to_complex_pair(q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Cayley-Dickson parts ``(A, B)`` with ``q = A + B j``: (..., 4) real -> two (...) complex arrays."""
    a = jax.lax.complex(q[..., 0], q[..., 1])
    b = jax.lax.complex(q[..., 2], q[..., 3])
    return a, b


def from_complex_pair(a: jax.Array, b: jax.Array) -> jax.Array:
    """Quaternions ``A + B j`` from complex ``A``, ``B`` (...) -> real (..., 4)."""
    return jnp.stack([jnp.real(a), jnp.imag(a), jnp.real(b), jnp.imag(b)], axis=-1)


def adjoint(q: jax.Array) -> jax.Array:
    """The complex adjoint ``chi(Q) = [[A, B], [-conj(B), conj(A)]]``: (..., m, n, 4) -> complex (..., 2m, 2n)."""
    a, b = to_complex_pair(q)
    top = jnp.concatenate([a, b], axis=-1)
    bottom = jnp.concatenate([-jnp.conj(b), jnp.conj(a)], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def from_adjoint(c: jax.Array) -> jax.Array:
    """The quaternion matrix of a complex adjoint: complex (..., 2m, 2n) -> real (..., m, n, 4).

    Uses both block rows, ``A = (C11 + conj(C22)) / 2`` and ``B = (C12 - conj(C21)) / 2``,
    so that a matrix that is only approximately of adjoint form is projected onto that form.
    """
    m, n = c.shape[-2] // 2, c.shape[-1] // 2
    c11, c12 = c[..., :m, :n], c[..., :m, n:]
    c21, c22 = c[..., m:, :n], c[..., m:, n:]
    return from_complex_pair(0.5 * (c11 + jnp.conj(c22)), 0.5 * (c12 - jnp.conj(c21)))


def conj(q: jax.Array) -> jax.Array:
    """Quaternion conjugate ``q0 - q1 i - q2 j - q3 k`` elementwise: (..., 4) -> (..., 4)."""
    return q * jnp.asarray([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def hermitian(q: jax.Array) -> jax.Array:
    """Conjugate transpose ``Q^H``: (..., m, n, 4) -> (..., n, m, 4)."""
    return jnp.swapaxes(conj(q), -3, -2)


def qmul(p: jax.Array, q: jax.Array) -> jax.Array:
    """Hamilton product of quaternions elementwise (broadcasting): (..., 4) x (..., 4) -> (..., 4)."""
    p0, p1, p2, p3 = (p[..., i] for i in range(4))
    q0, q1, q2, q3 = (q[..., i] for i in range(4))
    return jnp.stack(
        [
            p0 * q0 - p1 * q1 - p2 * q2 - p3 * q3,
            p0 * q1 + p1 * q0 + p2 * q3 - p3 * q2,
            p0 * q2 - p1 * q3 + p2 * q0 + p3 * q1,
            p0 * q3 + p1 * q2 - p2 * q1 + p3 * q0,
        ],
        axis=-1,
    )


def matmul(p: jax.Array, q: jax.Array) -> jax.Array:
    """Quaternion matrix product ``P Q``: (..., m, k, 4) x (..., k, n, 4) -> (..., m, n, 4)."""
    return jnp.sum(qmul(p[..., :, :, None, :], q[..., None, :, :, :]), axis=-3)


def frobenius_norm(q: jax.Array) -> jax.Array:
    """Frobenius norm ``sqrt(sum |q_ij|^2)`` of quaternion matrices: (..., m, n, 4) -> (...)."""
    return jnp.sqrt(jnp.sum(q * q, axis=(-3, -2, -1)))


def singular_values(q: jax.Array) -> jax.Array:
    """Quaternion singular values, descending: (..., m, n, 4) -> (..., min(m, n))."""
    return jnp.linalg.svd(adjoint(q), compute_uv=False)[..., ::2]


def qsvd(q: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin quaternion SVD ``Q = U diag(s) V^H`` through the complex adjoint.

    Args:
      q: (..., m, n, 4) real quaternion matrices.

    Returns:
      ``(u, s, v)``: u (..., m, r, 4) and v (..., n, r, 4) with quaternion-orthonormal
      columns, s (..., r) real and descending, r = min(m, n). (Columns of u/v for
      exactly repeated quaternion singular values are only guaranteed orthonormal when
      those values are distinct; the reconstruction holds in every case.)
    """
    m, n = q.shape[-3], q.shape[-2]
    uc, sc, vch = jnp.linalg.svd(adjoint(q), full_matrices=False)
    vc = jnp.conj(jnp.swapaxes(vch, -1, -2))
    u_first, v_first = uc[..., ::2], vc[..., ::2]  # (2m, r), (2n, r): first columns of chi(u_i)
    # the first column [x; y] of chi(w) for a quaternion vector w = a + b j is [a; -conj(b)]
    u = from_complex_pair(u_first[..., :m, :], -jnp.conj(u_first[..., m:, :]))
    v = from_complex_pair(v_first[..., :n, :], -jnp.conj(v_first[..., n:, :]))
    return u, sc[..., ::2], v


def reconstruct(u: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
    """``U diag(s) V^H`` for quaternion u (..., m, r, 4), real s (..., r), v (..., n, r, 4) -> (..., m, n, 4)."""
    return matmul(u * s[..., None, :, None], hermitian(v))


def shrink_singular_values(q: jax.Array, fn: object) -> jax.Array:
    """``U diag(fn(s)) V^H`` for quaternion matrices, computed on the complex adjoint.

    ``fn`` maps the quaternion singular values (..., r), r = 2m / 2 = m, descending, to new
    values of the same shape; it is applied once per quaternion value and the result is
    repeated for both members of each adjoint pair, so the product is again of adjoint
    form. Computed through the eigen-decomposition of the 2m x 2m Gram matrix ``chi
    chi^H = W diag(s^2) W^H`` (much faster on CPU than a complex SVD of the wide adjoint):
    ``X = W diag(fn(s) / s) W^H chi``; components with ``s`` below 1e-12 are dropped.

    Args:
      q: (..., m, n, 4) real quaternion matrices, m <= n (patches as columns).
      fn: callable (..., m) -> (..., m).

    Returns:
      (..., m, n, 4) quaternion matrices.
    """
    c = adjoint(q)
    lam, w = jnp.linalg.eigh(c @ jnp.conj(jnp.swapaxes(c, -1, -2)))
    s = jnp.sqrt(jnp.maximum(lam[..., ::-1], 0.0))  # descending, in pairs
    w = w[..., ::-1]
    new = jnp.repeat(fn(s[..., ::2]), 2, axis=-1)  # type: ignore[operator]
    ratio = jnp.where(s > 1e-12, new / jnp.maximum(s, 1e-12), 0.0).astype(c.dtype)
    proj = jnp.conj(jnp.swapaxes(w, -1, -2)) @ c
    return from_adjoint((w * ratio[..., None, :]) @ proj)
