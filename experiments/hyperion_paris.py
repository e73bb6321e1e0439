"""Real EO-1 Hyperion + ALI (HySure's Paris scene): MHIF at full resolution and at reduced resolution.

Two cases, every method through the method API (:func:`pansharp_jax.methods.resolve_many`,
as ``pansharp compare`` does), products clipped to [0, 1] before scoring:

1. **Real fusion, full resolution, no GT** (``hs/paris_hyperion_ali_hs_pan.mat``,
   :func:`~pansharp_jax.data.hsi.load_paris_hs_pan`): LR-HSI ``Y`` (72 x 58 x 128 Hyperion
   bands) + ALI PAN ``P`` (216 x 174 x 1), ratio r = 3. Methods that cannot take a 1-band
   guide are skipped with a printed reason. Consistency figures of a fused HR-HSI ``X``:

   * spectral consistency: ``D(X)`` against ``Y``, where ``D`` is the blur + decimation of the
     library's ``"hysure"`` preset at ratio 3 (5 x 5 B3-spline, circular boundary, phase 0;
     :func:`~pansharp_jax.data.hsi.blur_decimate`), with the MHIF formulas of
     :mod:`pansharp_jax.metrics.mhif` and ``Y`` as the reference:
     ``PSNR = mean_b 10 log10(1 / MSE_b)`` (data range 1, dB);
     ``SAM = mean_pixels arccos(<y, d> / (|y| |d|))`` in degrees;
     ``ERGAS = (100 / r) sqrt(mean_b MSE_b / mean(Y_b)^2)``.
   * spatial consistency: a spectral response ``s`` (B x 1, s >= 0) estimated at low
     resolution by non-negative least squares, ``D(P) ~= Y s``
     (:func:`~pansharp_jax.classical.mhif.estimate_srf` with the same ``D``); the fused image
     projected to one band, ``Q = X s`` (H x W), is compared with ``P``:
     ``PSNR = 10 log10(1 / mean((Q - P)^2))`` (data range 1, dB) and the Pearson correlation
     ``CC = sum((Q - mean Q)(P - mean P)) / sqrt(sum (Q - mean Q)^2 sum (P - mean P)^2)``.
     The same figures of ``Y s`` against ``D(P)`` (the fit of ``s`` itself, at low
     resolution) go into the JSON as ``srf_fit_lr``.

2. **Reduced resolution with a reference** (``hs/paris_hyperion_ali_hs_ms.mat``,
   :func:`~pansharp_jax.data.hsi.load_paris_hs_ms`): the library's LR-HSI simulated from
   ``HSim`` (72 x 72 x 128) by the ``"hysure"`` degradation at ratio 3 (24 x 24 x 128), the
   ALI MS ``MSim`` (72 x 72 x 9) as the guide, scored against ``HSim`` with
   :func:`~pansharp_jax.metrics.evaluate_mhif` (PSNR, SAM, ERGAS, SSIM).

The classical MHIF methods run with the method API's defaults: GLP-HS and CNMF assume the
``"zsl"`` Gaussian degradation (7 x 7, sigma 3), not ``"hysure"``; CNMF estimates its own SRF.

Conventions: arrays are HWC float64 on [0, 1]; every band of the files is divided by its
0.999 quantile and clipped (the library's HySure normalisation); no DN scale is used.

False-colour composites (NIR, red, green): the Hyperion bands nearest 860, 650 and 550 nm.
The files hold the 1-based Hyperion band numbers of the kept bands (``non_del_bands``,
:func:`~pansharp_jax.data.hsi.paris_bands`), not wavelengths; band centres are taken from the
nominal Hyperion grid (VNIR band n: 355.59 + 10.1753 (n - 1) nm; SWIR band n >= 71:
851.92 + 10.0887 (n - 71) nm), which picks bands 51 (864 nm), 30 (651 nm) and 20 (549 nm).
The ALI MS guide is shown with the ALI bands covering those Hyperion bands
(:data:`~pansharp_jax.data.hsi.ALI_HYPERION_COVERAGE`: 4p, 3, 2); the PAN in grey.
Each row has one 1st/99th percentile stretch (from the LR-HSI on row 1, the GT on row 2).

Writes into ``--out`` (default ``runs/hyperion_paris``): ``hyperion_paris.json`` (all
figures, methods, settings), ``hyperion_paris.md`` (the two tables) and
``hyperion_paris.png`` (row 1: LR-HSI x3 nearest, PAN, each method; row 2: LR-HSI, MS
guide, each method, GT). Data files are read under ``$PANSHARP_DATA``. Usage::

    python experiments/hyperion_paris.py
    python experiments/hyperion_paris.py --out runs/hyperion_paris --methods bicubic,glp_hs,cnmf
    python experiments/hyperion_paris.py --ckpt infn=runs/infn_paris     # a learned model too
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.classical.mhif import estimate_srf
from pansharp_jax.cli._common import input_path, say_method_fit, say_origin
from pansharp_jax.data.hsi import (
    ALI_HYPERION_COVERAGE,
    blur_decimate,
    load_paris_hs_ms,
    load_paris_hs_pan,
    paris_bands,
    spectral_response,
)
from pansharp_jax.errors import InputError
from pansharp_jax.methods import resolve_many
from pansharp_jax.methods.mhif import CLASSICAL
from pansharp_jax.metrics import ergas, evaluate_mhif, psnr, sam
from pansharp_jax.report.grid import apply_stretch, shared_stretch
from pansharp_jax.report.tables import MetricTable

HS_PAN_FILE = "hs/paris_hyperion_ali_hs_pan.mat"
HS_MS_FILE = "hs/paris_hyperion_ali_hs_ms.mat"
RATIO = 3
DEGRADATION = "hysure"
COMPOSITE_NM = (860.0, 650.0, 550.0)
FR_KEYS = ("PSNR_spec", "SAM_spec", "ERGAS_spec", "PSNR_pan", "CC_pan")
RR_KEYS = ("PSNR", "SAM", "ERGAS", "SSIM")
FR_LEGEND = (
    "PSNR_spec (dB, higher is better), SAM_spec (degrees, lower), ERGAS_spec (lower): the fused HR-HSI degraded by the "
    "'hysure' blur + decimation (ratio 3) vs the input LR-HSI. PSNR_pan (dB, higher), CC_pan (higher): the fused "
    "HR-HSI projected by the NNLS spectral response estimated at low resolution vs the PAN."
)


# ----------------------------------------------------------------------------- consistency figures


def degrade(x: Any, ratio: int = RATIO) -> np.ndarray:
    """The ``"hysure"`` blur + decimation of (H, W, C) at ``ratio``: (H / r, W / r, C) float64."""
    with jax.enable_x64(True):
        return np.asarray(blur_decimate(jnp.asarray(x, jnp.float64), int(ratio), DEGRADATION))


def spectral_consistency(fused: Any, lrms: Any, ratio: int = RATIO) -> dict[str, float]:
    """PSNR (dB), SAM (degrees), ERGAS of ``degrade(fused)`` against the LR-HSI.

    Args:
      fused: (H, W, B) fused HR-HSI on [0, 1]. lrms: (H / r, W / r, B) input LR-HSI on [0, 1].
      ratio: r, the decimation and the ERGAS ratio.

    Returns:
      ``{"PSNR_spec", "SAM_spec", "ERGAS_spec"}`` as floats (PSNR is inf for an exact match).
    """
    low = degrade(fused, ratio)
    if low.shape != np.shape(lrms):
        raise InputError(f"fused {np.shape(fused)} degraded to {low.shape}, but the LR-HSI is {np.shape(lrms)}")
    with jax.enable_x64(True):
        y, d = jnp.asarray(lrms, jnp.float64), jnp.asarray(low)
        vals = {"PSNR_spec": psnr(y, d, 1.0), "SAM_spec": sam(y, d), "ERGAS_spec": ergas(y, d, int(ratio))}
        return {k: float(v) for k, v in vals.items()}


def pan_srf(lrms: Any, pan: Any, ratio: int = RATIO) -> np.ndarray:
    """(B, 1) non-negative spectral response with ``degrade(pan) ~= lrms @ srf`` (NNLS), float64."""
    with jax.enable_x64(True):
        return estimate_srf(np.asarray(lrms, np.float64), np.asarray(pan, np.float64), ratio=int(ratio), degradation=DEGRADATION)


def spatial_consistency(fused: Any, pan: Any, srf: Any) -> dict[str, float]:
    """PSNR (dB, data range 1) and Pearson correlation of ``fused @ srf`` against the PAN.

    Args:
      fused: (H, W, B) on [0, 1]. pan: (H, W, 1) or (H, W) on [0, 1]. srf: (B, 1) weights.

    Returns:
      ``{"PSNR_pan", "CC_pan"}`` as floats.
    """
    with jax.enable_x64(True):
        q = spectral_response(jnp.asarray(fused, jnp.float64), np.asarray(srf, np.float64))
        p = jnp.asarray(pan, jnp.float64).reshape(q.shape)
        value = float(psnr(p, q, 1.0))
    return {"PSNR_pan": value, "CC_pan": float(np.corrcoef(np.ravel(q), np.ravel(p))[0, 1])}


def full_resolution_consistency(fused: Any, lrms: Any, pan: Any, srf: Any, ratio: int = RATIO) -> dict[str, float]:
    """Both consistency figures of a fused HR-HSI: :data:`FR_KEYS` (see the module docstring)."""
    return {**spectral_consistency(fused, lrms, ratio), **spatial_consistency(fused, pan, srf)}


# ----------------------------------------------------------------------------- bands for display


def hyperion_wavelengths(band_numbers: Sequence[int]) -> np.ndarray:
    """Nominal centre wavelengths (nm) of 1-based Hyperion band numbers (VNIR 1-70, SWIR 71-242)."""
    n = np.asarray(band_numbers, np.float64)
    return np.where(n <= 70, 355.59 + 10.1753 * (n - 1), 851.92 + 10.0887 * (n - 71))


def composite_bands(band_numbers: Sequence[int], targets_nm: Sequence[float] = COMPOSITE_NM) -> tuple[int, ...]:
    """Indices into the kept bands of the bands nearest each target wavelength (nm)."""
    wl = hyperion_wavelengths(band_numbers)
    return tuple(int(np.argmin(np.abs(wl - t))) for t in targets_nm)


def guide_bands(hyperion_numbers: Sequence[int], coverage: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """For each Hyperion band number, the guide band whose coverage range holds it (else the nearest range centre)."""
    centres = np.array([(lo + hi) / 2.0 for lo, hi in coverage])
    return tuple(
        next((k for k, (lo, hi) in enumerate(coverage) if lo <= n <= hi), int(np.argmin(np.abs(centres - n))))
        for n in hyperion_numbers
    )


# ----------------------------------------------------------------------------- fusion


Fused = dict[str, tuple[Any, np.ndarray, float]]


def fuse_methods(methods: Sequence[Any], scene: Any, case: str) -> tuple[Fused, dict[str, str]]:
    """Fuse ``scene`` with each method (products clipped to [0, 1]), printing one line per method.

    Returns ``({name: (method, fused (H, W, B), seconds)}, {name: reason})``, the second for
    the methods that cannot fuse this scene (e.g. a 1-band guide given to a K-band model).
    """
    done: Fused = {}
    skipped: dict[str, str] = {}
    for i, m in enumerate(methods, 1):
        t0 = time.perf_counter()
        try:
            fused = m.fuse(scene)
        except InputError as exc:
            skipped[m.name] = str(exc)
            print(f"[{case} {i}/{len(methods)}] {m.label}: skipped ({exc})", flush=True)
            continue
        seconds = time.perf_counter() - t0
        done[m.name] = (m, fused, seconds)
        print(f"[{case} {i}/{len(methods)}] {m.label}: fused {fused.shape} in {seconds:.1f} s", flush=True)
    return done, skipped


def real_case(methods: Sequence[Any], path: Path) -> dict[str, Any]:
    """Case 1: the real HS + PAN pair fused at full resolution, scored by the consistency figures."""
    scene = load_paris_hs_pan(path)
    srf = pan_srf(scene.lrms, scene.pan)
    fit = spatial_consistency(scene.lrms, degrade(scene.pan), srf)
    table = MetricTable("consistency at full resolution (no reference)", scene.name, "Hyperion + ALI PAN", RATIO,
                        protocol=f"{DEGRADATION} degradation")  # fmt: skip
    done, skipped = fuse_methods(methods, scene, "HS+PAN")
    for name, (m, fused, seconds) in done.items():
        table.add(name, m.label, full_resolution_consistency(fused, scene.lrms, scene.pan, srf), seconds)
    return {"scene": scene, "table": table, "fused": done, "skipped": skipped, "srf": srf, "srf_fit_lr": fit}


def reduced_case(methods: Sequence[Any], path: Path) -> dict[str, Any]:
    """Case 2: the simulated LR-HSI + real ALI MS, scored by ``evaluate_mhif`` against ``HSim``."""
    scene = load_paris_hs_ms(path, ratio=RATIO)
    table = MetricTable("rr", scene.name, "Hyperion + ALI MS", RATIO, protocol="mhif")
    done, skipped = fuse_methods(methods, scene, "HS+MS")
    for name, (m, fused, seconds) in done.items():
        scores = evaluate_mhif(fused, scene.gt, ratio=RATIO)
        table.add(name, m.label, {k: scores[k] for k in RR_KEYS}, seconds)
    return {"scene": scene, "table": table, "fused": done, "skipped": skipped}


# ----------------------------------------------------------------------------- outputs


def markdown(real: dict[str, Any], reduced: dict[str, Any]) -> str:
    """The two Markdown tables (full-resolution consistency, reduced resolution) with notes."""
    parts = ["### Full resolution (real HS + PAN, no GT): consistency", "", real["table"].to_markdown(), FR_LEGEND, ""]
    parts += _skipped_lines(real["skipped"])
    parts += ["### Reduced resolution (simulated LR-HSI + real ALI MS, vs HSim)", "", reduced["table"].to_markdown()]
    parts += _skipped_lines(reduced["skipped"])
    return "\n".join(parts).rstrip() + "\n"


def _skipped_lines(skipped: dict[str, str]) -> list[str]:
    """Markdown lines naming the skipped methods and why."""
    return [f"Skipped {name}: {reason}" for name, reason in skipped.items()] + ([""] if skipped else [])


def _finite_or_none(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (recursively)."""
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def report(real: dict[str, Any], reduced: dict[str, Any], methods: Sequence[Any], rgb: dict[str, Any]) -> dict[str, Any]:
    """Everything the JSON holds: settings, methods, both tables, skipped methods, the SRF and its fit."""
    method_list = [
        {"name": m.name, "label": m.label, "source": m.source, "checkpoint": m.tags.get("checkpoint")} for m in methods
    ]
    settings = {
        "ratio": RATIO, "consistency_degradation": DEGRADATION, "files": {"hs_pan": HS_PAN_FILE, "hs_ms": HS_MS_FILE},
        "products": "clipped to [0, 1]", "scale": "[0, 1] per band (0.999 quantile), no DN",
        "classical_method_defaults": "method API defaults: glp_hs and cnmf assume the 'zsl' degradation",
    }  # fmt: skip
    return _finite_or_none({
        "settings": settings, "methods": method_list, "composite": rgb,
        "full_resolution": {**real["table"].to_dict(), "legend": FR_LEGEND, "skipped": real["skipped"],
                            "srf": [float(v) for v in real["srf"].ravel()], "srf_fit_lr": real["srf_fit_lr"]},
        "reduced_resolution": {**reduced["table"].to_dict(), "skipped": reduced["skipped"]},
    })  # fmt: skip


