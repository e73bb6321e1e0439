"""Evaluation protocols: named presets that fix every knob of the scores.

Published pan-sharpening numbers disagree partly because every group evaluates
differently. A :class:`Protocol` names one convention completely, so that a table can say
which one produced it and a user can reproduce a peer's numbers:

==================  =========================================================================
``toolbox``         The default: the MATLAB toolbox as shipped in DLPan-Toolbox
                    (``02-Test-toolbox-for-traditional-and-DL(Matlab)``, ``indexes_evaluation.m``
                    and ``indexes_evaluation_FS.m``, commit a34f884): border cut 21
                    (``I(21:end-21, 21:end-21, :)``), Q2n / Q_avg on 32 x 32 blocks, the
                    scene's own radiometric depth, each sensor's MTF. Equal to
                    :func:`~pansharp_jax.metrics.evaluate_reduced` / ``evaluate_full``.
``toolbox-nocut``   The same with ``flag_cut_bounds = 0`` (the spec's "nocut" values).
``cut30``           The toolbox metrics with ``dim_cut = 30`` (``I(30:end-30, ...)``), as in
                    group scripts that crop 30 pixels.
``pancollection``   PanCollection / DLPan Python validation, ``analysis_accu`` of
                    ``UDL/pansharpening/common/evaluate.py`` at the defaults its test loop
                    uses: ``img[dim_cut-1:-dim_cut]`` with ``dim_cut = 1`` (drops only the
                    LAST row and column), SAM whose mean angle is rounded to 1e-6 rad and
                    converted with pi = 3.14159256, ERGAS, PSNR (mean over bands of
                    ``10 log10(1 / MSE_b)`` on [0, 1]); no Q2n, Q_avg, SCC or SSIM (Q2n is
                    commented out there). Full resolution: its ``FS_index`` is a port of the
                    toolbox's HQNR, scored here as the toolbox.
``efficient-mif``   Efficient-MIF's batched evaluation, ``AnalysisPanAcc`` of
                    ``utils/metric_sharpening.py``: ``analysis_accu(..., choices=5)`` (the
                    cut and SAM above, plus CC = mean over bands of the Pearson correlation)
                    and scikit-image ``structural_similarity(data_range=1)`` (7 x 7 uniform
                    window, sample covariance, 3-pixel frame left out, mean over bands).
                    Full resolution: images x a per-sensor DN table (QB 2047, IKONOS 1023,
                    WV2 2047, WV3 2047, GF2 1023, others 2047) clipped to [0, max], HQNR
                    with ``L = 11`` for every sensor, and QB and GF2 filtered with the
                    IKONOS MTF gains.
==================  =========================================================================

A protocol only changes *how* the standard metrics are computed; the metric functions
themselves stay those of :mod:`~pansharp_jax.metrics.reduced` / ``full`` (float64, DN
where the toolbox uses DN). :func:`register_protocol` adds a preset (for example from a
config); :func:`get_protocol` looks one up by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

# pi as written in analysis_accu (PanCollection / Efficient-MIF): 3.14159256, not 3.14159265.
PANCOLLECTION_PI = 3.14159256
EFFICIENT_MIF_DN = {"QB": 2047.0, "IKONOS": 1023.0, "WV2": 2047.0, "WV3": 2047.0, "GF2": 1023.0}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Every knob of an evaluation, named.

    Attributes:
      name: preset name (``toolbox``, ``pancollection``...).
      source: the file (and repository) whose convention this follows.
      summary: one line for tables and ``--help``.
      cut: border cut, MATLAB ``I(cut:end-cut, cut:end-cut, :)``, i.e. 0-based
        ``x[cut-1 : H-cut]``; 0 = none. (``cut = 1`` drops only the last row and column.)
      block: Q2n / Q_avg / full-resolution block side (pixels).
      reduced_keys: the reduced-resolution metrics the convention reports, in order.
      sam_style: ``toolbox`` (exact degrees) or ``pancollection`` (mean radians rounded to
        6 decimals, then x 180 / 3.14159256).
      ssim_style: ``gaussian`` (Wang et al.'s 11 x 11, sigma 1.5, as ``metrics.ssim``) or
        ``uniform7`` (scikit-image's default 7 x 7 box with sample covariance).
      full_dn: DN of value 1.0 at full resolution: ``scene`` (the scene's bits), a number
        (``2047.0`` = L 11 for every sensor), or ``table`` (:attr:`full_dn_table`).
      full_dn_table: sensor name -> DN of 1.0 when ``full_dn == 'table'`` (else 2047).
      full_clip: clip the inputs to [0, 1] (i.e. [0, max DN]) before the full-resolution indices.
      mtf_sensor: sensor name -> the sensor whose MTF gains D_lambda_K uses instead.
    """

    name: str
    source: str
    summary: str
    cut: int = 21
    block: int = 32
    reduced_keys: tuple[str, ...] = ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM")
    sam_style: str = "toolbox"
    ssim_style: str = "gaussian"
    full_dn: str | float = "scene"
    full_dn_table: Mapping[str, float] = dataclasses.field(default_factory=dict)
    full_clip: bool = False
    mtf_sensor: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cut < 0:
            raise InputError(f"protocol {self.name}: the border cut must be >= 0, got {self.cut}")
        if self.sam_style not in ("toolbox", "pancollection"):
            raise InputError(f"protocol {self.name}: sam_style must be 'toolbox' or 'pancollection', got {self.sam_style!r}")
        if self.ssim_style not in ("gaussian", "uniform7"):
            raise InputError(f"protocol {self.name}: ssim_style must be 'gaussian' or 'uniform7', got {self.ssim_style!r}")
        unknown = set(self.reduced_keys) - set(REDUCED_CHOICES)
        if unknown:
            raise InputError(f"protocol {self.name}: unknown metrics {sorted(unknown)}; known: {', '.join(REDUCED_CHOICES)}")
        if not (self.full_dn in ("scene", "table") or (isinstance(self.full_dn, (int, float)) and self.full_dn > 0)):
            raise InputError(f"protocol {self.name}: full_dn must be 'scene', 'table' or a positive number, got {self.full_dn!r}")

    def describe(self) -> dict[str, Any]:
        """The protocol as a JSON-able dict (recorded beside every table it scores)."""
        d = dataclasses.asdict(self)
        d["reduced_keys"] = list(self.reduced_keys)
        d["full_dn_table"] = dict(self.full_dn_table)
        d["mtf_sensor"] = dict(self.mtf_sensor)
        return d

    def max_dn_full(self, sensor_name: str, scene_max_dn: float) -> float:
        """DN of value 1.0 for the full-resolution indices of a ``sensor_name`` scene."""
        if self.full_dn == "scene":
            return float(scene_max_dn)
        if self.full_dn == "table":
            return float(self.full_dn_table.get(sensor_name, 2047.0))
        return float(self.full_dn)


