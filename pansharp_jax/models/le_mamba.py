"""LE-Mamba: a multi-scale vision-Mamba U-Net with local-enhanced blocks and SSM state sharing.

Cao, Wu, Deng, Zhong, "A Novel State Space Model with Local Enhancement and State Sharing for
Image Fusion", ACM MM 2024 (arXiv:2404.09293). The facts below come from the paper and the
authors' code (``model/LEMamba.py``, ``model/module/vmamba_module_v3.py``,
``configs/LEMamba_config.yaml``); this is an independent Flax implementation of them.

Contract (registry): ``module.apply({'params': p}, lrms, pan, lms, train=False) -> hrms``,
NHWC float32 on [0, 1]. ``pan`` is the guide: the PAN (``guide_bands = 1``) for
pan-sharpening or the HR-MSI (e.g. RGB, ``guide_bands = 3``) for MHIF; ``lms`` is the
upsampled low-resolution MS/HSI. ``lrms`` is not used by the network (the official network
also sees only ``lms`` and the guide). Output = network(lms, guide) + lms, not clipped.

Structure (C = bands, w = width, levels l = 0 (full size) .. n-1)::

    x = conv3x3(lms) -> w
    encoder level l: blocks_l x LEBlock, then conv2x2/2 (chan -> chan * up_l)
    middle: LEBlock x middle_blocks
    decoder level l (deepest first): conv1x1 (chan -> chan / up_l, no bias), bilinear x2,
        concat [x, enc_l * s_l] (s_l per-channel, zero-init), Dense(2 chan -> chan),
        blocks_l x LEBlock
    out = conv3x3(x) -> C, + lms

**LEBlock** (the paper's LEVM block; the authors' ``MambaInjectionBlock``; not their
NAFNet-style class that is also named ``LEVMBlock``):

1. guide injection: the guide resized bilinearly (align_corners) to the level size ->
   conv1x1 -> depthwise conv3x3 -> added to the features;
2. local enhancement (levels with a local d_state and conv): the map is cut into
   ``window x window`` windows, a VSS block (below; expand 2, gated MLP ratio 1) runs on
   each window as its own small image, and ``x = x + gamma * local(x)`` with ``gamma`` a
   learned per-channel scale (trunc-normal std 0.02 init);
3. global VSS block over the whole map (expand = the level's ``ssm_ratio``, gated MLP
   ratio 4), which also returns its final SSM state for state sharing.

**VSS block**: ``x + SS2D(LN(x))``, then ``x + gMLP(LN(x))`` (LN eps 1e-6; gMLP:
Dense(2h) -> a * GELU(g) -> Dense); each residual branch has stochastic depth (drop path,
rate rising linearly over the blocks to ``drop_path``). **SS2D**: Dense(2D, no bias) -> x, z;
``x -> LayerNorm -> depthwise conv k x k -> SiLU``; 4-direction cross scan
(:mod:`pansharp_jax.nn.scan2d`), a selective scan per direction with its own x-proj,
dt-proj (rank ceil(C/16)), dt bias, A = -exp(A_log), D; cross merge (sum) -> LayerNorm ->
``* SiLU(z)`` -> Dense(C, no bias). Scans run through
:func:`pansharp_jax.nn.selective_scan.selective_scan`.

**State sharing** (the authors' code; the paper's equation was not available to us): every
global SS2D returns its final state ``S`` (b, K=4, D, N). A block that takes a previous
state projects it per direction, ``S'[k] = W1[k]^T S_prev[k]`` (D_prev -> D), and
``state_share`` chooses how ``S'`` enters its own scan:

* ``'input'`` (default, as the official code): ``u[k, l] += r[k] * (S'[k] @ g[k, l])`` with
  ``g = Wg[k]^T u[k, l]`` an input-dependent read-out gate (N per token) and ``r`` a learned
  per-(direction, channel) ratio. The scan's input ``u`` (not dt, B, C, which are computed
  from the un-updated input) receives the previous state, read out at every token.
* ``'h0'``: ``h0[k] = r[k] * S'[k]``: the projected, scaled previous state is the next
  scan's initial state (no gate).
* ``'none'``: no sharing (ablation).

Which blocks share (official defaults): inside an encoder level and inside the middle
stage, block i > 0 takes the state of block i-1 (the first block of a level takes none);
every decoder block takes the final state of the last block of the previous (deeper)
stage, plus (``share_skip_state``) the encoder state of the same level: projected by its
own ``W2`` in the first block of the level, added unprojected in the others. With
``state_share='input'`` the gradient flows through the shared states across blocks.

Sizes (the authors' yaml; per-level lists, finest level first; d_state/conv pairs are
(local, global), None = no local branch):

=====  ======  ===========  =======  ==========  ======  ==================================  ==========
preset  width  enc / dec     middle  chan up     expand  local d_state (enc / dec)           drop path
=====  ======  ===========  =======  ==========  ======  ==================================  ==========
tiny      32   2,1,1 / same       1  1,1,1       2,2,1   16,16,- / 16,16,-  (global 32)       0.1
small     32   2,2,2 / same       1  1,2,2       3,2,2   32,32,- / -,32,-   (global 32)       0.2
base      32   4,3,2 / same       1  1,1,1       2,2,1   16,16,- / 16,16,-  (global 32)       0.2
=====  ======  ===========  =======  ==========  ======  ==================================  ==========

Windows 8, 8, - ; local conv 7, global conv 11 (small: no local branch in the full-size
decoder level, as the yaml lists its conv as null). Parameter counts (this module equals
the official PyTorch module's ``sum(p.numel())`` exactly; the paper gives no counts):

=====  ==========  ==========  =====================
preset   C = 8       C = 4     C = 31, guide 3 (MHIF)
=====  ==========  ==========  =====================
tiny      743,464     741,156      757,311
small   2,574,344   2,572,036    2,588,895
base    1,650,152   1,647,844    1,664,639
=====  ==========  ==========  =====================

("small" is larger than "base": it widens the deeper levels.) The default preset here is
**small**; the authors' yaml uncomments "tiny" for WV3.

Any image size. The network needs H, W multiples of ``2**levels`` and of
``window * 2**l`` at every level that has windows (16 for the presets). Inputs are padded at
the bottom/right (reflect, or edge when the pad is not smaller than the image) up to that
multiple, and the output is cropped back, so the same params run on 64 x 64 patches and
on whole scenes (no tiles, no seams; the authors tile large images instead).

Memory on large inputs. A selective scan over (batch, L) tokens with D channels and N
states materialises (batch, L, D, N) arrays (associative/sequential methods). The module
keeps each scan call under ``scan_budget`` elements: window batches are scanned in groups
(``lax.map``), and a global scan whose single image already exceeds the budget runs the
``'chunked'`` method (chunks of ``chunk`` tokens, only (batch, chunk, D, N) alive; ``remat``
additionally checkpoints each chunk for training). The four SS2D directions run as one scan
``vmap``-ped over the directions (``scan_directions='batched'``: one loop per layer to
compile; the reversed directions scan flipped copies of the tokens, and a vmapped scan call
gets a quarter of ``scan_budget``), or one after the other (a ``lax.scan`` over directions,
``'serial'``, which ``'auto'`` picks once a map has 2**23 elements per direction): batched,
all four directions' activations are alive together.

**Scan method and training memory.** ``scan_method='auto'`` (the config default) builds the
module with ``'sequential'`` on CPU and ``'chunked'`` + ``remat`` on accelerators. Both keep
only the scan inputs (resp. one state per chunk) for the backward pass; ``'associative'``
keeps (b, L, D, N) arrays per direction (13.4 GiB of training temporaries per 64 x 64 sample
of ``small``). Planned temporaries of the trainer's step (L1, Adam; 64 x 64, 8 bands;
``benchmarks/train_memory.py``, XLA:CPU with the trainer's low-memory scheduler):

====================================  =====  ========  ============  =================
preset ``small``, directions 'auto'   batch  temp GiB  GiB / sample  compile s
====================================  =====  ========  ============  =================
'associative' (the former default)        1      13.4          13.4  206
'auto' = 'sequential' on CPU              1     0.660         0.660  45 (65 CPU s)
'auto' = 'sequential' on CPU              2     1.317         0.659  44
'auto' = 'sequential' on CPU             32     14.22         0.444  47 (67 CPU s)
====================================  =====  ========  ============  =================

(idle 2-core CPU; the compile uses both cores, hence CPU s above wall s.) Before the four
directions were one vmapped scan (four unrolled branches, each its own loop and hand-written
reverse mode), batch 32 planned 13.84 GiB and compiled in 67 s (94 CPU s) on the same idle
machine, batch 1 0.441 GiB: the vmapped form compiles a quarter of the scan code and costs
3 % more memory at batch 32 (50 % at batch 1, where XLA's schedule differs). The blocks differ
(state sharing, skip projections, drop-path rates), so they are not a ``nn.scan`` of identical
blocks as they stand; each block draws its two drop-path masks in one random call.

Choices where the records leave things open (all configurable):

* ``state_share='input'`` follows the code; ``'h0'`` is the initial-state reading.
* Initialisation of the state-sharing weights: the official code draws ``W1``, ``Wg`` and
  ``r`` from N(0, 1); with ``state_init='fan_in'`` (default) ``W1`` and ``Wg`` are N(0, 1/fan_in)
  (D_prev, resp. D) so the injected term starts at the scale of the input, and ``r`` stays
  N(0, 1). ``state_init='official'`` restores N(0, 1) everywhere.
* Other initialisers follow the official ``_init_weights``: convs Kaiming-normal (fan_out,
  gain sqrt 2), Dense trunc-normal std 0.02, zero biases; x-proj U(+-1/sqrt(D)); dt-proj
  U(+-rank^-1/2); dt bias = softplus^-1 of a log-uniform step in [1e-3, 0.1]; A_log =
  log(1..N); D = 1; gamma trunc-normal 0.02; skip scales 0.
* The 4 scan directions are ordered (row, row reversed, column, column reversed)
  (:func:`~pansharp_jax.nn.scan2d.cross_scan`); VMamba orders them (row, column, row
  reversed, column reversed): the same set, directions just re-indexed.
* Optional official paths that are off by default are not implemented: cyclic window
  shift, local-to-global state, absolute position embedding / RoPE, the NAF blocks.
* The guide is resized once per level (the official code resizes it in every block, to the
  same result).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pansharp_jax.errors import InputError
from pansharp_jax.models.registry import ModelEntry
from pansharp_jax.nn.scan2d import (
    DIRECTION_MODES,
    cross_merge,
    cross_scan,
    direction_transforms,
    use_serial_directions,
    window_merge,
    window_partition,
)
from pansharp_jax.nn.selective_scan import resolve_training_scan, selective_scan, seq_scan_core

K_DIRECTIONS = 4

# Per-level lists, finest (full-size) level first. (local, global) pairs; None = no local branch.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        width=32,
        enc_blocks=(2, 1, 1),
        dec_blocks=(2, 1, 1),
        middle_blocks=1,
        chan_upscale=(1, 1, 1),
        ssm_ratios=(2, 2, 1),
        windows=(8, 8, None),
        enc_d_states=((16, 32), (16, 32), (None, 32)),
        dec_d_states=((16, 32), (16, 32), (None, 32)),
        enc_convs=((7, 11), (7, 11), (None, 11)),
        dec_convs=((7, 11), (7, 11), (None, 11)),
        drop_path=0.1,
    ),
    "small": dict(
        width=32,
        enc_blocks=(2, 2, 2),
        dec_blocks=(2, 2, 2),
        middle_blocks=1,
        chan_upscale=(1, 2, 2),
        ssm_ratios=(3, 2, 2),
        windows=(8, 8, None),
        enc_d_states=((32, 32), (32, 32), (None, 32)),
        dec_d_states=((32, 32), (32, 32), (None, 32)),
        enc_convs=((7, 11), (7, 11), (None, 11)),
        dec_convs=((None, 11), (7, 11), (None, 11)),
        drop_path=0.2,
    ),
    "base": dict(
        width=32,
        enc_blocks=(4, 3, 2),
        dec_blocks=(4, 3, 2),
        middle_blocks=1,
        chan_upscale=(1, 1, 1),
        ssm_ratios=(2, 2, 1),
        windows=(8, 8, None),
        enc_d_states=((16, 32), (16, 32), (None, 32)),
        dec_d_states=((16, 32), (16, 32), (None, 32)),
        enc_convs=((7, 11), (7, 11), (None, 11)),
        dec_convs=((7, 11), (7, 11), (None, 11)),
        drop_path=0.2,
    ),
}

STATE_SHARE_MODES = ("input", "h0", "none")
SCAN_METHODS = ("auto", "sequential", "associative", "chunked", "loop")


# ---------------------------------------------------------------------------- initialisers

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming normal, fan_out
_dense_init = nn.initializers.truncated_normal(stddev=0.02)


def _uniform(bound: float) -> Any:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _normal(std: float) -> Any:
    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def _dt_bias_init(dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> Any:
    """softplus^-1 of a log-uniform step in [dt_min, dt_max] (Mamba's dt initialisation)."""

    def init(key, shape, dtype=jnp.float32):
        u = jax.random.uniform(key, shape, jnp.float32)
        dt = jnp.maximum(jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)), floor)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)

    return init


