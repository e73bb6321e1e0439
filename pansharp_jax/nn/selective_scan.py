"""The Mamba-1 selective scan in JAX (S6): input-dependent step, B and C; diagonal A.

Recurrence, per batch b, channel d and state n (channels-last layout)::

    dt[t]   = softplus(delta[t] + delta_bias)          (or delta[t] + delta_bias)
    h[t]    = exp(dt[t] * A[d, n]) * h[t-1] + dt[t] * B[t, n] * u[t]      (h[-1] = h0 or 0)
    y[t]    = sum_n C[t, n] * h[t, n] + D[d] * u[t]
    y[t]   *= silu(z[t])                               (when z is given)

Shapes: u, delta, z (batch, L, D); A (D, N); B, C (batch, L, N); D, delta_bias (D,);
h0 and the returned final state (batch, D, N).

Precision: the inputs may be bfloat16 (mixed precision) or float32 (float64 under x64). Every
method computes the recurrence, its state and the D/gate terms in ``promote_types(input dtype,
float32)``: a bf16 state would lose the long-range memory the scan exists for. y is returned
in the dtype of ``u``; the final state in the compute dtype (float32 for bf16/f32 inputs).

The recurrence ``h[t] = a[t] * h[t-1] + b[t]`` is a composition of affine maps, which is
associative: ``(a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2)``. ``method`` picks how it
is evaluated (all three give the same result up to float rounding, and the same gradients):

``'sequential'``
    A ``lax.scan`` over the L tokens, one step at a time: the reference. O(L) serial steps;
    the discretisation happens inside the step, so the forward keeps only the (batch, D, N)
    state. Reverse mode is a custom VJP: it stores only the inputs and recomputes the states
    in the backward pass, in chunks of ~sqrt(L) tokens; see ``_seq_core``.
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
``'pallas'``
    Fused Pallas kernels (:mod:`pansharp_jax.nn.selective_scan_pallas`): one pass over the
    tokens per (batch, channel block) with the state in registers, the softplus, D term and
    gate fused in, and a reverse-time Pallas kernel for reverse mode that recomputes states
    from checkpoints every ``chunk`` tokens. Lowers through Triton on GPUs; on the CPU it
    runs in Pallas interpret mode (correct, slow: for tests).
``'auto'``
    ``'pallas'`` when the default backend is a GPU, ``'sequential'`` on the CPU (the
    fastest there), ``'associative'`` elsewhere (TPU); see :func:`resolve_method`.
"""

from __future__ import annotations

from typing import Literal

import math

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError

Method = Literal["sequential", "associative", "chunked", "pallas", "auto"]
METHODS = ("sequential", "associative", "chunked", "pallas")


def resolve_method(method: str, backend: str | None = None) -> str:
    """The concrete method ``method`` runs as: ``'auto'`` becomes ``'pallas'`` on a GPU backend,
    ``'sequential'`` on the CPU and ``'associative'`` otherwise; other names are returned as is.
    ``backend`` defaults to ``jax.default_backend()`` (resolved at trace time)."""
    if method != "auto":
        return method
    backend = jax.default_backend() if backend is None else backend
    return {"gpu": "pallas", "cuda": "pallas", "rocm": "pallas", "cpu": "sequential"}.get(backend, "associative")



def resolve_training_scan(backend: str, remat: bool = False) -> tuple[str, bool]:
    """A state-space model's ``scan_method='auto'`` on ``backend`` -> (method, remat).

    The models (FusionMamba, LE-Mamba) pick their scan when they are built, for training
    memory: on the CPU ``'sequential'`` (the fastest there; its reverse mode keeps only the
    scan inputs); on accelerators ``'chunked'`` with ``remat`` (parallel inside chunks, one
    state per chunk kept for reverse mode), never ``'associative'``, which keeps every
    (b, L, D, N) intermediate for the backward pass (3.2 GiB per 64 x 64 FusionMamba training
    sample). ``'pallas'`` replaces ``'chunked'`` here once ``benchmarks/device_suite.sh`` has
    measured it faster on a GPU (it is not the model default before that); the plain
    :func:`resolve_method` ``'auto'`` of single scan calls already picks it on GPUs.
    """
    return ("sequential", remat) if backend == "cpu" else ("chunked", True)

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


