"""Floor 2: the classical pan-sharpening baselines of the MATLAB toolbox, in JAX.

Every method is ``fuse(params=None, lrms, pan, *, rng=None, sensor='generic', ratio=4)``
(see :mod:`pansharp_jax.classical._common`): pure, jitted, vmapped over leading batch
dimensions, any scale in (DN or [0, 1]) and the same scale out, toolbox-exact in float64.

Component substitution: BT-H, GS, GSA, PCA, BDSD, PRACS. Multiresolution analysis:
MTF-GLP, MTF-GLP-HPM, MTF-GLP-FS, AWLP. Plus EXP (the upsampled MS, the reference point)
and MTF-GLP-HPM-G, our guarded HPM (a floor on the PAN low-pass where the toolbox's explodes).
"""

from __future__ import annotations

from pansharp_jax.classical._common import Fuse, check_inputs, classical_method, upsample_ms
from pansharp_jax.classical.bdsd import bdsd
from pansharp_jax.classical.component_substitution import bt_h, gs, gsa, pca
from pansharp_jax.classical.exp import exp
from pansharp_jax.classical.multiresolution import awlp, mtf_glp, mtf_glp_fs, mtf_glp_hpm, mtf_glp_hpm_guarded
from pansharp_jax.classical.pracs import pracs

METHODS: dict[str, Fuse] = {
    "exp": exp,
    "bt_h": bt_h,
    "gs": gs,
    "gsa": gsa,
    "pca": pca,
    "bdsd": bdsd,
    "pracs": pracs,
    "mtf_glp": mtf_glp,
    "mtf_glp_hpm": mtf_glp_hpm,
    "mtf_glp_fs": mtf_glp_fs,
    "awlp": awlp,
    "mtf_glp_hpm_guarded": mtf_glp_hpm_guarded,
}

# Our key -> the toolbox's (and the literature's) display name.
TOOLBOX_NAMES: dict[str, str] = {
    "exp": "EXP",
    "bt_h": "BT-H",
    "gs": "GS",
    "gsa": "GSA",
    "pca": "PCA",
    "bdsd": "BDSD",
    "pracs": "PRACS",
    "mtf_glp": "MTF-GLP",
    "mtf_glp_hpm": "MTF-GLP-HPM",
    "mtf_glp_fs": "MTF-GLP-FS",
    "awlp": "AWLP",
    "mtf_glp_hpm_guarded": "MTF-GLP-HPM-G",
}

__all__ = ["METHODS", "TOOLBOX_NAMES", "Fuse", "check_inputs", "classical_method", "upsample_ms", *METHODS]
