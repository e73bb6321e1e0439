"""Images as token sequences for state-space (Mamba) blocks; channels-last throughout.

An image ``x`` (b, H, W, D) becomes sequences of H*W tokens of width D.

**Cross scan (4 directions).** ``cross_scan`` returns (b, 4, H*W, D) with, along axis 1:

    k = 0  row-major, forward:        token i*W + j      is x[:, i, j]   (left to right, top to bottom)
    k = 1  row-major, reversed:       token L-1-(i*W + j) is x[:, i, j]
    k = 2  column-major, forward:     token j*H + i      is x[:, i, j]   (top to bottom, left to right)
    k = 3  column-major, reversed:    token L-1-(j*H + i) is x[:, i, j]

with L = H*W. These are the four scan paths of VMamba's SS2D / FusionMamba; note the
order used here is (row, row-reversed, column, column-reversed). VMamba's own code stacks
them as (row, column, row-reversed, column-reversed); the set is the same and the merged
sum is identical, only per-direction parameters would have to be re-indexed.

``cross_merge`` undoes each direction (maps token positions back to the (H, W) grid) and
**sums** the four: ``cross_merge(cross_scan(x), H, W) == 4 * x``. Callers wanting the mean
divide by 4.

**Bidirectional 1-D.** ``flip_sequence`` reverses (b, L, D) along L; ``bidirectional_scan``
stacks (forward, reversed) into (b, 2, L, D) and ``bidirectional_merge`` un-reverses the
second and sums: ``bidirectional_merge(bidirectional_scan(x)) == 2 * x``.

**Windows (local scans).** ``window_partition(x, win)`` zero-pads H and W at the bottom and
right up to multiples of ``win`` and cuts (b, Hp, Wp, D) into nW = (Hp/win) * (Wp/win)
windows of win*win row-major tokens each: (b * nW, win*win, D), ordered batch first, then
window row, then window column. ``window_merge(windows, win, H, W)`` puts them back and
crops to (b, H, W, D), so ``window_merge(window_partition(x, win), win, H, W) == x``. Note
the padded tokens are zeros *inside* the sequences of the right/bottom windows (a padded
column sits at the end of every row of a window), so a scan over them sees zero inputs
there; ``window_valid_mask`` gives (nW, win*win) booleans marking real tokens for callers
who want to mask them (e.g. force the step to identity).

**One direction at a time.** ``direction_transforms(ndir, hw)`` gives, per direction k, the
map from row-major tokens (b, L, D) to direction k's order and its inverse, as lists for
``lax.switch``: a ``lax.scan`` over directions then keeps only one direction's activations
alive (whole scenes), where ``cross_scan`` materialises all four. ``use_serial_directions``
is the shared rule for when to do so.

Everything is shape-polymorphic (no parameters, H and W come from the array or are passed
as Python ints) and jittable; H, W and ``win`` are static.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pansharp_jax.errors import InputError

# scan_directions='auto': the directions of a layer run one after the other (a lax.scan over
# directions) once one direction's (b, L, d_inner) activations reach this many elements
# (e.g. a 512 x 512 PAN at full width), and as one computation below it.
SERIAL_DIRECTIONS_ABOVE = 1 << 23
DIRECTION_MODES = ("auto", "batched", "serial")


def _need_ndim(name: str, x: jax.Array, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise InputError(f"{name}: expected {layout}, got shape {x.shape}")


def flip_sequence(x: jax.Array) -> jax.Array:
    """Reverse a token sequence (b, L, D) (or (b, k, L, D)) along its L axis (axis -2)."""
    return jnp.flip(x, axis=-2)


def bidirectional_scan(x: jax.Array) -> jax.Array:
    """(b, L, D) -> (b, 2, L, D): the sequence forward (0) and reversed (1)."""
    _need_ndim("bidirectional_scan", x, 3, "(b, L, D)")
    return jnp.stack([x, flip_sequence(x)], axis=1)


def bidirectional_merge(y: jax.Array) -> jax.Array:
    """(b, 2, L, D) -> (b, L, D): forward plus un-reversed backward (a sum; halve for the mean)."""
    _need_ndim("bidirectional_merge", y, 4, "(b, 2, L, D)")
    if y.shape[1] != 2:
        raise InputError(f"bidirectional_merge: expected 2 directions on axis 1, got shape {y.shape}")
    return y[:, 0] + flip_sequence(y[:, 1])


def cross_scan(x: jax.Array) -> jax.Array:
    """(b, H, W, D) -> (b, 4, H*W, D): row-major, row-major reversed, column-major, column-major reversed."""
    _need_ndim("cross_scan", x, 4, "(b, H, W, D)")
    b, H, W, d = x.shape
    rows = x.reshape(b, H * W, d)
    cols = jnp.swapaxes(x, 1, 2).reshape(b, W * H, d)
    return jnp.stack([rows, flip_sequence(rows), cols, flip_sequence(cols)], axis=1)


def cross_merge(y: jax.Array, H: int, W: int) -> jax.Array:
    """(b, 4, H*W, D) in ``cross_scan`` order -> (b, H, W, D): each direction back on the grid, summed."""
    _need_ndim("cross_merge", y, 4, "(b, 4, H*W, D)")
    b, k, L, d = y.shape
    if k != 4 or L != H * W:
        raise InputError(f"cross_merge: expected (b, 4, {H}*{W}, D), got shape {y.shape}")
    rows = y[:, 0] + flip_sequence(y[:, 1])  # (b, H*W, D) row-major
    cols = y[:, 2] + flip_sequence(y[:, 3])  # (b, W*H, D) column-major
    return rows.reshape(b, H, W, d) + jnp.swapaxes(cols.reshape(b, W, H, d), 1, 2)


def _padded(n: int, win: int) -> int:
    return -(-n // win) * win


def window_partition(x: jax.Array, win: int) -> jax.Array:
    """(b, H, W, D) -> (b * nW, win*win, D); zero-pads H, W at the bottom/right to multiples of ``win``."""
    _need_ndim("window_partition", x, 4, "(b, H, W, D)")
    if not isinstance(win, int) or win < 1:
        raise InputError(f"window_partition: win must be a positive int, got {win!r}")
    b, H, W, d = x.shape
    Hp, Wp = _padded(H, win), _padded(W, win)
    x = jnp.pad(x, [(0, 0), (0, Hp - H), (0, Wp - W), (0, 0)])
    x = x.reshape(b, Hp // win, win, Wp // win, win, d)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))  # (b, nH, nW, win, win, d)
    return x.reshape(b * (Hp // win) * (Wp // win), win * win, d)


def window_merge(windows: jax.Array, win: int, H: int, W: int) -> jax.Array:
    """(b * nW, win*win, D) from ``window_partition`` -> (b, H, W, D), cropping the padding."""
    _need_ndim("window_merge", windows, 3, "(b * nW, win*win, D)")
    Hp, Wp = _padded(H, win), _padded(W, win)
    nh, nw = Hp // win, Wp // win
    n, t, d = windows.shape
    if t != win * win or n % (nh * nw):
        raise InputError(f"window_merge: expected (b * {nh * nw}, {win * win}, D) for H={H}, W={W}, win={win}; got {windows.shape}")
    x = windows.reshape(n // (nh * nw), nh, nw, win, win, d)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5)).reshape(n // (nh * nw), Hp, Wp, d)
    return x[:, :H, :W]


def window_valid_mask(H: int, W: int, win: int) -> jax.Array:
    """(nW, win*win) bool, True where a ``window_partition`` token is a real pixel (not padding)."""
    ones = jnp.ones((1, H, W, 1), bool)
    return window_partition(ones, win)[..., 0]


def direction_transforms(ndir: int, hw: tuple[int, int] | None) -> tuple[list[Callable], list[Callable]]:
    """Per scan direction k (``cross_scan`` order for ``ndir`` = 4, ``bidirectional_scan`` order
    for 2): the map from row-major tokens (b, L, D) to direction k's token order, and its inverse.

    Returns ``(to, back)``, two lists of ``ndir`` functions (b, L, D) -> (b, L, D), meant for
    ``lax.switch(k, to, x)``. ``hw`` = (H, W) with H * W = L is needed for ``ndir`` = 4.
    Built from reshapes, transposes and flips only: a gather with index arrays would make the
    backward pass a scatter-add, which XLA runs very slowly on CPU.
    """
    if ndir not in (2, 4):
        raise InputError(f"direction_transforms: ndir must be 2 or 4, got {ndir}")
    flip = flip_sequence
    to, back = [lambda x: x, flip], [lambda x: x, flip]
    if ndir == 4:
        if hw is None:
            raise InputError("direction_transforms: 4 directions need hw = (H, W)")
        h, w = hw

        def cols(x: jax.Array, a: int, b: int) -> jax.Array:  # (n, a*b, d) as an a x b grid -> b x a, flattened
            n, length, d = x.shape
            return jnp.swapaxes(x.reshape(n, a, b, d), 1, 2).reshape(n, length, d)

        to += [lambda x: cols(x, h, w), lambda x: flip(cols(x, h, w))]
        back += [lambda y: cols(y, w, h), lambda y: cols(flip(y), w, h)]
    return to, back


def use_serial_directions(mode: str, elements: int) -> bool:
    """Whether a layer's scan directions run one after the other.

    ``mode``: ``'serial'`` / ``'batched'`` force it; ``'auto'`` is serial once one direction's
    activations (``elements`` = b * L * d_inner) reach :data:`SERIAL_DIRECTIONS_ABOVE`.
    """
    if mode not in DIRECTION_MODES:
        raise InputError(f"scan_directions must be one of {', '.join(DIRECTION_MODES)}, got {mode!r}")
    return mode == "serial" or (mode == "auto" and elements >= SERIAL_DIRECTIONS_ABOVE)