def _panel(ax: Any, img: np.ndarray, title: str, grey: bool = False) -> None:
    """One image panel without ticks, titled."""
    ax.imshow(img, cmap="gray" if grey else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _stretched(x: np.ndarray, bands: Sequence[int], reference: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (H, W) display image on [0, 1]: ``bands`` of ``x`` with the reference's 1/99 % stretch."""
    if len(bands) == 1:
        lo, hi = np.percentile(reference[..., bands[0]], (1.0, 99.0))
        return np.clip((x[..., bands[0]] - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    lo3, hi3 = shared_stretch(reference, bands)
    return apply_stretch(x, bands, lo3, hi3)


def _row_panels(
    case: dict[str, Any], rgb: Sequence[int], guide_rgb: Sequence[int], titles: dict[str, str]
) -> list[tuple[str, np.ndarray, bool]]:
    """(title, display image, grey) of one row: LR-HSI x r nearest, guide, each method, [GT]."""
    s = case["scene"]
    ref = s.gt if s.gt is not None else s.lrms
    up = np.repeat(np.repeat(s.lrms, s.ratio, axis=0), s.ratio, axis=1)
    guide = "PAN" if s.pan.shape[-1] == 1 else "ALI MS guide"
    out = [
        (f"LR-HSI (x{s.ratio} nearest)", _stretched(up, rgb, ref), False),
        (guide, _stretched(s.pan, guide_rgb, s.pan), len(guide_rgb) == 1),
    ]
    out += [(f"{m.label}\n{titles[name]}", _stretched(f, rgb, ref), False) for name, (m, f, _) in case["fused"].items()]
    if s.gt is not None:
        out.append(("GT (HSim)", _stretched(s.gt, rgb, ref), False))
    return out


def save_figure_grid(path: Path, real: dict[str, Any], reduced: dict[str, Any], rgb: Sequence[int], ms_rgb: Sequence[int]) -> Path:
    """Write the two-row false-colour grid (module docstring) as a PNG; returns its path."""
    from pansharp_jax.analysis.plots import new_figure, save_figure

    fr = {r.method: f"PSNR_spec {r.metrics['PSNR_spec']:.1f}, CC_pan {r.metrics['CC_pan']:.3f}" for r in real["table"].rows}
    rr = {r.method: f"PSNR {r.metrics['PSNR']:.2f}, SAM {r.metrics['SAM']:.2f}" for r in reduced["table"].rows}
    rows = [
        ("Real Hyperion HS + ALI PAN, full resolution (no GT), ratio 3", _row_panels(real, rgb, (0,), fr)),
        ("Simulated LR-HSI + real ALI MS, reduced resolution (GT = HSim), ratio 3", _row_panels(reduced, rgb, ms_rgb, rr)),
    ]
    ncols = max(len(p) for _, p in rows)
    fig = new_figure(190 * ncols, 600)
    for sub, (title, panels) in zip(fig.subfigures(2, 1, height_ratios=(1.25, 1.0)), rows, strict=True):
        sub.suptitle(title + "; false colour NIR-red-green (Hyperion ~860/650/550 nm)", fontsize=10)
        axes = sub.subplots(1, ncols, squeeze=False)[0]
        for ax, (name, img, grey) in zip(axes, panels):
            _panel(ax, img, name, grey)
        for ax in axes[len(panels):]:
            ax.axis("off")
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        description="MHIF on the real EO-1 Hyperion + ALI Paris scene: full-resolution consistency (HS + PAN) and "
        "reduced-resolution scores (HS + MS). Data files are read under $PANSHARP_DATA.",
        epilog="MHIF methods: bicubic, glp_hs, cnmf; learned: infn, feinfn (with --ckpt). Any other method of the "
        "method API may be named (see 'pansharp fuse --help'); a method that cannot take a case's guide (1-band PAN, "
        "9-band MS) is skipped with the reason.",
    )
    p.add_argument("--out", default="runs/hyperion_paris", metavar="DIR", help="output folder (default: runs/hyperion_paris)")
    p.add_argument("--methods", default=",".join(CLASSICAL), metavar="a,b,c",
                   help=f"comma-separated method names of the method API (default: {','.join(CLASSICAL)})")  # fmt: skip
    p.add_argument("--ckpt", action="append", default=[], metavar="NAME=WORKDIR",
                   help="a learned MHIF model from a 'pansharp train' workdir, e.g. infn=runs/infn (repeatable)")  # fmt: skip
    return p.parse_args(argv)


def resolve_methods(spec: str, ckpts: Sequence[str]) -> list[Any]:
    """The methods of ``--methods`` plus the models named by ``--ckpt NAME=WORKDIR`` (InputError if unknown)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for item in ckpts:
        name, sep, workdir = item.partition("=")
        if not sep or not name.strip() or not workdir.strip():
            raise InputError(f"--ckpt takes NAME=WORKDIR (e.g. infn=runs/infn), got {item!r}")
        if name.strip() not in names:
            names.append(name.strip())
    methods = resolve_many(names, ckpts=list(ckpts))
    for m in methods:
        say_origin(m)
        say_method_fit(m, "generic", RATIO)
    return methods


def data_files() -> tuple[Path, Path]:
    """The two Paris files under ``$PANSHARP_DATA`` (InputError when it is unset or they are missing)."""
    if not os.environ.get("PANSHARP_DATA"):
        raise InputError(f"PANSHARP_DATA is not set: point it at the shared data folder (holding {HS_PAN_FILE} and {HS_MS_FILE})")
    return input_path(HS_PAN_FILE), input_path(HS_MS_FILE)


def run(out: Path, methods: Sequence[Any], files: tuple[Path, Path]) -> dict[str, Any]:
    """Both cases; writes the JSON, the Markdown and the PNG into ``out``; returns the JSON's content."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    numbers = paris_bands(files[0])
    rgb = composite_bands(numbers)
    ms_rgb = guide_bands([int(numbers[i]) for i in rgb], ALI_HYPERION_COVERAGE["ms"])
    real, reduced = real_case(methods, files[0]), reduced_case(methods, files[1])
    composite = {
        "targets_nm": list(COMPOSITE_NM), "hyperion_band_numbers": [int(numbers[i]) for i in rgb],
        "hs_indices": list(rgb), "nominal_nm": [round(float(w), 2) for w in hyperion_wavelengths([numbers[i] for i in rgb])],
        "ms_guide_indices": list(ms_rgb),
    }  # fmt: skip
    content = report(real, reduced, methods, composite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hyperion_paris.json").write_text(json.dumps(content, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (out / "hyperion_paris.md").write_text(markdown(real, reduced), encoding="utf-8")
    save_figure_grid(out / "hyperion_paris.png", real, reduced, rgb, ms_rgb)
    return content


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 2 on an input error (printed on stderr)."""
    args = parse_args(argv)
    try:
        files = data_files()
        methods = resolve_methods(args.methods, args.ckpt)
        out = Path(args.out)
        run(out, methods, files)
    except InputError as exc:
        print(f"hyperion_paris: error: {exc}", file=sys.stderr)
        return 2
    print((out / "hyperion_paris.md").read_text(encoding="utf-8"))
    print(f"wrote hyperion_paris.json, hyperion_paris.md and hyperion_paris.png in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