def _a_log_init(key, shape, dtype=jnp.float32):  # (K, D, N): log(1..N), S4D-real
    del key
    return jnp.broadcast_to(jnp.log(jnp.arange(1, shape[-1] + 1, dtype=jnp.float32)), shape).astype(dtype)


# ---------------------------------------------------------------------------- resizing


def _lerp_indices(pos: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.clip(pos, 0.0, n_in - 1)
    i0 = np.floor(pos).astype(np.int32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _lerp(x: jax.Array, axis: int, i0: np.ndarray, i1: np.ndarray, f: np.ndarray) -> jax.Array:
    # A contraction with the dense (n_out, n_in) interpolation matrix (two non-zeros per row)
    # rather than two ``jnp.take`` gathers: the transpose of a gather is a scatter-add, which
    # XLA runs very slowly on CPU; the transpose of this contraction is another small matmul.
    m = np.zeros((len(f), x.shape[axis]), np.float32)
    rows = np.arange(len(f))
    np.add.at(m, (rows, i0), 1.0 - f)
    np.add.at(m, (rows, i1), f)
    y = jnp.tensordot(jnp.asarray(m, x.dtype), x, axes=[[1], [axis]])  # interpolated axis first
    return jnp.moveaxis(y, 0, axis)


def resize_align_corners(x: jax.Array, height: int, width: int) -> jax.Array:
    """Bilinear resize of NHWC ``x`` with corner pixels aligned (torch ``align_corners=True``)."""
    for axis, n_out in ((1, height), (2, width)):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        pos = np.zeros(n_out) if n_out == 1 else np.arange(n_out) * ((n_in - 1) / (n_out - 1))
        x = _lerp(x, axis, *_lerp_indices(pos, n_in))
    return x


def upsample2x(x: jax.Array) -> jax.Array:
    """Bilinear x2 upsampling of NHWC ``x`` with half-pixel centres (torch ``nn.Upsample``, align_corners=False)."""
    for axis in (1, 2):
        n_in = x.shape[axis]
        pos = np.maximum((np.arange(2 * n_in) + 0.5) / 2.0 - 0.5, 0.0)
        x = _lerp(x, axis, *_lerp_indices(pos, n_in))
    return x


# ---------------------------------------------------------------------------- scan dispatch


def _largest_divisor_at_most(n: int, cap: int) -> int:
    cap = max(1, min(n, cap))
    for g in range(cap, 0, -1):
        if n % g == 0:
            return g
    return 1


def loop_scan(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    Ds: jax.Array,
    delta_bias: jax.Array,
    h0: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The selective scan as one ``lax.scan`` over tokens that discretises inside the step.

    Shapes as :func:`~pansharp_jax.nn.selective_scan.selective_scan` (u, delta (b, L, D); A (D, N);
    B, C (b, L, N); Ds, delta_bias (D,); h0 (b, D, N)), with ``D`` and ``delta_bias`` given and
    softplus on, first token to last (reversed directions get flipped tokens).
    Only the (b, D, N) state is alive in the forward pass (nothing of size L x N is built): the
    fastest form on CPU (about 10x the chunked associative scan at L = 1e5) and the leanest.
    """
    # the hand-written reverse mode of the sequential scan (stores only the (b, L, .) inputs and
    # recomputes the states in the backward pass; JAX's own would keep several (b, L, D, N) arrays)
    y, hT = seq_scan_core(jax.nn.softplus(delta + delta_bias), u, A, B, C, h0, False)
    return y + u * Ds, hT


def resolve_large_method(large_method: str) -> str:
    """``'auto'`` -> ``'loop'`` on CPU, ``'chunked'`` on accelerators; otherwise unchanged."""
    if large_method == "auto":
        return "loop" if jax.default_backend() == "cpu" else "chunked"
    return large_method


resolve_auto_scan = resolve_training_scan  # ``scan_method='auto'`` (nn.selective_scan.resolve_training_scan)


def pick_scan_method(method: str, b: int, L: int, d: int, n: int, *, chunk: int, budget: int, large_method: str) -> str:
    """The method a (b, L, D, N) scan call runs: ``method`` unless the (b, L or chunk, D, N)
    arrays it builds exceed ``budget`` elements (0 = no limit), then ``large_method``."""
    if not budget or method in ("loop", "sequential"):  # both keep only (b, D, N) states alive
        return method
    span = min(chunk, L) if method == "chunked" else L
    return method if b * span * d * n <= budget else resolve_large_method(large_method)


def scan_1d(
    u: jax.Array,
    delta: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    Ds: jax.Array,
    delta_bias: jax.Array,
    h0: jax.Array,
    *,
    method: str,
    chunk: int,
    budget: int,
    remat: bool,
) -> tuple[jax.Array, jax.Array]:
    """One scan direction (shapes as :func:`loop_scan`), first token to last, under a budget.

    ``method``: ``'sequential'``, ``'associative'``, ``'chunked'``
    (:func:`~pansharp_jax.nn.selective_scan.selective_scan`) or ``'loop'`` (:func:`loop_scan`). When the arrays the method keeps alive
    (``'loop'``: the (D, N) state per row; ``'chunked'``: (chunk, D, N) per row; else (L, D, N))
    exceed ``budget`` elements for the whole batch (e.g. thousands of windows), the rows are
    scanned in the largest groups that fit, one group after the other (``lax.map``).
    """
    b, L, d = u.shape
    n = A.shape[-1]
    # loop and sequential keep one (D, N) state per row alive (sequential: see _seq_core)
    live = {"loop": 1, "sequential": 1, "chunked": min(chunk, L)}.get(method, L) * d * n
    rows = _largest_divisor_at_most(b, budget // live) if budget else b

    def run(u, delta, B, C, h0):
        if method == "loop":
            return loop_scan(u, delta, A, B, C, Ds, delta_bias, h0)
        return selective_scan(
            u, delta, A, B, C, Ds, None, delta_bias, True, h0=h0, method=method, chunk=chunk, return_state=True, remat=remat
        )

    if rows == b:
        return run(u, delta, B, C, h0)
    group = (lambda args: run(*args)) if not remat else jax.checkpoint(lambda args: run(*args))
    split = lambda x: x.reshape((b // rows, rows) + x.shape[1:])  # noqa: E731
    y, hT = jax.lax.map(group, tuple(split(x) for x in (u, delta, B, C, h0)))
    return y.reshape((b,) + y.shape[2:]), hT.reshape((b,) + hT.shape[2:])


# ---------------------------------------------------------------------------- layers


class DepthwiseConv(nn.Module):
    """k x k depthwise conv (zero padding, stride 1, bias); params as ``nn.Conv``: kernel (k, k, 1, C), bias (C,).

    ``impl``: ``'shift'`` sums k*k shifted copies times per-channel weights (XLA fuses it; on
    CPU 8-30x faster than XLA's grouped convolution forward and 3-9x in reverse mode),
    ``'conv'`` is ``lax.conv_general_dilated`` with ``feature_group_count = C`` (cuDNN on GPU),
    ``'auto'`` picks ``'shift'`` on CPU and ``'conv'`` elsewhere. All three are the same function.
    """

    kernel_size: int
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, c = self.kernel_size, x.shape[-1]
        w = self.param("kernel", _conv_init, (k, k, 1, c))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        p = (k - 1) // 2
        impl = self.impl if self.impl != "auto" else ("shift" if jax.default_backend() == "cpu" else "conv")
        if impl == "conv":
            y = jax.lax.conv_general_dilated(
                x, w, (1, 1), [(p, k - 1 - p)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
            )
            return y + bias
        return _shift_depthwise(x, w[:, :, 0, :], p) + bias


def _shift_correlate(x: jax.Array, w: jax.Array, lo: int) -> jax.Array:
    """sum_{i,j} xp[:, i:i+H, j:j+W] * w[i, j] with xp = x zero-padded by ``lo`` before and
    k - 1 - lo after (H and W); w (k, k, C)."""
    k = w.shape[0]
    b, h, wd, c = x.shape
    xp = jnp.pad(x, [(0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)])

    def kernel_row(i, y):  # the k taps of kernel row i
        rows = jax.lax.dynamic_slice_in_dim(xp, i, h, axis=1)
        wi = jax.lax.dynamic_index_in_dim(w, i, axis=0, keepdims=False)  # (k, C)
        for j in range(k):
            y = y + rows[:, :, j : j + wd] * wi[j]
        return y

    # a loop over kernel rows: its result is materialised once (an unrolled k*k-term sum gets
    # fused into, and recomputed by, every consumer, e.g. each of the 4 cross-scan directions)
    return jax.lax.fori_loop(0, k, kernel_row, jnp.zeros(x.shape, x.dtype))


# Hand-written reverse mode for the shift form: autodiff of the fori_loop stores one shifted
# (b, H, W + k - 1, C) copy of the input per kernel row (k copies per conv, e.g. 11 x the
# feature map for the global conv) and accumulates the input cotangent by dynamic-update-slice
# adds. The input cotangent is the same correlation of the output cotangent with the flipped
# kernel, and the kernel cotangent k*k per-channel reductions; only x is kept.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _shift_depthwise(x: jax.Array, w: jax.Array, lo: int) -> jax.Array:
    return _shift_correlate(x, w, lo)


def _shift_depthwise_fwd(x, w, lo):
    return _shift_correlate(x, w, lo), (x, w)


def _shift_depthwise_bwd(lo, res, gy):
    x, w = res
    k = w.shape[0]
    b, h, wd, c = x.shape
    gx = _shift_correlate(gy, w[::-1, ::-1], k - 1 - lo)
    xp = jnp.pad(x, [(0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)])

    def kernel_row(i, gw):
        rows = jax.lax.dynamic_slice_in_dim(xp, i, h, axis=1)
        gwi = jnp.stack([jnp.sum(rows[:, :, j : j + wd] * gy, axis=(0, 1, 2)) for j in range(k)])
        return jax.lax.dynamic_update_index_in_dim(gw, gwi, i, axis=0)

    gw = jax.lax.fori_loop(0, k, kernel_row, jnp.zeros_like(w))
    return gx, gw


_shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


def _drop_path_keep(module: nn.Module, branches: int, batch: int, rate: float, train: bool) -> jax.Array | None:
    """Stochastic-depth keep masks (branches, batch) for ``branches`` residual branches of a
    block, drawn in one random call (each call is a threefry hash XLA compiles separately);
    None when nothing is dropped (evaluation, or ``rate`` 0)."""
    if not train or rate <= 0.0:
        return None
    return jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, (branches, batch))


def _drop_path(x: jax.Array, keep: jax.Array | None, branch: int, rate: float) -> jax.Array:
    """Residual branch ``branch`` x (b, ...) of a block with whole samples zeroed where
    ``keep[branch]`` (b,) is False and the rest scaled by 1 / (1 - rate); x itself when
    ``keep`` is None."""
    if keep is None:
        return x
    return jnp.where(keep[branch].reshape((x.shape[0],) + (1,) * (x.ndim - 1)), x / (1.0 - rate), 0.0)


class SS2D(nn.Module):
    """VMamba's 2-D selective scan with LE-Mamba's state-sharing input (see module docstring)."""

    d_state: int
    expand: float
    conv: int
    share_prev: bool = False  # this block receives a previous state
    skip_proj: bool = False  # and projects the encoder skip state with its own W2
    state_share: str = "input"
    state_init: str = "fan_in"
    scan_method: str = "associative"
    chunk: int = 128
    scan_budget: int = 2**26
    remat: bool = False
    depthwise: str = "auto"
    large_scan: str = "auto"
    scan_directions: str = "auto"
    remat_blocks: bool = False  # with serial directions: recompute each direction in reverse mode

    @nn.compact
    def __call__(
        self, x: jax.Array, prev: jax.Array | None = None, skip: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        b, h, w, c = x.shape
        d = int(self.expand * c)
        n, k = self.d_state, K_DIRECTIONS
        rank = math.ceil(c / 16)
        xz = nn.Dense(2 * d, use_bias=False, kernel_init=_dense_init, name="in_proj")(x)
        x, z = jnp.split(xz, 2, axis=-1)
        x = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="conv_norm")(x)
        x = DepthwiseConv(self.conv, self.depthwise, name="conv")(x)
        x = jax.nn.silu(x)

        x_proj = self.param("x_proj", _uniform(1.0 / math.sqrt(d)), (k, d, rank + 2 * n))
        dt_proj = self.param("dt_proj", _uniform(rank**-0.5), (k, rank, d))
        dt_bias = self.param("dt_bias", _dt_bias_init(), (k, d))
        a_log = self.param("A_log", _a_log_init, (k, d, n))
        ds = self.param("D", nn.initializers.ones, (k, d))

        share = self.share_prev and self.state_share != "none"
        if share:
            if prev is None:
                raise ValueError("SS2D: this block shares states but got no previous state")
            d_prev = prev.shape[2]
            big = self.state_init == "official"
            w1 = self.param("state_proj", _normal(1.0 if big else d_prev**-0.5), (k, d_prev, d))
            s = jnp.einsum("bken,ked->bkdn", prev, w1)  # (b, K, D, N)
            if skip is not None:
                if self.skip_proj:
                    w2 = self.param("skip_proj", _normal(1.0 if big else skip.shape[2] ** -0.5), (k, skip.shape[2], d))
                    skip = jnp.einsum("bken,ked->bkdn", skip, w2)
                s = s + skip
            ratio = self.param("state_ratio", nn.initializers.normal(1.0), (k, d))
            if self.state_share == "input":
                wg = self.param("state_gate", _normal(1.0 if big else d**-0.5), (k, d, n))

        serial = use_serial_directions(self.scan_directions, b * h * w * d)
        # vmapped directions run K scans at once: each gets 1/K of the element budget
        budget = self.scan_budget if serial or not self.scan_budget else max(1, self.scan_budget // k)
        method = pick_scan_method(self.scan_method, b, h * w, d, n, chunk=self.chunk, budget=budget, large_method=self.large_scan)
        # per-direction arrays, leading axis K (the direction), in cross_scan order
        per_direction = [x_proj, dt_proj, dt_bias, -jnp.exp(a_log), ds]
        if share:
            per_direction += [jnp.moveaxis(s, 1, 0), ratio]  # (K, b, D, N), (K, D)
            if self.state_share == "input":
                per_direction.append(wg)

        def direction(u: jax.Array, p: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
            """One direction: u (b, L, D) tokens in the direction's order, scanned first to last."""
            xp, dtp, dtb, a_k, d_k = p[:5]
            dts, Bs, Cs = jnp.split(u @ xp, [rank, rank + n], axis=-1)
            h0 = jnp.zeros((b, d, n), u.dtype)
            if share and self.state_share == "input":
                # read the shared state out at every token with an input-dependent gate, add to u
                u = u + jnp.einsum("bdn,bln->bld", p[5], u @ p[7]) * p[6]
            elif share:  # 'h0'
                h0 = p[5] * p[6][:, None]
            return scan_1d(
                u, dts @ dtp, a_k, Bs, Cs, d_k, dtb, h0,
                method=method, chunk=self.chunk, budget=budget, remat=self.remat,
            )  # fmt: skip

        if serial:
            # one direction alive at a time (whole scenes): reorder, scan forward, add back in place
            to_fns, back_fns = direction_transforms(k, (h, w))
            tokens = x.reshape(b, h * w, d)

            def serial_step(acc, p):
                yk, hk = direction(jax.lax.switch(p[0], to_fns, tokens), list(p[1:]))
                return acc + jax.lax.switch(p[0], back_fns, yk), hk

            if self.remat_blocks:  # keep one direction's residuals, not all four
                serial_step = jax.checkpoint(serial_step)
            y, states = jax.lax.scan(serial_step, jnp.zeros_like(tokens), (jnp.arange(k), *per_direction))
            y, state = y.reshape(b, h, w, d), jnp.moveaxis(states, 0, 1)  # state (b, K, D, N)
        else:  # all four as one scan vmapped over the directions (one scan to compile, not four)
            seqs = jnp.moveaxis(cross_scan(x), 1, 0)  # (K, b, L, D), reversed directions flipped
            ys, states = jax.vmap(lambda u, *p: direction(u, list(p)))(seqs, *per_direction)
            y = cross_merge(jnp.moveaxis(ys, 0, 1), h, w).reshape(b, h, w, d)
            state = jnp.moveaxis(states, 0, 1)  # (b, K, D, N)
        y = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="out_norm")(y)
        y = y * jax.nn.silu(z)
        return nn.Dense(c, use_bias=False, kernel_init=_dense_init, name="out_proj")(y), state


class VSSBlock(nn.Module):
    """``x + SS2D(LN(x))`` then ``x + gMLP(LN(x))``, each branch with drop path."""

    d_state: int
    expand: float
    conv: int
    mlp_ratio: float
    drop_path: float = 0.0
    share_prev: bool = False
    skip_proj: bool = False
    scan: dict = None  # type: ignore[assignment]  # SS2D scan/state settings (hashable via FrozenDict)

    @nn.compact
    def __call__(self, x, prev=None, skip=None, train: bool = False):
        c = x.shape[-1]
        keep = _drop_path_keep(self, 2, x.shape[0], self.drop_path, train)  # (SS2D, MLP) branches
        y = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name="norm")(x)
        y, state = SS2D(
            self.d_state, self.expand, self.conv, self.share_prev, self.skip_proj, name="ssm", **dict(self.scan or {})
        )(y, prev, skip)
        x = x + _drop_path(y, keep, 0, self.drop_path)
        hidden = int(c * self.mlp_ratio)
        y = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, name="norm2")(x)
        y = nn.Dense(2 * hidden, kernel_init=_dense_init, name="fc1")(y)
        a, g = jnp.split(y, 2, axis=-1)
        y = nn.Dense(c, kernel_init=_dense_init, name="fc2")(a * jax.nn.gelu(g, approximate=False))
        return x + _drop_path(y, keep, 1, self.drop_path), state


class LEBlock(nn.Module):
    """The local-enhanced block (paper: LEVM; official code: MambaInjectionBlock)."""

    window: int | None
    local_d_state: int | None
    local_conv: int | None
    d_state: int
    conv: int
    expand: float
    drop_path: float = 0.0
    share_prev: bool = False
    skip_proj: bool = False
    local_expand: float = 2.0
    local_mlp_ratio: float = 1.0
    mlp_ratio: float = 4.0
    scan: dict = None  # type: ignore[assignment]

    @property
    def has_local(self) -> bool:
        return bool(self.window) and bool(self.local_d_state) and bool(self.local_conv)

    @nn.compact
    def __call__(self, x, guide, prev=None, skip=None, train: bool = False):
        b, h, w, c = x.shape
        g = nn.Conv(c, (1, 1), kernel_init=_conv_init, name="guide_conv1")(guide)
        g = DepthwiseConv(3, dict(self.scan or {}).get("depthwise", "auto"), name="guide_conv2")(g)
        x = x + g
        scan = dict(self.scan or {})
        # remat_blocks: the local and the global half are recomputed one at a time (train: arg 4)
        vss = nn.remat(VSSBlock, static_argnums=(4,)) if scan.get("remat_blocks") else VSSBlock
        if self.has_local:
            win = int(self.window)  # type: ignore[arg-type]
            windows = window_partition(x, win).reshape(-1, win, win, c)
            local_scan = {**scan, "state_share": "none"}
            y, _ = vss(
                self.local_d_state,  # type: ignore[arg-type]
                self.local_expand,
                self.local_conv,  # type: ignore[arg-type]
                self.local_mlp_ratio,
                self.drop_path,
                scan=local_scan,
                name="local",
            )(windows, None, None, train)
            y = window_merge(y.reshape(-1, win * win, c), win, h, w)
            gamma = self.param("gamma", nn.initializers.truncated_normal(0.02), (c,))
            x = x + y * gamma
        return vss(
            self.d_state,
            self.expand,
            self.conv,
            self.mlp_ratio,
            self.drop_path,
            self.share_prev,
            self.skip_proj,
            scan=scan,
            name="global",
        )(x, prev, skip, train)


class LEMamba(nn.Module):
    """LE-Mamba (see the module docstring). Per-level tuples are finest level first."""

    bands: int
    guide_bands: int = 1
    width: int = 32
    enc_blocks: tuple = (2, 2, 2)
    dec_blocks: tuple = (2, 2, 2)
    middle_blocks: int = 1
    chan_upscale: tuple = (1, 2, 2)
    ssm_ratios: tuple = (3, 2, 2)
    windows: tuple = (8, 8, None)
    enc_d_states: tuple = ((32, 32), (32, 32), (None, 32))
    dec_d_states: tuple = ((32, 32), (32, 32), (None, 32))
    enc_convs: tuple = ((7, 11), (7, 11), (None, 11))
    dec_convs: tuple = ((None, 11), (7, 11), (None, 11))
    drop_path: float = 0.2
    state_share: str = "input"
    share_skip_state: bool = True
    state_init: str = "fan_in"
    scan_method: str = "associative"
    chunk: int = 128
    scan_budget: int = 2**26
    remat: bool = False
    remat_blocks: bool = False
    depthwise: str = "auto"
    large_scan: str = "auto"
    scan_directions: str = "auto"

    @property
    def levels(self) -> int:
        return len(self.enc_blocks)

    @property
    def multiple(self) -> int:
        """H and W are padded to a multiple of this (2**levels and every window x 2**level)."""
        m = 2**self.levels
        for lvl, win in enumerate(self.windows):
            if win:
                m = math.lcm(m, int(win) * 2**lvl)
        return m

    def _scan_settings(self) -> dict:
        return dict(
            state_share=self.state_share,
            state_init=self.state_init,
            scan_method=self.scan_method,
            chunk=self.chunk,
            scan_budget=self.scan_budget,
            remat=self.remat,
            depthwise=self.depthwise,
            large_scan=self.large_scan,
            scan_directions=self.scan_directions,
            remat_blocks=self.remat_blocks,
        )

    @nn.compact
    def __call__(self, lrms: jax.Array, pan: jax.Array, lms: jax.Array, train: bool = False) -> jax.Array:
        del lrms  # the network sees the upsampled MS and the guide only
        if lms.ndim != 4 or pan.ndim != 4 or pan.shape[:3] != lms.shape[:3]:
            raise InputError(f"le_mamba: pan {pan.shape} and lms {lms.shape} must be NHWC of the same size")
        if pan.shape[-1] != self.guide_bands or lms.shape[-1] != self.bands:
            raise InputError(
                f"le_mamba: expects {self.bands} bands and a {self.guide_bands}-band guide, "
                f"got lms {lms.shape[-1]} and pan/guide {pan.shape[-1]}"
            )
        n_levels = self.levels
        share = self.state_share != "none"
        scan = self._scan_settings()
        depth = sum(self.enc_blocks) + self.middle_blocks + sum(self.dec_blocks)
        rates = list(np.linspace(0.0, self.drop_path, depth)) if depth > 1 else [self.drop_path] * depth
        rate = iter(float(r) for r in rates)

        b, H, W, _ = lms.shape
        m = self.multiple
        Hp, Wp = -(-H // m) * m, -(-W // m) * m

        def pad(x):
            if (Hp, Wp) == (H, W):
                return x
            mode = "reflect" if Hp - H < H and Wp - W < W else "edge"
            return jnp.pad(x, [(0, 0), (0, Hp - H), (0, Wp - W), (0, 0)], mode=mode)

        guide = pad(pan.astype(jnp.float32))
        guides = [resize_align_corners(guide, Hp >> lvl, Wp >> lvl) for lvl in range(n_levels + 1)]

        def block(lvl, d_states, convs, expand, i, name, share_prev=False, skip_proj=False):
            # remat_blocks: keep only each block's inputs for the backward pass, recompute the rest
            cls = nn.remat(LEBlock, static_argnums=(5,)) if self.remat_blocks else LEBlock  # 5: train
            return cls(
                window=self.windows[lvl] if lvl < n_levels else None,
                local_d_state=d_states[0],
                local_conv=convs[0],
                d_state=d_states[1],
                conv=convs[1],
                expand=expand,
                drop_path=next(rate),
                share_prev=share_prev,
                skip_proj=skip_proj,
                scan=scan,
                name=name,
            )

        x = nn.Conv(self.width, (3, 3), padding=[(1, 1)] * 2, kernel_init=_conv_init, name="intro")(pad(lms))
        chan = self.width
        skips, skip_states, state = [], [], None
        for lvl in range(n_levels):
            for i in range(self.enc_blocks[lvl]):
                sp = share and i > 0
                x, state = block(lvl, self.enc_d_states[lvl], self.enc_convs[lvl], self.ssm_ratios[lvl], i, f"enc{lvl}_{i}", sp)(
                    x, guides[lvl], state if sp else None, None, train
                )
            skips.append(x)
            skip_states.append(state)
            chan *= self.chan_upscale[lvl]
            x = nn.Conv(chan, (2, 2), strides=(2, 2), padding="VALID", kernel_init=_conv_init, name=f"down{lvl}")(x)

        for i in range(self.middle_blocks):
            sp = share and i > 0
            x, state = block(n_levels, self.enc_d_states[-1], self.enc_convs[-1], self.ssm_ratios[-1], i, f"mid_{i}", sp)(
                x, guides[n_levels], state if sp else None, None, train
            )

        for lvl in reversed(range(n_levels)):
            chan //= self.chan_upscale[lvl]
            x = nn.Conv(chan, (1, 1), use_bias=False, kernel_init=_conv_init, name=f"up{lvl}")(x)
            x = upsample2x(x)
            s = self.param(f"skip_scale{lvl}", nn.initializers.zeros, (chan,))
            x = nn.Dense(chan, kernel_init=_dense_init, name=f"merge{lvl}")(jnp.concatenate([x, skips[lvl] * s], -1))
            level_prev, new_state = state, state
            for i in range(self.dec_blocks[lvl]):
                skip_state = skip_states[lvl] if (share and self.share_skip_state) else None
                x, new_state = block(
                    lvl,
                    self.dec_d_states[lvl],
                    self.dec_convs[lvl],
                    self.ssm_ratios[lvl],
                    i,
                    f"dec{lvl}_{i}",
                    share,
                    share and self.share_skip_state and i == 0,
                )(x, guides[lvl], level_prev if share else None, skip_state, train)
            state = new_state

        x = nn.Conv(self.bands, (3, 3), padding=[(1, 1)] * 2, kernel_init=_conv_init, name="ending")(x)
        return x[:, :H, :W] + lms


# ---------------------------------------------------------------------------- config / registry


def le_mamba_config() -> ml_collections.ConfigDict:
    """Model config: a size preset plus overrides (0 / -1 / empty = the preset's value)."""
    return ml_collections.ConfigDict(
        {
            "name": "le_mamba",
            "bands": 8,
            "guide_bands": 1,  # 1 = PAN; e.g. 3 for an RGB HR-MSI guide (MHIF)
            "size": "small",  # 'tiny' | 'small' | 'base'
            "width": 0,  # 0 -> preset (32)
            "levels": 0,  # 0 -> preset (3): use the first `levels` levels of the preset
            "enc_blocks": (),  # () -> preset; per level, finest first
            "dec_blocks": (),
            "middle_blocks": -1,  # -1 -> preset (1)
            "window": 0,  # 0 -> preset (8) for every windowed level
            "d_state": 0,  # global SSM state size; 0 -> preset (32)
            "local_d_state": 0,  # 0 -> preset (16 tiny/base, 32 small)
            "conv": 0,  # global SS2D depthwise conv size; 0 -> preset (11)
            "local_conv": 0,  # local (windowed) SS2D conv size; 0 -> preset (7)
            "expand": 0.0,  # global SSM expand for every level; 0 -> preset's per-level ratios
            "drop_path": -1.0,  # -1 -> preset (0.1 tiny, 0.2 small/base)
            "state_share": "input",  # 'input' (official) | 'h0' | 'none'
            "share_skip_state": True,
            "state_init": "fan_in",  # 'fan_in' | 'official'
            "scan_method": "auto",  # 'auto' (CPU: sequential; else chunked + remat) | 'sequential' | 'associative' | 'chunked' | 'loop'
            "chunk": 128,
            "scan_budget": 2**26,  # elements of the (rows, K, L, D, N) arrays a scan call may build; 0 = no limit
            "large_scan": "auto",  # over the budget: 'loop' | 'chunked' | 'auto' (loop on CPU, chunked elsewhere)
            "remat": False,  # checkpoint each chunk of a 'chunked' scan (on for 'auto' off CPU)
            "remat_blocks": False,  # recompute each LE block in the backward pass (large training crops)
            "depthwise": "auto",  # depthwise conv: 'shift' | 'conv' | 'auto' (shift on CPU)
            "scan_directions": "auto",  # the 4 SS2D directions: 'serial' (lax.scan) | 'batched' | 'auto' (serial on big maps)
        }
    )


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    value = str(value)
    if value not in choices:
        raise InputError(f"model config 'le_mamba': {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def build_le_mamba(cfg: ml_collections.ConfigDict | dict) -> LEMamba:
    """The :class:`LEMamba` module described by a model config (see :func:`le_mamba_config`)."""
    get = cfg.get
    size = _check_choice("size", get("size", "small"), tuple(PRESETS))
    p = dict(PRESETS[size])
    levels = int(get("levels", 0) or 0) or len(p["enc_blocks"])
    if not 1 <= levels <= len(p["enc_blocks"]):
        raise InputError(f"model config 'le_mamba': levels must be 1..{len(p['enc_blocks'])}, got {levels}")
    per_level = ("enc_blocks", "dec_blocks", "chan_upscale", "ssm_ratios", "windows", "enc_d_states", "dec_d_states", "enc_convs", "dec_convs")
    for key in per_level:
        p[key] = tuple(p[key][:levels])
    for key in ("enc_blocks", "dec_blocks"):
        if get(key):
            v = tuple(int(n) for n in get(key))
            if len(v) != levels or min(v) < 1:
                raise InputError(f"model config 'le_mamba': {key} needs {levels} positive counts, got {tuple(get(key))}")
            p[key] = v
    if int(get("middle_blocks", -1)) >= 0:
        p["middle_blocks"] = int(get("middle_blocks"))
    if int(get("width", 0) or 0) > 0:
        p["width"] = int(get("width"))
    if int(get("window", 0) or 0) > 0:
        p["windows"] = tuple(int(get("window")) if w else None for w in p["windows"])
    d_state, local_d_state = int(get("d_state", 0) or 0), int(get("local_d_state", 0) or 0)
    for key in ("enc_d_states", "dec_d_states"):
        p[key] = tuple(((local_d_state or loc) if loc else None, d_state or glob) for loc, glob in p[key])
    conv, local_conv = int(get("conv", 0) or 0), int(get("local_conv", 0) or 0)
    for key in ("enc_convs", "dec_convs"):
        p[key] = tuple(((local_conv or loc) if loc else None, conv or glob) for loc, glob in p[key])
    if float(get("expand", 0.0) or 0.0) > 0:
        e = float(get("expand"))
        p["ssm_ratios"] = tuple(int(e) if float(e).is_integer() else e for _ in range(levels))
    if float(get("drop_path", -1.0)) >= 0:
        p["drop_path"] = float(get("drop_path"))
    bands, guide = int(get("bands", 8)), int(get("guide_bands", 1))
    if bands < 1 or guide < 1:
        raise InputError(f"model config 'le_mamba': bands and guide_bands must be >= 1, got {bands}, {guide}")
    method = _check_choice("scan_method", get("scan_method", "auto"), SCAN_METHODS)
    remat = bool(get("remat", False))
    if method == "auto":  # resolved when the module is built, i.e. on the backend that runs it
        method, remat = resolve_auto_scan(jax.default_backend(), remat)
    chunk, budget = int(get("chunk", 128)), int(get("scan_budget", 2**26))
    if chunk < 1 or budget < 0:
        raise InputError(f"model config 'le_mamba': chunk must be >= 1 and scan_budget >= 0, got {chunk}, {budget}")
    return LEMamba(
        bands=bands,
        guide_bands=guide,
        state_share=_check_choice("state_share", get("state_share", "input"), STATE_SHARE_MODES),
        share_skip_state=bool(get("share_skip_state", True)),
        state_init=_check_choice("state_init", get("state_init", "fan_in"), ("fan_in", "official")),
        scan_method=method,
        large_scan=_check_choice("large_scan", get("large_scan", "auto"), ("auto", "loop", "chunked")),
        chunk=chunk,
        scan_budget=budget,
        remat=remat,
        remat_blocks=bool(get("remat_blocks", False)),
        depthwise=_check_choice("depthwise", get("depthwise", "auto"), ("auto", "shift", "conv")),
        scan_directions=_check_choice("scan_directions", get("scan_directions", "auto"), DIRECTION_MODES),
        **p,
    )


def count_params(params: Any) -> int:
    """Total number of parameter elements."""
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


LE_MAMBA_ENTRY = ModelEntry(
    "le_mamba",
    build_le_mamba,
    le_mamba_config,
    "LE-Mamba (Cao et al. 2024): vision-Mamba U-Net, local-window + global SSM blocks, state sharing",
)
