"""Quality metrics equal to the MATLAB pansharpening toolbox (float64, DN where it uses DN).

* :func:`evaluate_reduced`: reduced resolution, against a ground truth
  (Q2n, Q_avg, SAM, ERGAS, SCC, plus PSNR and SSIM).
* :func:`evaluate_full`: full resolution, no ground truth
  (D_lambda, D_lambda_K, D_S, QNR, HQNR).
* :func:`fsds` / :func:`fsds_scores`: the Frequency Spectrum Distribution Similarity
  (dB, higher is better) of a product against its ground truth (:mod:`~pansharp_jax.metrics.fsds`).
* :func:`evaluate_full_tiled`: the same values for scenes larger than memory, from
  window readers, tile by tile (:mod:`~pansharp_jax.metrics.full_tiled`).

Public entry points take [0, 1] images (HWC or NHWC) and return Python floats; the
jittable array functions in :mod:`~pansharp_jax.metrics.reduced` and
:mod:`~pansharp_jax.metrics.full` work on DN arrays.
"""

from pansharp_jax.metrics.fsds import fsds, fsds_array, fsds_bands_array, fsds_per_band, fsds_scores
from pansharp_jax.metrics.full import (
    FULL_KEYS,
    d_lambda,
    d_lambda_k,
    d_s,
    evaluate_full,
    full_metrics_dn,
    hqnr_dn,
    hqnr_from_upsampled,
)
from pansharp_jax.metrics.full_tiled import TileMargins, evaluate_full_tiled, tile_margins
from pansharp_jax.metrics.mhif import MHIF_KEYS, evaluate_mhif
from pansharp_jax.metrics.reduced import (
    REDUCED_KEYS,
    cut_border,
    ergas,
    evaluate_reduced,
    psnr,
    q2n_index,
    q_avg,
    reduced_metrics_dn,
    sam,
    scc,
    ssim,
)

__all__ = [
    "FULL_KEYS",
    "MHIF_KEYS",
    "REDUCED_KEYS",
    "TileMargins",
    "cut_border",
    "d_lambda",
    "d_lambda_k",
    "d_s",
    "ergas",
    "evaluate_full",
    "evaluate_full_tiled",
    "evaluate_mhif",
    "evaluate_reduced",
    "fsds",
    "fsds_array",
    "fsds_bands_array",
    "fsds_per_band",
    "fsds_scores",
    "full_metrics_dn",
    "hqnr_dn",
    "hqnr_from_upsampled",
    "psnr",
    "q2n_index",
    "q_avg",
    "reduced_metrics_dn",
    "sam",
    "scc",
    "ssim",
    "tile_margins",
]
