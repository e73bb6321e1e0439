"""The frequency report of one method on one scene: figures plus ``report.json``.

:func:`frequency_report` runs :func:`~pansharp_jax.analysis.hyra.hyra`, scores the
product against the GT when the scene has one (FSDS per band, and the toolbox's
reduced-resolution metrics), and writes into a folder:

* ``impulse_responses.png``: MS / PAN impulse responses, profiles, cross-band DC gains;
* ``spectra.png``: 2-D log spectra of the linear part, the non-linear part, the product
  [and the GT];
* ``radial_profiles.png``: radial profiles of the linear part's frequency responses and
  of the power spectra;
* ``fsds_bands.png``: FSDS per band vs the GT (scenes with a GT only);
* ``report.json``: what was run and everything measured (non-finite numbers as ``null``,
  e.g. the FSDS of an exact band, ``+inf``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pansharp_jax.errors import InputError

if TYPE_CHECKING:
    from pansharp_jax.analysis.hyra import HyraResult
    from pansharp_jax.data.scene import Scene
    from pansharp_jax.methods import Method

__all__ = ["FIGURES", "crop_scene", "frequency_report", "json_ready", "write_json"]

FIGURES = ("impulse_responses.png", "spectra.png", "radial_profiles.png", "fsds_bands.png")


def crop_scene(scene: Scene, side: int | None) -> Scene:
    """The centre crop of ``side`` x ``side`` PAN pixels (rounded down to a multiple of the
    ratio; the LRMS and GT cropped alike), or the scene itself when ``side`` is None or
    not smaller than the scene."""
    if side is None:
        return scene
    r = scene.ratio
    side = (int(side) // r) * r
    if side < 4 * r:
        raise InputError(f"a crop must be at least {4 * r} PAN pixels (4 MS pixels), got {side}")
    h, w = scene.pan.shape[:2]
    if side >= h and side >= w:
        return scene
    sh, sw = min(side, h), min(side, w)
    r0, c0 = ((h - sh) // 2 // r) * r, ((w - sw) // 2 // r) * r
    rows, cols = slice(r0, r0 + sh), slice(c0, c0 + sw)
    lr_rows, lr_cols = slice(r0 // r, (r0 + sh) // r), slice(c0 // r, (c0 + sw) // r)
    return dataclasses.replace(
        scene, lrms=scene.lrms[lr_rows, lr_cols], pan=scene.pan[rows, cols],
        gt=None if scene.gt is None else scene.gt[rows, cols], name=f"{scene.name} (crop {sh}x{sw})", georef=None,
    )  # fmt: skip


def json_ready(obj: Any) -> Any:
    """``obj`` with NumPy scalars/arrays as Python numbers/lists and NaN/Inf as None."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``json_ready(obj)`` (indented, strict JSON) and return the path."""
    path = Path(path)
    path.write_text(json.dumps(json_ready(obj), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def frequency_report(
    method: Method,
    scene: Scene,
    out_dir: str | os.PathLike[str],
    *,
    size: int | None = None,
    linearization: str = "auto",
    amplitude: float = 0.1,
    background: str = "flat",
    pan_phases: str = "all",
    clip: bool = True,
) -> tuple[dict[str, Any], HyraResult]:
    """Analyse ``method`` on ``scene`` and write the figures and ``report.json`` (see module).

    Args:
      method: from :func:`pansharp_jax.methods.resolve`.
      scene: arrays on [0, 1]; with a GT, the product is scored (FSDS per band and mean,
        Q2n, SAM, ERGAS, ... with the toolbox's conventions).
      out_dir: an existing folder.
      size, linearization, amplitude, background, pan_phases: see
        :func:`~pansharp_jax.analysis.hyra.impulse_responses`.
      clip: score the product clipped to [0, 1] (what ``pansharp fuse`` writes); the
        decomposition always uses the raw output.

    Returns:
      ``(report, result)``: the JSON-ready dict written to ``report.json`` and the
      :class:`~pansharp_jax.analysis.hyra.HyraResult`.
    """
    from pansharp_jax import metrics
    from pansharp_jax.analysis import plots
    from pansharp_jax.analysis.hyra import hyra
    from pansharp_jax.methods import finish_product

    out = Path(out_dir)
    raw = method.fuse(scene, clip=False)
    res = hyra(
        method, scene, size=size, linearization=linearization, amplitude=amplitude, background=background,
        pan_phases=pan_phases, output=raw,
    )  # fmt: skip
    report: dict[str, Any] = {
        "what": "frequency",
        "method": method.name,
        "label": method.label,
        "origin": method.origin,
        "scene": scene.name,
        "sensor": scene.sensor.name,
        "ratio": scene.ratio,
        "shape": list(scene.pan.shape[:2]),
        "bands": scene.nbands,
        "hyra": res.summary,
        "figures": [],
    }
    label = f"{method.label} on {scene.name}"
    figs = [
        plots.plot_impulse_responses(res, out / "impulse_responses.png", title=""),
        plots.plot_spectra(res, out / "spectra.png", gt=scene.gt, title=f"{label}: spectra (dashed: MS Nyquist)"),
        plots.plot_radial_profiles(res, out / "radial_profiles.png", gt=scene.gt, title=f"{label}: radial profiles"),
    ]
    if scene.gt is not None:
        product = finish_product(raw) if clip else raw
        bands = metrics.fsds_per_band(product, scene.gt)
        report["fsds"] = {"per_band": bands, "mean": float(np.mean(bands)), "all_bands": metrics.fsds(product, scene.gt), "clipped": clip}
        report["metrics"] = metrics.evaluate_reduced(product, scene.gt, ratio=scene.ratio, max_dn=scene.max_dn)
        names = list(getattr(scene.sensor, "band_names", ()) or ())
        figs.append(plots.plot_fsds_bands(bands, out / "fsds_bands.png", band_names=names, title=f"{label}: FSDS per band vs GT"))
    report["figures"] = [p.name for p in figs]
    write_json(out / "report.json", report)
    return json_ready(report), res
