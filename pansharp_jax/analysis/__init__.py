"""Floor 5: analyses of any method reached through the method API.

* :mod:`~pansharp_jax.analysis.hyra`: HyRA for pan-sharpening: MS and PAN impulse
  responses, the decomposition of a product into a linear part (impulse responses
  convolved with the zero-interpolated LRMS and with the PAN) and a non-linear part, the
  linear part's frequency responses, and the non-linear share of the high-frequency
  energy (above the MS Nyquist frequency).
* :mod:`~pansharp_jax.analysis.report`: the figures and ``report.json`` of
  ``pansharp analyze`` (:func:`frequency_report`).
* :mod:`~pansharp_jax.analysis.plots`: the figures.
* :mod:`~pansharp_jax.analysis.sr`: a small single-band super-resolution network (the
  setting of the "sinc phenomenon"), trained on PAN patches.

The FSDS metric itself is :func:`pansharp_jax.metrics.fsds`. This floor imports from
``methods``, ``metrics``, ``data``, ``models`` and ``nn``, never from ``cli`` or ``products``.
"""

from pansharp_jax.analysis.hyra import (
    Decomposition,
    HyraResult,
    ImpulseResponses,
    Transfer,
    decompose,
    hf_energy,
    hyra,
    impulse_responses,
    linear_part,
    radial_profile,
    sr_impulse_response,
    transfer_functions,
)
from pansharp_jax.analysis.report import crop_scene, frequency_report

__all__ = [
    "Decomposition",
    "HyraResult",
    "ImpulseResponses",
    "Transfer",
    "crop_scene",
    "decompose",
    "frequency_report",
    "hf_energy",
    "hyra",
    "impulse_responses",
    "linear_part",
    "radial_profile",
    "sr_impulse_response",
    "transfer_functions",
]
