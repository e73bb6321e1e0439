"""Our classical methods scored like the toolbox, against the toolbox's own reference values.

Every method with a reference in the evaluation protocol is run on the real scenes and its
metrics compared with the values the MATLAB toolbox produced for its own output: reduced
resolution on wv3_cdif and pleiades_cdif (cut and no cut), full resolution (QNR and HQNR)
for GSA on wv3_zpnn_example and ikonos_pnn. The issue's requirement is <= 1e-3 relative;
methods that reproduce the toolbox to rounding land near 1e-12, so the test asks 1e-8.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.io as sio

from pansharp_jax import classical, metrics
from toolbox_reference import (
    FR_KEYS,
    FR_REFERENCE,
    RR_CUT_KEYS,
    RR_NOCUT_KEYS,
    RR_REFERENCE,
    RR_SCENES,
    worst_relative,
)

TOL = 1e-8
OUR_KEY = {"EXP": "exp", "GSA": "gsa", "BT_H": "bt_h", "MTF_GLP_HPM": "mtf_glp_hpm", "MTF_GLP_FS": "mtf_glp_fs", "AWLP": "awlp"}


@pytest.mark.parametrize("scene,method", sorted(RR_REFERENCE))
def test_reduced_metrics_equal_toolbox(data_dir, scene, method):
    scale, sensor = RR_SCENES[scene]
    mat = sio.loadmat(data_dir / "rr" / f"{scene}.mat")
    gt = mat["gt"].astype(np.float64)
    with jax.enable_x64(True):
        fused_dn = classical.METHODS[OUR_KEY[method]](
            None, mat["lrms"] * scale, mat["pan"][..., None] * scale, sensor=sensor, ratio=4
        )
        fused = np.asarray(fused_dn) / scale
    cut = metrics.evaluate_reduced(fused, gt, ratio=4, max_dn=scale)
    nocut = metrics.evaluate_reduced(fused, gt, ratio=4, max_dn=scale, cut=0)
    ref = RR_REFERENCE[(scene, method)]
    w1, k1 = worst_relative(cut, RR_CUT_KEYS, ref[:5])
    w2, k2 = worst_relative(nocut, RR_NOCUT_KEYS, ref[5:])
    print(f"{scene} {method}: worst relative difference {max(w1, w2):.2e} ({k1 if w1 >= w2 else k2 + ' nocut'})")
    assert w1 <= TOL and w2 <= TOL, (cut, nocut)


@pytest.mark.parametrize("scene", sorted(FR_REFERENCE))
def test_full_resolution_gsa_equals_toolbox(data_dir, scene):
    key, sensor, refs = FR_REFERENCE[scene]
    mat = sio.loadmat(data_dir / "fr" / f"{scene}.mat")
    lrms_dn = mat[key].astype(np.float64)
    pan_dn = mat["I_PAN"].astype(np.float64)[..., None]
    with jax.enable_x64(True):
        fused_dn = np.asarray(classical.gsa(None, lrms_dn, pan_dn, sensor=sensor, ratio=4))
    got = metrics.evaluate_full(fused_dn / 2047.0, lrms_dn / 2047.0, pan_dn / 2047.0, sensor=sensor, ratio=4, max_dn=2047.0)
    worst, at = worst_relative(got, FR_KEYS, refs["GSA"])
    print(f"{scene} GSA: worst relative difference {worst:.2e} ({at})")
    assert worst <= TOL, got
