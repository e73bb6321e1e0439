"""The Mamba-1 selective scan in JAX (S6): input-dependent step, B and C; diagonal A.

Recurrence, per batch b, channel d and state n (channels-last layout)::

    dt[t]   = softplus(delta[t] + delta_bias)          (or delta[t] + delta_bias)
    h[t]    = exp(dt[t] * A[d, n]) * h[t-1] + dt[t] * B[t, n] * u[t]
    y[t]    = sum_n C[t, n] * h[t, n] + D[d] * u[t]
    y[t]   *= silu(z[t])                               (when z is given)

Shapes: u, delta, z (batch, L, D); A (D, N); B, C (batch, L, N); D, delta_bias (D,);
h0 and the returned final state (batch, D, N). float32 in, float32 out.

``method``: ``'sequential'`` (a ``lax.scan`` over L, the reference) for now.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError

Method = Literal["sequential", "associative", "chunked"]


def _discretise(u, delta, A, B, delta_bias, delta_softplus):
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = jax.nn.softplus(dt)
    dA = jnp.exp(dt[..., None] * A)  # (b, L, D, N)
    dBu = (dt * u)[..., None] * B[:, :, None, :]  # (b, L, D, N)
    return dA, dBu


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
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Run the selective scan; see the module docstring for the recurrence and shapes.

    Returns y (batch, L, D), and the final state (batch, D, N) when ``return_state``.
    """
    if u.ndim != 3 or B.ndim != 3 or A.ndim != 2:
        raise InputError(f"selective_scan: u (b, L, D), A (D, N), B/C (b, L, N); got u {u.shape}, A {A.shape}, B {B.shape}")
    if method != "sequential":
        raise InputError(f"selective_scan: unknown method {method!r}")
    b, L, d = u.shape
    n = A.shape[-1]
    dA, dBu = _discretise(u, delta, A, B, delta_bias, delta_softplus)
    h = jnp.zeros((b, d, n), dA.dtype) if h0 is None else h0

    def step(h, inputs):
        a, bu, c = inputs
        h = a * h + bu
        return h, jnp.einsum("bdn,bn->bd", h, c)

    hT, ys = jax.lax.scan(step, h, (jnp.moveaxis(dA, 1, 0), jnp.moveaxis(dBu, 1, 0), jnp.moveaxis(C, 1, 0)))
    y = jnp.moveaxis(ys, 0, 1)
    if D is not None:
        y = y + u * D
    if z is not None:
        y = y * jax.nn.silu(z)
    return (y, hT) if return_state else y
