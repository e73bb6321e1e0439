"""The Mamba-1 selective scan in JAX (S6): input-dependent step, B and C; diagonal A.

Recurrence, per batch b, channel d and state n (channels-last layout)::

    dt[t]   = softplus(delta[t] + delta_bias)          (or delta[t] + delta_bias)
    h[t]    = exp(dt[t] * A[d, n]) * h[t-1] + dt[t] * B[t, n] * u[t]      (h[-1] = h0 or 0)
    y[t]    = sum_n C[t, n] * h[t, n] + D[d] * u[t]
    y[t]   *= silu(z[t])                               (when z is given)

Shapes: u, delta, z (batch, L, D); A (D, N); B, C (batch, L, N); D, delta_bias (D,);
h0 and the returned final state (batch, D, N). float32 in, float32 out.

The recurrence ``h[t] = a[t] * h[t-1] + b[t]`` is a composition of affine maps, which is
associative: ``(a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2)``. ``method`` picks how it
is evaluated (all three give the same result up to float rounding, and the same gradients):

``'sequential'``
    A ``lax.scan`` over the L tokens, one step at a time: the reference. O(L) serial steps;
    the discretised ``a``, ``b`` (batch, L, D, N) are built up front, and reverse mode
    stores one (batch, D, N) state per token.
``'associative'``
    ``lax.associative_scan`` over L: O(log L) parallel depth, the fastest on accelerators
    for moderate L. **Memory:** it materialises ``a``, ``b`` and every state ``h`` as
    (batch, L, D, N) arrays (plus the scan's intermediates, and all of them are kept for
    reverse mode): e.g. batch 8, L = 65536, D = 64, N = 16 is 2 GiB per float32 array.
``'chunked'``
    A ``lax.scan`` over chunks of ``chunk`` tokens carrying the (batch, D, N) state, with
    an associative scan inside each chunk. The discretisation and the C-contraction happen
    inside the chunk body, so only (batch, chunk, D, N) arrays are live at a time in the
    forward pass. With ``remat=True`` the chunk body is wrapped in ``jax.checkpoint``, so
    reverse mode keeps only the per-chunk carried states (L / chunk of them) and recomputes
    each chunk's internals in the backward pass: peak memory O(batch * chunk * D * N +
    (L / chunk) * batch * D * N) instead of O(batch * L * D * N), for about one extra
    forward pass of compute. L need not be a multiple of ``chunk``: the tail is padded
    with identity steps (a = 1, b = 0), which leave the final state unchanged; a chunk
    larger than L is clamped to L.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError

Method = Literal["sequential", "associative", "chunked"]
METHODS = ("sequential", "associative", "chunked")


def _dt(delta, delta_bias, delta_softplus):
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = jax.nn.softplus(dt)
    return dt


def _discretise(u, delta, A, B, delta_bias, delta_softplus):
    dt = _dt(delta, delta_bias, delta_softplus)
    dA = jnp.exp(dt[..., None] * A)  # (b, L, D, N)
    dBu = (dt * u)[..., None] * B[:, :, None, :]  # (b, L, D, N)
    return dA, dBu


def _combine(left, right):
    """Compose two affine steps, ``left`` first: h -> a2 * (a1 * h + b1) + b2."""
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _affine_prefix(dA, dBu, h_prev):
    """All states h[t] of ``h[t] = dA[t] h[t-1] + dBu[t]`` over axis 1, from ``h_prev`` (b, D, N)."""
    a_cum, b_cum = jax.lax.associative_scan(_combine, (dA, dBu), axis=1)
    return a_cum * h_prev[:, None] + b_cum


def _sequential(u, delta, A, B, C, delta_bias, delta_softplus, h):
    dA, dBu = _discretise(u, delta, A, B, delta_bias, delta_softplus)

    def step(h, inputs):
        a, bu, c = inputs
        h = a * h + bu
        return h, jnp.einsum("bdn,bn->bd", h, c)

    hT, ys = jax.lax.scan(step, h, (jnp.moveaxis(dA, 1, 0), jnp.moveaxis(dBu, 1, 0), jnp.moveaxis(C, 1, 0)))
    return jnp.moveaxis(ys, 0, 1), hT


def _associative(u, delta, A, B, C, delta_bias, delta_softplus, h):
    dA, dBu = _discretise(u, delta, A, B, delta_bias, delta_softplus)
    hs = _affine_prefix(dA, dBu, h)  # (b, L, D, N)
    return jnp.einsum("bldn,bln->bld", hs, C), hs[:, -1]


def _chunked(u, delta, A, B, C, delta_bias, delta_softplus, h, chunk, remat):
    b, L, d = u.shape
    n = A.shape[-1]
    chunk = min(chunk, L)
    n_chunks = -(-L // chunk)
    pad = n_chunks * chunk - L

    def to_chunks(x):  # (b, L, ...) -> (n_chunks, b, chunk, ...), zero-padded
        x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        x = x.reshape((b, n_chunks, chunk) + x.shape[2:])
        return jnp.moveaxis(x, 1, 0)

    valid = (jnp.arange(n_chunks * chunk) < L).reshape(n_chunks, 1, chunk, 1, 1)

    def body(h, xs):
        u_c, delta_c, B_c, C_c, valid_c = xs
        dA, dBu = _discretise(u_c, delta_c, A, B_c, delta_bias, delta_softplus)
        if pad:  # identity steps past the end: a = 1, b = 0 keep the state unchanged
            dA = jnp.where(valid_c, dA, jnp.ones_like(dA))
            dBu = jnp.where(valid_c, dBu, jnp.zeros_like(dBu))
        hs = _affine_prefix(dA, dBu, h)  # (b, chunk, D, N)
        return hs[:, -1], jnp.einsum("bldn,bln->bld", hs, C_c)

    if remat:
        body = jax.checkpoint(body)
    hT, ys = jax.lax.scan(body, h, (to_chunks(u), to_chunks(delta), to_chunks(B), to_chunks(C), valid))
    y = jnp.moveaxis(ys, 0, 1).reshape(b, n_chunks * chunk, d)[:, :L]
    return y, hT


def _check(u, delta, A, B, C, D, z, delta_bias, h0, method, chunk):
    def bad(msg):
        raise InputError(f"selective_scan: {msg}")

    if method not in METHODS:
        bad(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    if u.ndim != 3 or B.ndim != 3 or A.ndim != 2:
        bad(f"u (b, L, D), A (D, N), B/C (b, L, N); got u {u.shape}, A {A.shape}, B {B.shape}")
    b, L, d = u.shape
    n = A.shape[1]
    if delta.shape != u.shape:
        bad(f"delta {delta.shape} must match u {u.shape}")
    if A.shape[0] != d:
        bad(f"A {A.shape} must be (D, N) with D = {d}")
    if B.shape != (b, L, n) or C.shape != (b, L, n):
        bad(f"B {B.shape} and C {C.shape} must be (b, L, N) = {(b, L, n)}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and v.shape != (d,):
            bad(f"{name} {v.shape} must be ({d},)")
    if z is not None and z.shape != u.shape:
        bad(f"z {z.shape} must match u {u.shape}")
    if h0 is not None and h0.shape != (b, d, n):
        bad(f"h0 {h0.shape} must be (b, D, N) = {(b, d, n)}")
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        bad(f"chunk must be a positive int, got {chunk!r}")


def selective_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array | None = None,
    z: jax.Array | None = None,
    delta_bias: jax.Array | None = None,
    delta_softplus: bool = True,
    *,
    h0: jax.Array | None = None,
    method: Method = "sequential",
    chunk: int = 128,
    return_state: bool = False,
    remat: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Run the selective scan; see the module docstring for the recurrence, shapes and methods.

    ``h0`` (batch, D, N) is the state before the first token (zeros when None). ``chunk``
    (tokens per chunk) and ``remat`` (``jax.checkpoint`` each chunk body, trading compute
    for memory in reverse mode) apply to ``method='chunked'`` only. ``method``, ``chunk``,
    ``remat`` and ``return_state`` are static (Python values), everything else may be traced.

    Returns y (batch, L, D), and the final state (batch, D, N) when ``return_state``.
    """
    _check(u, delta, A, B, C, D, z, delta_bias, h0, method, chunk)
    b, L, d = u.shape
    n = A.shape[-1]
    dtype = jnp.result_type(u, delta, A, B, C)
    h = jnp.zeros((b, d, n), dtype) if h0 is None else h0.astype(dtype)
    if L == 0:
        y, hT = jnp.zeros((b, 0, d), dtype), h
    elif method == "sequential":
        y, hT = _sequential(u, delta, A, B, C, delta_bias, delta_softplus, h)
    elif method == "associative":
        y, hT = _associative(u, delta, A, B, C, delta_bias, delta_softplus, h)
    else:
        y, hT = _chunked(u, delta, A, B, C, delta_bias, delta_softplus, h, chunk, remat)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * jax.nn.silu(z)
    return (y, hT) if return_state else y