def _seq_scan(dt, u, A, B, C, h, keep_states):
    """The recurrence as one ``lax.scan`` over **time-major** tokens (L, b, .), discretising inside
    the step (only the (b, D, N) state is alive). Returns y (L, b, D), the final state and, with
    ``keep_states``, the state *before* every token (L, b, D, N)."""

    def step(h, xs):
        dt_t, u_t, B_t, C_t = xs
        h_new = jnp.exp(dt_t[..., None] * A) * h + (dt_t * u_t)[..., None] * B_t[:, None, :]
        y = jnp.sum(h_new * C_t[:, None, :], axis=-1)  # (elementwise + sum: fuses, unlike a dot)
        return h_new, ((y, h) if keep_states else y)

    hT, out = jax.lax.scan(step, h, (dt, u, B, C))
    ys, hs = out if keep_states else (out, None)
    return ys, hT, hs


def _seq_chunk_bwd(dt, u, A, B, C, gy, h_start, g, gA):
    """Reverse mode through one chunk of time-major tokens that starts in state ``h_start``,
    given the cotangent ``g`` of its final state (and the running cotangent ``gA`` of A)."""
    _, _, hs = _seq_scan(dt, u, A, B, C, h_start, True)  # recomputed: hs[t] = state before token t

    def step(carry, xs):
        g, gA = carry  # g: cotangent of the state after this token
        dt_t, u_t, B_t, C_t, gy_t, h_prev = xs
        a = jnp.exp(dt_t[..., None] * A)  # (b, D, N)
        dtu = dt_t * u_t
        h = a * h_prev + dtu[..., None] * B_t[:, None, :]
        gC_t = jnp.sum(gy_t[..., None] * h, axis=1)
        g = g + gy_t[..., None] * C_t[:, None, :]
        ga = g * h_prev * a  # cotangent of dt * A (through a = exp(dt * A))
        gdtu = jnp.sum(g * B_t[:, None, :], axis=-1)
        gB_t = jnp.sum(g * dtu[..., None], axis=1)
        gdt_t = jnp.sum(ga * A, axis=-1) + gdtu * u_t
        gA = gA + jnp.sum(ga * dt_t[..., None], axis=0)
        return (g * a, gA), (gdt_t, gdtu * dt_t, gB_t, gC_t)

    return jax.lax.scan(step, (g, gA), (dt, u, B, C, gy, hs), reverse=True)


# Reverse mode of the sequential scan, written by hand. Differentiating the ``lax.scan`` with
# JAX autodiff keeps, per call, the discretised a, b and the states before and after every
# token (several (b, L, D, N) arrays) until the backward pass reaches that call: a network
# with dozens of scans then holds tens of GB (LE-Mamba tiny, batch 8, 64 x 64: 85 GB) and the
# backward runs ~15x the forward. Here the residuals are only the (b, L, D) / (b, L, N) inputs.
# The backward pass recomputes the states in chunks of about sqrt(L) tokens: one forward pass
# keeps the state at each chunk start, then, chunk by chunk from the last, the chunk's states
# are recomputed and a reverse scan whose step works on (b, D, N) values (like the forward)
# gives the cotangents. Peak memory ~2 sqrt(L) states instead of L, for one extra forward pass
# (cheap next to the backward). Same function, same gradients (up to float rounding).
@jax.custom_vjp
def _seq_core(dt, u, A, B, C, h):
    """y (b, L, D), final state: the recurrence with the step ``dt`` already discretised (softplus)."""
    mv = lambda x: jnp.moveaxis(x, 1, 0)  # noqa: E731  (b, L, .) -> (L, b, .)
    ys, hT, _ = _seq_scan(mv(dt), mv(u), A, mv(B), mv(C), h, False)
    return jnp.moveaxis(ys, 0, 1), hT


def _seq_core_fwd(dt, u, A, B, C, h):
    return _seq_core(dt, u, A, B, C, h), (dt, u, A, B, C, h)