REDUCED_CHOICES = ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC")

_TOOLBOX_SRC = "DLPan-Toolbox 02-Test-toolbox-for-traditional-and-DL(Matlab): indexes_evaluation.m, indexes_evaluation_FS.m (a34f884)"
_PANC_SRC = "PanCollection UDL/pansharpening/common/evaluate.py: analysis_accu (defaults of its test loop)"

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("toolbox", _TOOLBOX_SRC, "MATLAB toolbox: cut 21, Q blocks 32, scene bits, sensor MTF (default)"),
        Protocol("toolbox-nocut", _TOOLBOX_SRC + ", flag_cut_bounds = 0", "MATLAB toolbox without the border cut", cut=0),
        Protocol("cut30", _TOOLBOX_SRC + ", dim_cut = 30 as group scripts set it", "MATLAB toolbox metrics with a 30-pixel cut", cut=30),
        Protocol(
            "pancollection", _PANC_SRC,
            "PanCollection/DLPan Python: last row/col cut, SAM rounded (pi 3.14159256), ERGAS, PSNR; no Q2n",
            cut=1, reduced_keys=("SAM", "ERGAS", "PSNR"), sam_style="pancollection",
        ),
        Protocol(
            "efficient-mif",
            "Efficient-MIF utils/metric_sharpening.py: AnalysisPanAcc (analysis_accu choices=5 + skimage SSIM; HQNR L=11)",
            "Efficient-MIF batched: PanCollection SAM/ERGAS/PSNR + CC, skimage SSIM; fr DN table, IKONOS MTF for QB/GF2",
            cut=1, reduced_keys=("SAM", "ERGAS", "PSNR", "CC", "SSIM"), sam_style="pancollection", ssim_style="uniform7",
            full_dn="table", full_dn_table=EFFICIENT_MIF_DN, full_clip=True, mtf_sensor={"QB": "IKONOS", "GF2": "IKONOS"},
        ),
    )
}  # fmt: skip
DEFAULT_PROTOCOL = "toolbox"


