"""The pipeline's full-resolution patch mode (``data.resolution = 'full'``): patches cut from the
scene's own MS and PAN (no Wald reduction, no gt), only from the training box; several scenes and
GeoTIFF pairs (``data.pan_scene``)."""

from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
import pytest

from pansharp_jax.data import pipeline
from pansharp_jax.data.io import load_scene
from pansharp_jax.errors import InputError


def _data(**kw: object) -> ml_collections.ConfigDict:
    d = {"kind": "wald_scene", "resolution": "full", "patch": 64, "stride": 64, "holdout_side": "right", "holdout_fraction": 0.25}
    d.update(kw)
    return ml_collections.ConfigDict(d)


@pytest.mark.usefixtures("data_dir")
def test_full_resolution_patches_are_the_scene_itself_and_avoid_the_held_out_quarter() -> None:
    train, val, info = pipeline.build_sources(_data(scene="fr/wv2_pnn.mat", sensor="WV2", patch=128, stride=256))
    scene = load_scene("fr/wv2_pnn.mat", sensor="WV2")
    assert val is None and (info.sensor, info.ratio, info.max_dn) == ("WV2", 4, 2047.0)
    # PAN 1280 x 1280; the right quarter of the 320-px MS grid (80 MS px = 320 PAN px) held out
    assert len(train) == 5 * 4
    b = train.get_batch([0, 7, len(train) - 1])
    assert set(b) == {"lrms", "pan", "lms"}  # no gt at full resolution
    assert b["lrms"].shape == (3, 32, 32, 8) and b["pan"].shape == (3, 128, 128, 1) and b["lms"].shape == (3, 128, 128, 8)
    for row, i in enumerate([0, 7, len(train) - 1]):
        r0, r1, c0, c1 = train.boxes[i]
        np.testing.assert_array_equal(b["pan"][row], np.float32(scene.pan[r0:r1, c0:c1]))
        np.testing.assert_array_equal(b["lrms"][row], np.float32(scene.lrms[r0 // 4 : r1 // 4, c0 // 4 : c1 // 4]))
    assert train.boxes[:, 3].max() <= 960  # never a held-out pixel
    _, held = pipeline.full_res_patch_sources(scene, patch=128, stride=256)
    assert len(held) == 5 and held.boxes[:, 2].min() >= 960 and "gt" not in held[0]
    # the lms is the usual interp23tap of each patch's LRMS (values close to the LRMS means)
    np.testing.assert_allclose(b["lms"].mean(axis=(1, 2)), b["lrms"].mean(axis=(1, 2)), atol=0.02)


@pytest.mark.usefixtures("data_dir")
def test_several_scenes_and_geotiff_pairs(tmp_path: Path) -> None:
    pytest.importorskip("rasterio")
    from pansharp_jax.data import io_geotiff

    rng = np.random.default_rng(0)
    ms = rng.integers(100, 2000, (24, 32, 4)).astype(np.uint16)
    pan = rng.integers(100, 2000, (96, 128)).astype(np.uint16)
    io_geotiff.write_geotiff(tmp_path / "ikonos_ms.tif", ms, None)
    io_geotiff.write_geotiff(tmp_path / "ikonos_pan.tif", pan, None)
    tif, tif_pan = str(tmp_path / "ikonos_ms.tif"), str(tmp_path / "ikonos_pan.tif")
    one, _, info = pipeline.build_sources(_data(scene=tif, pan_scene=tif_pan, patch=32, stride=32, sensor="IKONOS"))
    assert info.ratio == 4 and len(one) == 3 * 3  # 96 x 96 PAN training box (the right 32 PAN px held out)
    np.testing.assert_array_equal(one[0]["pan"][..., 0], pan[:32, :32] / np.float32(2047.0))
    two, _, _ = pipeline.build_sources(
        _data(scene=f"{tif},{tif}", pan_scene=f"{tif_pan},{tif_pan}", patch=32, stride=32, sensor="IKONOS")
    )
    assert len(two) == 2 * len(one)
    np.testing.assert_array_equal(two[len(one)]["lrms"], one[0]["lrms"])
    with pytest.raises(InputError, match="PAN files"):
        pipeline.build_sources(_data(scene=f"{tif},{tif}", pan_scene=tif_pan, patch=32, stride=32))
    with pytest.raises(InputError, match="multiple of the ratio"):
        pipeline.build_sources(_data(scene=tif, pan_scene=tif_pan, patch=30, stride=32))
