"""The receptive field of a fusion network, measured on the network itself.

For one output pixel in the middle of a probe scene, the gradient of its value with
respect to every input pixel (PAN and LRMS) is nonzero exactly where that input can
change it. For convolutional networks (zero padding, no global pooling) that region is
the receptive field, including the ``interp23tap`` upsampling that makes ``lms``; its
radius in PAN pixels is the margin a tile needs so that its core equals the whole-scene
output. A probe of random inputs (so that no ReLU is dead everywhere) is grown until
the region stays inside it; a network whose region reaches the border of the largest
probe has a global receptive field (selective scans, attention, global pooling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["receptive_radius"]

# LR sides of the probes: 16, 32, 64 MS pixels (64 .. 256 PAN pixels at ratio 4).
PROBE_SIDES = (16, 32, 64)


def _radius(mask: np.ndarray, centre: tuple[float, float], scale: int) -> float:
    """Largest Chebyshev distance (PAN px) from ``centre`` to a True pixel of ``mask``
    whose pixels are ``scale`` PAN pixels wide."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0
    # extent of each input pixel on the PAN grid: [scale*i, scale*(i+1))
    dr = np.maximum(np.abs(rows * scale - centre[0]), np.abs((rows + 1) * scale - 1 - centre[0]))
    dc = np.maximum(np.abs(cols * scale - centre[1]), np.abs((cols + 1) * scale - 1 - centre[1]))
    return float(max(dr.max(), dc.max()))


def receptive_radius(
    apply: Callable[[Any, Any], Any], *, bands: int, ratio: int, sides: tuple[int, ...] = PROBE_SIDES, seed: int = 0
) -> int | None:
    """Radius (PAN pixels) of the region of the inputs that one output pixel depends on.

    Args:
      apply: ``(lrms (1, h, w, C), pan (1, H, W, 1)) -> (1, H, W, C)`` on [0, 1] (the
        network with its ``lms`` upsampling), float32.
      bands, ratio: the probe's band count and PAN/MS ratio.
      sides: LR sides of the probes tried in turn.

    Returns:
      The radius (an int >= 0), or None when the region reaches the border of the
      largest probe (a global receptive field).
    """
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    for side in sides:
        lrms = jnp.asarray(rng.uniform(0.2, 0.8, (1, side, side, bands)), jnp.float32)
        pan = jnp.asarray(rng.uniform(0.2, 0.8, (1, side * ratio, side * ratio, 1)), jnp.float32)
        c = side * ratio // 2

        def centre_value(lr: Any, p: Any) -> Any:
            return jnp.sum(apply(lr, p)[0, c, c, :])

        g_lr, g_pan = jax.grad(centre_value, argnums=(0, 1))(lrms, pan)
        m_lr = np.any(np.asarray(g_lr[0]) != 0, axis=-1)
        m_pan = np.asarray(g_pan[0, ..., 0]) != 0
        touches = m_pan[0].any() or m_pan[-1].any() or m_pan[:, 0].any() or m_pan[:, -1].any()
        touches = touches or m_lr[0].any() or m_lr[-1].any() or m_lr[:, 0].any() or m_lr[:, -1].any()
        if not touches:
            return int(np.ceil(max(_radius(m_pan, (c, c), 1), _radius(m_lr, (c, c), ratio))))
    return None