def _seq_core_bwd(res, cts):
    # The barrier ties the recomputation to the arrival of the cotangents: otherwise XLA may
    # hoist every scan's recomputation to the start of the backward pass.
    (dt, u, A, B, C, h0), (gy, ghT) = jax.lax.optimization_barrier((res, cts))
    b, L, d = u.shape
    chunk = max(1, math.isqrt(L - 1) + 1)  # ceil(sqrt(L))
    n_chunks = -(-L // chunk)
    pad = n_chunks * chunk - L

    def chunks(x):  # (b, L, .) -> (n_chunks, chunk, b, .), padded at the end with zeros
        x = jnp.pad(jnp.moveaxis(x, 1, 0), [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((n_chunks, chunk) + x.shape[1:])

    # padded tokens have dt = 0: a = 1, b = 0 (identity steps), and y, gy = 0 there
    xs = tuple(chunks(x) for x in (dt, u, B, C, gy))

    def start_states(h, x):  # the state at each chunk start
        _, h_end, _ = _seq_scan(x[0], x[1], A, x[2], x[3], h, False)
        return h_end, h

    _, h_starts = jax.lax.scan(start_states, h0, xs)

    def chunk_step(carry, x):
        (dt_c, u_c, B_c, C_c, gy_c), h_start = x
        return _seq_chunk_bwd(dt_c, u_c, A, B_c, C_c, gy_c, h_start, *carry)

    (gh0, gA), grads = jax.lax.scan(chunk_step, (ghT, jnp.zeros_like(A)), (xs, h_starts), reverse=True)
    gdt, gu, gB, gC = (jnp.moveaxis(x.reshape((n_chunks * chunk,) + x.shape[2:])[:L], 0, 1) for x in grads)
    return gdt, gu, gA, gB, gC, gh0


_seq_core.defvjp(_seq_core_fwd, _seq_core_bwd)


def seq_scan_core(dt, u, A, B, C, h, reverse=False):
    """The sequential scan on a discretised step ``dt`` (b, L, D) (softplus etc. applied), with
    the lean hand-written reverse mode of ``_seq_core``; ``reverse`` runs from the last token to
    the first (outputs stay in place). Returns y (b, L, D) (no D term, no gate) and the final state."""
    if not reverse:
        return _seq_core(dt, u, A, B, C, h)
    flip = lambda x: jnp.flip(x, axis=1)  # noqa: E731
    y, hT = _seq_core(flip(dt), flip(u), A, flip(B), flip(C), h)
    return flip(y), hT


def _sequential(u, delta, A, B, C, delta_bias, delta_softplus, h, reverse=False):
    return seq_scan_core(_dt(delta, delta_bias, delta_softplus), u, A, B, C, h, reverse)


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

    if method not in (*METHODS, "auto"):
        bad(f"unknown method {method!r}; expected auto or one of {', '.join(METHODS)}")
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
    for memory in reverse mode) apply to ``method='chunked'``; for ``'pallas'`` ``chunk`` is
    the spacing of the states kept for reverse mode. ``method`` (``'auto'`` resolves by
    backend, :func:`resolve_method`), ``chunk``, ``remat`` and ``return_state`` are static
    (Python values), everything else may be traced. Arrays may be bfloat16, float32 or
    float64; the scan runs in float32 at least (module docstring, "Precision").

    Returns y (batch, L, D) in ``u``'s dtype, and the final state (batch, D, N) in the
    compute dtype when ``return_state``.
    """
    _check(u, delta, A, B, C, D, z, delta_bias, h0, method, chunk)
    method = resolve_method(method)
    b, L, d = u.shape
    n = A.shape[-1]
    out_dtype = u.dtype
    dtype = jnp.promote_types(jnp.result_type(u, delta, A, B, C), jnp.float32)  # state dtype
    if method == "pallas" and L > 0:
        from pansharp_jax.nn.selective_scan_pallas import selective_scan_pallas

        # the kernels read the inputs in their own dtypes and compute in ``dtype``
        y, hT = selective_scan_pallas(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, h0=h0, chunk=chunk
        )  # fmt: skip
        return (y, hT) if return_state else y
    cast = lambda x: None if x is None else x.astype(dtype)  # noqa: E731
    u, delta, A, B, C, D, z, delta_bias = map(cast, (u, delta, A, B, C, D, z, delta_bias))
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
    y = y.astype(out_dtype)
    return (y, hT) if return_state else y