def register_protocol(protocol: Protocol, *, overwrite: bool = False) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (the one registry of presets); returns it.

    Raises InputError when the name exists and ``overwrite`` is False.
    """
    if protocol.name in PROTOCOLS and not overwrite:
        raise InputError(f"protocol {protocol.name!r} exists; pass overwrite=True to replace it")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str | Protocol | None) -> Protocol:
    """A protocol by name (``None`` = ``toolbox``); InputError naming the known ones."""
    if isinstance(name, Protocol):
        return name
    key = DEFAULT_PROTOCOL if name is None else str(name).strip().lower()
    if key not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]


# --- metric variants (float64 NumPy; small, so no jit) ----------------------------------------
def sam_pancollection(gt: np.ndarray, fused: np.ndarray) -> float:
    """SAM as ``analysis_accu`` computes it, in "degrees" (x 180 / 3.14159256).

    gt, fused: (H, W, C), any unit. Mean angle over pixels whose norm product is > 0 (NaN
    angles from rounding count as 0), rounded half-to-even to 1e-6 rad (torch ``round``).
    """
    g, f = np.asarray(gt, np.float64), np.asarray(fused, np.float64)
    t = np.sqrt(np.sum(g * g, -1) * np.sum(f * f, -1))
    valid = t > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        angle = np.arccos(np.sum(g * f, -1) / t)
    total = float(np.sum(np.where(np.isnan(angle), 0.0, angle)))
    mean = total / int(valid.sum()) if valid.any() else total
    return float(np.round(mean * 1e6) / 1e6 * 180.0 / PANCOLLECTION_PI)


def cc_mean(gt: np.ndarray, fused: np.ndarray) -> float:
    """Mean over bands of the Pearson correlation of ``fused`` and ``gt`` (H, W, C)."""
    g, f = np.asarray(gt, np.float64), np.asarray(fused, np.float64)
    gc, fc = g - g.mean(axis=(0, 1)), f - f.mean(axis=(0, 1))
    num = np.sum(gc * fc, axis=(0, 1))
    return float(np.mean(num / np.sqrt(np.sum(gc * gc, axis=(0, 1)) * np.sum(fc * fc, axis=(0, 1)))))


def ssim_uniform7(gt: np.ndarray, fused: np.ndarray, data_range: float = 1.0) -> float:
    """scikit-image's default SSIM: 7 x 7 box window, sample covariance, mean over bands.

    gt, fused: (H, W, C) on a scale whose range is ``data_range``. The SSIM map is taken
    where the window fits inside the image (scikit-image computes it everywhere and then
    drops a 3-pixel frame: the same pixels).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    win, n = 7, 49
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    g, f = np.asarray(gt, np.float64), np.asarray(fused, np.float64)

    def box(a: np.ndarray) -> np.ndarray:
        return sliding_window_view(a, (win, win), axis=(0, 1)).mean(axis=(-2, -1))

    ux, uy = box(g), box(f)
    cov = n / (n - 1)
    vx, vy = cov * (box(g * g) - ux * ux), cov * (box(f * f) - uy * uy)
    vxy = cov * (box(g * f) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(np.mean(s.mean(axis=(0, 1))))


# --- the two entry points ----------------------------------------------------------------------
def evaluate_reduced_protocol(
    fused: Any, gt: Any, *, ratio: int = 4, max_dn: float = 2047.0, protocol: str | Protocol | None = None
) -> dict[str, float]:
    """Reduced-resolution scores of one image under ``protocol``.

    Args:
      fused, gt: (H, W, C) on the [0, 1] scale (not clipped).
      ratio: PAN/MS ratio (ERGAS). max_dn: DN of 1.0 (toolbox metrics on DN).
      protocol: a name from :data:`PROTOCOLS` or a :class:`Protocol` (None = ``toolbox``).

    Returns:
      ``{metric: float}`` with the protocol's :attr:`Protocol.reduced_keys`, in that order
      (SAM in degrees, PSNR in dB).
    """
    from pansharp_jax.metrics.reduced import cut_border, evaluate_reduced

    p = get_protocol(protocol)
    f, g = np.asarray(fused, np.float64), np.asarray(gt, np.float64)
    if f.ndim != 3:
        raise InputError(f"protocol scores take one (H, W, C) image, got shape {f.shape}")
    base = evaluate_reduced(f, g, ratio=ratio, max_dn=max_dn, block=p.block, cut=p.cut)
    fc, gc = (np.asarray(cut_border(a, p.cut)) for a in (f, g))
    out: dict[str, float] = {}
    for key in p.reduced_keys:
        if key == "SAM" and p.sam_style == "pancollection":
            out[key] = sam_pancollection(gc, fc)
        elif key == "SSIM" and p.ssim_style == "uniform7":
            out[key] = ssim_uniform7(gc, fc, 1.0)
        elif key == "CC":
            out[key] = cc_mean(gc, fc)
        else:
            out[key] = float(base[key])
    return out


def evaluate_full_protocol(
    fused: Any, lrms: Any, pan: Any, *, sensor: Any, ratio: int = 4, max_dn: float = 2047.0,
    protocol: str | Protocol | None = None,
) -> dict[str, float]:  # fmt: skip
    """Full-resolution indices (D_lambda_K, D_S, HQNR, D_lambda, QNR) under ``protocol``.

    fused (H, W, C), lrms (H/ratio, W/ratio, C), pan (H, W, 1) on [0, 1]; ``sensor`` a
    name or :class:`~pansharp_jax.data.sensors.Sensor`; ``max_dn`` the scene's DN of 1.0
    (used when the protocol's ``full_dn`` is ``scene``).
    """
    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.metrics.full import evaluate_full

    p = get_protocol(protocol)
    s = get_sensor(sensor)
    arrays = [np.asarray(a, np.float64) for a in (fused, lrms, pan)]
    if p.full_clip:
        arrays = [np.clip(a, 0.0, 1.0) for a in arrays]
    mtf = get_sensor(p.mtf_sensor[s.name]) if s.name in p.mtf_sensor else s
    out = evaluate_full(*arrays, sensor=mtf, ratio=ratio, max_dn=p.max_dn_full(s.name, max_dn), block=p.block)
    return {k: float(v) for k, v in out.items()}


def protocol_names() -> list[str]:
    """The known preset names, default first."""
    return [DEFAULT_PROTOCOL] + [n for n in PROTOCOLS if n != DEFAULT_PROTOCOL]


__all__ = [
    "DEFAULT_PROTOCOL", "PROTOCOLS", "Protocol", "cc_mean", "evaluate_full_protocol", "evaluate_reduced_protocol",
    "get_protocol", "protocol_names", "register_protocol", "sam_pancollection", "ssim_uniform7",
]  # fmt: skip
