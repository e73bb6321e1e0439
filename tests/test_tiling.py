"""Tile plans: cores partition the scene, windows are equal-shaped and inside, weights sum to 1."""

from __future__ import annotations

import numpy as np
import pytest

from pansharp_jax.data.tiling import blend_weights, core_mask, plan_tiles
from pansharp_jax.errors import InputError


@pytest.mark.parametrize(
    ("h", "w", "tile", "margin", "align", "feather"),
    [(100, 132, 32, 8, 4, 16), (64, 64, 256, 16, 4, 0), (96, 40, 20, 12, 4, 24), (37, 53, 10, 3, 1, 5)],
)
def test_plan_partitions_and_weights_sum_to_one(h: int, w: int, tile: int, margin: int, align: int, feather: int) -> None:
    plan = plan_tiles(h, w, tile=tile, margin=margin, align=align)
    cover = np.zeros((h, w), int)
    total = np.zeros((h, w))
    for t in plan:
        r0, r1, c0, c1 = t.window
        assert (r1 - r0, c1 - c0) == plan.window_shape
        assert 0 <= r0 and r1 <= h and 0 <= c0 and c1 <= w
        assert r0 % align == 0 and c0 % align == 0
        a, b, c, d = t.core
        assert r0 <= a < b <= r1 and c0 <= c < d <= c1
        # at least `margin` of context wherever the scene has it
        assert a - r0 >= min(plan.margin, a) and r1 - b >= min(plan.margin, h - b)
        assert c - c0 >= min(plan.margin, c) and c1 - d >= min(plan.margin, w - d)
        cover[a:b, c:d] += 1
        np.testing.assert_array_equal(core_mask(t)[a - r0 : b - r0, c - c0 : d - c0], 1.0)
        assert core_mask(t).sum() == (b - a) * (d - c)
        total[r0:r1, c0:c1] += blend_weights(plan, t, feather)
    np.testing.assert_array_equal(cover, 1)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_feathered_weights_ramp_across_inner_edges_only() -> None:
    plan = plan_tiles(64, 64, tile=32, margin=8, align=4)
    t = plan.tiles[0]  # top-left: scene border on top/left, inner edges right/bottom
    wts = blend_weights(plan, t, 8)
    assert wts[0, 0] == 1.0 and wts[20, 20] == 1.0
    assert 0.0 < wts[10, 31] < 1.0 and 0.0 < wts[10, 32] < 0.5
    assert wts[10, plan.window_shape[1] - 1] == 0.0


def test_bad_plans_are_refused() -> None:
    with pytest.raises(InputError, match="multiple of the alignment"):
        plan_tiles(30, 32, tile=16, margin=4, align=4)
    with pytest.raises(InputError, match="margin"):
        blend_weights(plan_tiles(64, 64, tile=16, margin=4, align=4), plan_tiles(64, 64, tile=16, margin=4, align=4).tiles[0], 16)
