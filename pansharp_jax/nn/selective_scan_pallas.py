"""The Mamba-1 selective scan as fused Pallas kernels (forward and reverse mode).

Same recurrence, shapes and options as :func:`pansharp_jax.nn.selective_scan.selective_scan`
(read its module docstring), including the softplus/bias step, the ``D`` skip term and the
``silu(z)`` gate, which are fused into the kernels so that each (batch, L, D) array crosses
memory once per pass.

**Forward kernel.** Grid (batch, D / block_d). Each program owns ``block_d`` channels of one
batch row and walks the L tokens in order (``lax.fori_loop``), keeping its (block_d, N) state
in registers. Per token it reads one row of u, delta, z (block_d values) and of B, C (N
values), and writes one row of y. Every ``chunk`` tokens it writes the state at the chunk
start: the only residual besides the inputs, (batch, ceil(L / chunk), D, N) in float32.
Token rows are loaded a few at a time (``_UNROLL``) before the serial updates, so the loads
of a group are independent of the recurrence and can be in flight together.

**Backward kernel** (a Pallas kernel too). Same grid; runs the chunks from the last to the
first. For each chunk it recomputes the chunk's states from the saved chunk-start state,
writing the state at the start of every group of ``_UNROLL`` tokens to a
(chunk / _UNROLL, block_d, N) work area in device memory (small; it stays in the L2 cache on
a GPU), then walks the groups in reverse: a group's few states are recomputed into
registers (the group is unrolled, so they are static values) and its tokens are visited
last to first, carrying the state cotangent and accumulating the cotangents of A, D and
delta_bias in registers. The cotangents of B and C (summed over the channels) are written per channel
block and summed over the blocks outside the kernel; those of A, D, delta_bias over batch
likewise. Wired with ``jax.custom_vjp``.

**Precision.** Inputs may be bfloat16 (or float32/float64); the recurrence, the state and
every accumulation are in ``promote_types(input dtype, float32)``; y is written in the dtype
of ``u``, the final state in the compute dtype, each cotangent in its input's dtype.

**Lowering.** On a GPU the kernels lower through Triton (``pallas_call`` with Triton compiler
params): block sizes are powers of two (the channel axis is padded to a multiple of
``block_d`` and N to a power of two outside the kernel when needed; padded channels and
states are inert: A = B = C = u = 0 keep their state at 0), loops have static trip counts
(the last, partial chunk is a separate static loop), no masks are needed. Elsewhere (the
CPU) ``interpret=True`` runs the same kernels in Pallas interpret mode: correct, not fast.
The GPU lowering has not been run in this repository's CI (no GPU there).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from pansharp_jax.errors import InputError

# token rows loaded together before their serial updates (independent loads in flight)
_UNROLL = 4
# programs wanted in the grid before channel blocks stop shrinking (an H100/H200 has 132 SMs)
_TARGET_PROGRAMS = 512


class _Cfg(NamedTuple):
    softplus: bool
    has_z: bool
    block_d: int
    chunk: int
    interpret: bool
    acc: str  # compute dtype name


def default_interpret() -> bool:
    """True when the default JAX backend is the CPU (Pallas then runs in interpret mode)."""
    return jax.default_backend() == "cpu"


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def pick_block_d(batch: int, d: int) -> int:
    """Channels per program: a power of two (8..64) that divides ``d`` when one >= 8 does,
    shrunk (down to 8) while the grid has fewer than ``_TARGET_PROGRAMS`` programs."""
    bd = 64
    while bd > 8 and d % bd:
        bd //= 2
    if d % bd:  # no power-of-two divisor >= 8: pad the channels
        bd = min(16, _pow2_at_least(d))
    while bd > 8 and batch * -(-d // bd) < _TARGET_PROGRAMS:
        bd //= 2
    return bd


def _softplus(x):
    # written out (log1p/exp/where lower on Triton); equals jax.nn.softplus to float rounding
    return jnp.where(x > 20.0, x, jnp.log1p(jnp.exp(jnp.minimum(x, 20.0))))


def _sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def _visit(count: int, group_fn, carry):
    """Run ``group_fn(offsets, carry)`` over offsets 0..count-1 in order (``offsets``: a list of
    int32 scalars), ``_UNROLL`` offsets per ``fori_loop`` iteration, then a static tail.
    ``count`` is a Python int, so every trip count is static."""
    n_groups = count // _UNROLL
    if n_groups:
        body = lambda g, c: group_fn([g * _UNROLL + j for j in range(_UNROLL)], c)  # noqa: E731
        carry = jax.lax.fori_loop(0, n_groups, body, carry)
    tail = [jnp.int32(k) for k in range(n_groups * _UNROLL, count)]
    return group_fn(tail, carry) if tail else carry


def _chunks(L: int, chunk: int):
    return L // chunk, L % chunk  # full chunks, length of the partial last chunk


# ------------------------------------------------------------------------ forward kernel


def _fwd_kernel(cfg: _Cfg, L: int, *refs):
    if cfg.has_z:
        u_ref, dl_ref, a_ref, b_ref, c_ref, dd_ref, bias_ref, h0_ref, z_ref, y_ref, ht_ref, hs_ref = refs
    else:
        u_ref, dl_ref, a_ref, b_ref, c_ref, dd_ref, bias_ref, h0_ref, y_ref, ht_ref, hs_ref = refs
        z_ref = None
    acc = jnp.dtype(cfg.acc)
    A = a_ref[...].astype(acc)  # (bd, N)
    Dv = dd_ref[...].astype(acc)  # (bd,)
    bias = bias_ref[...].astype(acc)

    def group(t0, ks, h):
        rows = []
        for k in ks:  # loads first: none depends on the state
            t = t0 + k
            rows.append((
                t,
                u_ref[t].astype(acc),
                dl_ref[t].astype(acc),
                b_ref[t].astype(acc),
                c_ref[t].astype(acc),
                None if z_ref is None else z_ref[t].astype(acc),
            ))  # fmt: skip
        for t, u, dl, Bt, Ct, z in rows:
            x = dl + bias
            dt = _softplus(x) if cfg.softplus else x
            h = jnp.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = jnp.sum(h * Ct[None, :], axis=1) + Dv * u
            if z is not None:
                y = y * (z * _sigmoid(z))
            y_ref[t] = y.astype(y_ref.dtype)
        return h

    def run_chunk(t0, c, count, h):
        hs_ref[c] = h
        return _visit(count, lambda ks, hh: group(t0, ks, hh), h)

    n_full, rem = _chunks(L, cfg.chunk)
    h = h0_ref[...].astype(acc)
    if n_full:
        h = jax.lax.fori_loop(0, n_full, lambda c, hh: run_chunk(c * cfg.chunk, c, cfg.chunk, hh), h)
    if rem:
        h = run_chunk(n_full * cfg.chunk, n_full, rem, h)
    ht_ref[...] = h


# ------------------------------------------------------------------------ backward kernel


def _bwd_kernel(cfg: _Cfg, L: int, *refs):
    refs = list(refs)
    u_ref, dl_ref, a_ref, b_ref, c_ref, dd_ref, bias_ref, hs_ref, gy_ref, ght_ref = refs[:10]
    z_ref = refs[10] if cfg.has_z else None
    outs = refs[11:] if cfg.has_z else refs[10:]
    if cfg.has_z:
        gu_ref, gdl_ref, gb_ref, gc_ref, ga_ref, gdd_ref, gbias_ref, gh0_ref, ws_ref, gz_ref = outs
    else:
        gu_ref, gdl_ref, gb_ref, gc_ref, ga_ref, gdd_ref, gbias_ref, gh0_ref, ws_ref = outs
        gz_ref = None
    acc = jnp.dtype(cfg.acc)
    A = a_ref[...].astype(acc)
    Dv = dd_ref[...].astype(acc)
    bias = bias_ref[...].astype(acc)

    def load(t):
        return (
            u_ref[t].astype(acc),
            dl_ref[t].astype(acc),
            b_ref[t].astype(acc),
            c_ref[t].astype(acc),
            None if z_ref is None else z_ref[t].astype(acc),
        )

    def step_dt(dl):
        x = dl + bias
        return x, (_softplus(x) if cfg.softplus else x)

    def advance(rows, h):
        """The states before each token of ``rows`` (a list) and after the last one."""
        states = []
        for u, dl, Bt, _, _ in rows:
            states.append(h)
            _, dt = step_dt(dl)
            h = jnp.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
        return states, h

    def recompute(t0, slot, ks, h):  # keep the state at the group start, advance over the group
        ws_ref[slot] = h
        return advance([load(t0 + k) for k in ks], h)[1]

    def reverse(t0, slot, ks, carry):  # the group's tokens (``ks`` ascending), last to first
        g, gA, gD, gbias = carry  # g: cotangent of the state after the token
        rows = [load(t0 + k) for k in ks]
        gys = [gy_ref[t0 + k].astype(acc) for k in ks]
        states, _ = advance(rows, ws_ref[slot])  # in registers: the group is unrolled
        for k, (u, dl, Bt, Ct, z), gy, h_prev in reversed(list(zip(ks, rows, gys, states))):
            t = t0 + k
            x, dt = step_dt(dl)
            a = jnp.exp(dt[:, None] * A)
            dtu = dt * u
            h = a * h_prev + dtu[:, None] * Bt[None, :]
            if z is not None:
                s = _sigmoid(z)
                yd = jnp.sum(h * Ct[None, :], axis=1) + Dv * u
                gz_ref[t] = (gy * yd * s * (1.0 + z * (1.0 - s))).astype(gz_ref.dtype)
                gy = gy * (z * s)
            gD = gD + gy * u
            gc_ref[t] = jnp.sum(gy[:, None] * h, axis=0)
            g = g + gy[:, None] * Ct[None, :]
            ga = g * h_prev * a  # cotangent of dt * A (through a = exp(dt * A))
            gdtu = jnp.sum(g * Bt[None, :], axis=1)
            gb_ref[t] = jnp.sum(g * dtu[:, None], axis=0)
            gdt = jnp.sum(ga * A, axis=1) + gdtu * u
            gA = gA + ga * dt[:, None]
            gx = gdt * _sigmoid(x) if cfg.softplus else gdt
            gbias = gbias + gx
            gu_ref[t] = (gdtu * dt + gy * Dv).astype(gu_ref.dtype)
            gdl_ref[t] = gx.astype(gdl_ref.dtype)
            g = g * a
        return g, gA, gD, gbias

    def barrier():
        # the work area is written and read back by different threads of the program
        if not cfg.interpret:
            from jax.experimental.pallas import triton as plgpu

            plgpu.debug_barrier()

    def run_chunk(t0, c, count, carry):
        # groups of _UNROLL tokens (slot g: tokens g * _UNROLL ...) and a shorter tail group
        n_groups, tail = count // _UNROLL, list(range(count // _UNROLL * _UNROLL, count))
        group = lambda g: [g * _UNROLL + j for j in range(_UNROLL)]  # noqa: E731
        h = hs_ref[c].astype(acc)
        if n_groups:
            h = jax.lax.fori_loop(0, n_groups, lambda g, hh: recompute(t0, g, group(g), hh), h)
        if tail:
            recompute(t0, n_groups, tail, h)
        barrier()
        if tail:
            carry = reverse(t0, n_groups, tail, carry)
        if n_groups:
            back = lambda i, cc: reverse(t0, n_groups - 1 - i, group(n_groups - 1 - i), cc)  # noqa: E731
            carry = jax.lax.fori_loop(0, n_groups, back, carry)
        barrier()  # before the next chunk overwrites the work area
        return carry

    n_full, rem = _chunks(L, cfg.chunk)
    g = ght_ref[...].astype(acc)
    carry = (g, jnp.zeros_like(A), jnp.zeros_like(Dv), jnp.zeros_like(Dv))
    if rem:
        carry = run_chunk(n_full * cfg.chunk, n_full, rem, carry)
    if n_full:

        def chunk_body(i, cc):
            c = n_full - 1 - i
            return run_chunk(c * cfg.chunk, c, cfg.chunk, cc)

        carry = jax.lax.fori_loop(0, n_full, chunk_body, carry)
    g, gA, gD, gbias = carry
    gh0_ref[...] = g
    ga_ref[...] = gA
    gdd_ref[...] = gD
    gbias_ref[...] = gbias


# ------------------------------------------------------------------------ pallas_call wrappers


def _compiler_params(cfg: _Cfg, n: int):
    if cfg.interpret:
        return None
    from jax.experimental.pallas import triton as plgpu

    warps = max(1, min(4, cfg.block_d * n // 256))
    return plgpu.CompilerParams(num_warps=warps, num_stages=1)


def _specs(b, L, d, n, bd):
    row = pl.BlockSpec((None, L, bd), lambda i, j: (i, 0, j))  # (b, L, D) arrays
    tok = pl.BlockSpec((None, L, n), lambda i, j: (i, 0, 0))  # (b, L, N) arrays
    dn = pl.BlockSpec((bd, n), lambda i, j: (j, 0))  # A
    vec = pl.BlockSpec((bd,), lambda i, j: (j,))  # D, delta_bias
    bdn = pl.BlockSpec((None, bd, n), lambda i, j: (i, j, 0))  # (b, D, N) states
    return row, tok, dn, vec, bdn


def _fwd_call(cfg: _Cfg, u, delta, A, B, C, Dv, bias, z, h0):
    b, L, d = u.shape
    n = A.shape[1]
    bd = cfg.block_d
    acc = jnp.dtype(cfg.acc)
    n_chunks = -(-L // cfg.chunk)
    row, tok, dn, vec, bdn = _specs(b, L, d, n, bd)
    in_specs = [row, row, dn, tok, tok, vec, vec, bdn] + ([row] if cfg.has_z else [])
    args = [u, delta, A, B, C, Dv, bias, h0] + ([z] if cfg.has_z else [])
    out_shape = (
        jax.ShapeDtypeStruct((b, L, d), u.dtype),
        jax.ShapeDtypeStruct((b, d, n), acc),
        jax.ShapeDtypeStruct((b, n_chunks, d, n), acc),
    )
    out_specs = (row, bdn, pl.BlockSpec((None, n_chunks, bd, n), lambda i, j: (i, 0, j, 0)))
    return pl.pallas_call(
        functools.partial(_fwd_kernel, cfg, L),
        out_shape=out_shape,
        grid=(b, d // bd),
        in_specs=in_specs,
        out_specs=out_specs,
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, n),
        name="selective_scan_fwd",
    )(*args)


def _bwd_call(cfg: _Cfg, u, delta, A, B, C, Dv, bias, z, hs, gy, ght):
    b, L, d = u.shape
    n = A.shape[1]
    bd = cfg.block_d
    nb = d // bd
    acc = jnp.dtype(cfg.acc)
    n_chunks = hs.shape[1]
    work = -(-cfg.chunk // _UNROLL)  # work-area slots: one state per group of tokens
    row, tok, dn, vec, bdn = _specs(b, L, d, n, bd)
    hs_spec = pl.BlockSpec((None, n_chunks, bd, n), lambda i, j: (i, 0, j, 0))
    in_specs = [row, row, dn, tok, tok, vec, vec, hs_spec, row, bdn] + ([row] if cfg.has_z else [])
    args = [u, delta, A, B, C, Dv, bias, hs, gy, ght] + ([z] if cfg.has_z else [])
    part_tok = pl.BlockSpec((None, None, L, n), lambda i, j: (i, j, 0, 0))  # per channel block
    bvec = pl.BlockSpec((None, bd), lambda i, j: (i, j))
    out_shape = [
        jax.ShapeDtypeStruct((b, L, d), u.dtype),  # gu
        jax.ShapeDtypeStruct((b, L, d), delta.dtype),  # gdelta
        jax.ShapeDtypeStruct((b, nb, L, n), acc),  # gB per channel block
        jax.ShapeDtypeStruct((b, nb, L, n), acc),  # gC per channel block
        jax.ShapeDtypeStruct((b, d, n), acc),  # gA per batch row
        jax.ShapeDtypeStruct((b, d), acc),  # gD per batch row
        jax.ShapeDtypeStruct((b, d), acc),  # gdelta_bias per batch row
        jax.ShapeDtypeStruct((b, d, n), acc),  # gh0
        jax.ShapeDtypeStruct((b, work, d, n), acc),  # work area: group-start states of one chunk
    ]
    out_specs = [row, row, part_tok, part_tok, bdn, bvec, bvec, bdn,
                 pl.BlockSpec((None, work, bd, n), lambda i, j: (i, 0, j, 0))]  # fmt: skip
    if cfg.has_z:
        out_shape.append(jax.ShapeDtypeStruct((b, L, d), z.dtype))
        out_specs.append(row)
    return pl.pallas_call(
        functools.partial(_bwd_kernel, cfg, L),
        out_shape=tuple(out_shape),
        grid=(b, nb),
        in_specs=in_specs,
        out_specs=tuple(out_specs),
        interpret=cfg.interpret,
        compiler_params=_compiler_params(cfg, n),
        name="selective_scan_bwd",
    )(*args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _core(cfg: _Cfg, u, delta, A, B, C, Dv, bias, z, h0):
    y, hT, _ = _fwd_call(cfg, u, delta, A, B, C, Dv, bias, z, h0)
    return y, hT


def _core_fwd(cfg, u, delta, A, B, C, Dv, bias, z, h0):
    y, hT, hs = _fwd_call(cfg, u, delta, A, B, C, Dv, bias, z, h0)
    return (y, hT), (u, delta, A, B, C, Dv, bias, z, hs)


def _core_bwd(cfg, res, cts):
    u, delta, A, B, C, Dv, bias, z, hs = res  # h0 is in the compute dtype, as hs
    gy, ght = cts
    outs = _bwd_call(cfg, u, delta, A, B, C, Dv, bias, z, hs, gy.astype(u.dtype), ght.astype(hs.dtype))
    gu, gdl, gB, gC, gA, gD, gbias, gh0 = outs[:8]
    gz = outs[9] if cfg.has_z else None
    return (
        gu,
        gdl,
        jnp.sum(gA, axis=0).astype(A.dtype),
        jnp.sum(gB, axis=1).astype(B.dtype),
        jnp.sum(gC, axis=1).astype(C.dtype),
        jnp.sum(gD, axis=0).astype(Dv.dtype),
        jnp.sum(gbias, axis=0).astype(bias.dtype),
        gz,
        gh0,
    )


_core.defvjp(_core_fwd, _core_bwd)


def selective_scan_pallas(
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
    chunk: int = 128,
    block_d: int | None = None,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The selective scan through the fused Pallas kernels (inputs already validated).

    Shapes as in :func:`~pansharp_jax.nn.selective_scan.selective_scan`: u, delta, z
    (batch, L, D), L >= 1; A (D, N); B, C (batch, L, N); D, delta_bias (D,); h0 (batch, D, N).
    ``chunk``: tokens between the states saved for reverse mode (clamped to L; memory of the
    residual ~ batch * L / chunk * D * N floats). ``block_d``: channels per program, a power of
    two (default :func:`pick_block_d`). ``interpret``: Pallas interpret mode (default: on the
    CPU). Returns y (batch, L, D) in ``u``'s dtype and the final state (batch, D, N) in the
    compute dtype (float32, or float64 for float64 inputs); differentiable in every array.
    """
    b, L, d = u.shape
    n = A.shape[1]
    acc = jnp.promote_types(jnp.result_type(u, delta, A, B, C), jnp.float32)
    bd = pick_block_d(b, d) if block_d is None else int(block_d)
    if bd < 1 or bd & (bd - 1):
        raise InputError(f"selective_scan_pallas: block_d must be a power of two, got {block_d!r}")
    cfg = _Cfg(
        softplus=bool(delta_softplus),
        has_z=z is not None,
        block_d=bd,
        chunk=max(1, min(int(chunk), L)),
        interpret=default_interpret() if interpret is None else bool(interpret),
        acc=jnp.dtype(acc).name,
    )
    Dv = jnp.zeros((d,), acc) if D is None else D
    bias = jnp.zeros((d,), acc) if delta_bias is None else delta_bias
    h = jnp.zeros((b, d, n), acc) if h0 is None else h0.astype(acc)
    dp, np_ = -(-d // bd) * bd - d, _pow2_at_least(n) - n
    if dp or np_:  # inert padding (see the module docstring), sliced off below
        pad = lambda x, widths: jnp.pad(x, widths) if x is not None else None  # noqa: E731
        row = [(0, 0), (0, 0), (0, dp)]
        u, delta, z = pad(u, row), pad(delta, row), pad(z, row)
        A, B, C = pad(A, [(0, dp), (0, np_)]), pad(B, [(0, 0), (0, 0), (0, np_)]), pad(C, [(0, 0), (0, 0), (0, np_)])
        Dv, bias, h = pad(Dv, [(0, dp)]), pad(bias, [(0, dp)]), pad(h, [(0, 0), (0, dp), (0, np_)])
    y, hT = _core(cfg, u, delta, A, B, C, Dv, bias, z, h)
    if dp or np_:
        y, hT = y[:, :, :d], hT[:, :d, :n]
    return y, hT


def roofline_bytes(
    batch: int, L: int, d: int, n: int, itemsize: int = 4, backward: bool = False, gate: bool = True
) -> int:
    """Bytes a fused scan must move through device memory: forward reads u, delta (and z when
    ``gate``), B, C and writes y; reverse mode additionally reads them again with the cotangent
    of y and writes the cotangents of u, delta (z), B and C. Small (D, N) / (D,) terms ignored."""
    rows = 3 if gate else 2  # u, delta, z
    fwd = batch * L * ((rows + 1) * d + 2 * n)
    bwd = batch * L * ((rows + 1) * d + 2 * n) + batch * L * (rows * d + 2 * n)
    return itemsize * (fwd + (bwd if backward else 0))


__all__ = ["selective_scan_pallas", "pick_block_d", "default_interpret", "roofline_bytes"]
