"""The scene: one pan-sharpening problem instance, as every loader returns it.

Arrays are NumPy, HWC, float64 on the [0, 1] scale (DN / (2**bits - 1)); float64 so
that DN round trips and toolbox-exact metrics lose nothing. Models cast to float32.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pansharp_jax.data.sensors import Sensor, get_sensor
from pansharp_jax.errors import InputError


@dataclasses.dataclass
class Scene:
    """A pan-sharpening scene.

    Attributes:
      lrms: (h, w, C) low-resolution MS, float64 in [0, 1].
      pan: (H, W, 1) panchromatic, float64 in [0, 1], with H = ratio*h, W = ratio*w.
      gt: optional (H, W, C) reference MS (reduced-resolution scenes), [0, 1].
      sensor: the sensor (MTF gains, bits, band names).
      ratio: PAN/MS resolution ratio (integer, usually 4).
      bits: radiometric depth; DN = value x (2**bits - 1).
      name: a label for tables and plots.
      georef: optional georeference of the PAN grid: ``{"crs": ..., "transform": (a, b, c, d, e, f)}``
        (GDAL geotransform order), carried to fused products.
      assumed: what the loader guessed rather than read from the file or got as an
        argument, one entry per value, e.g. ``{"sensor": "generic (no sensor given, none
        in the file or its name)", "bits": "11 (the sensor's default)"}``; empty when
        nothing was guessed. Front ends print it ("pass --sensor/--bits").
      task: ``"pansharpening"`` (default: ``pan`` has exactly one band) or ``"mhif"``
        (multispectral/hyperspectral image fusion: ``lrms`` is the low-resolution HSI and
        ``pan`` the high-resolution MSI guide, e.g. RGB, with one or more bands).
    """

    lrms: np.ndarray
    pan: np.ndarray
    gt: np.ndarray | None = None
    sensor: Sensor = dataclasses.field(default_factory=lambda: get_sensor(None))
    ratio: int = 4
    bits: int = 11
    name: str = "scene"
    georef: dict[str, Any] | None = None
    assumed: dict[str, str] = dataclasses.field(default_factory=dict)
    task: str = "pansharpening"

    def __post_init__(self) -> None:
        self.lrms = _as_hwc(self.lrms, "lrms")
        self.pan = _as_hwc(self.pan, "pan")
        if self.gt is not None:
            self.gt = _as_hwc(self.gt, "gt")
        self.sensor = get_sensor(self.sensor)
        validate_scene(self)

    @property
    def max_dn(self) -> float:
        """``2**bits - 1``: the DN of value 1.0 (2047 for 11-bit data)."""
        return float(2**self.bits - 1)

    @property
    def nbands(self) -> int:
        return int(self.lrms.shape[-1])

    @property
    def has_gt(self) -> bool:
        return self.gt is not None

    def to_dn(self, x: np.ndarray) -> np.ndarray:
        """[0, 1] -> DN (float64)."""
        return np.asarray(x, np.float64) * self.max_dn

    def from_dn(self, x: np.ndarray) -> np.ndarray:
        """DN -> [0, 1] (float64)."""
        return np.asarray(x, np.float64) / self.max_dn


TASKS = ("pansharpening", "mhif")


def _as_hwc(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise InputError(f"{what} has unsupported data type {a.dtype}: expected real numbers (integer or float)")
    if a.size == 0:
        raise InputError(f"{what} is empty (shape {'x'.join(str(d) for d in a.shape) or 'scalar'})")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise InputError(f"{what} must be HxW or HxWxC, got shape {a.shape}")
    return a.astype(np.float64, copy=False)


def validate_scene(scene: Scene, *, range_tol: float = 1e-6) -> None:
    """Check shapes, ratio, band count and values; raise InputError naming the problem.

    Checks: PAN has one band (any number >= 1 for ``task="mhif"``); PAN size = ratio x
    LRMS size; GT (if any) is PAN-sized with the LRMS band count; the sensor's band
    count matches (non-generic sensors); no NaN/Inf; values within [0, 1] (i.e. within
    the sensor's DN range), up to ``range_tol``.
    """
    lrms, pan, gt, r = scene.lrms, scene.pan, scene.gt, scene.ratio
    if not isinstance(r, (int, np.integer)) or r < 1:
        raise InputError(f"ratio must be a positive integer, got {r!r}")
    if scene.task not in TASKS:
        raise InputError(f"unknown scene task {scene.task!r}: use {' or '.join(TASKS)}")
    if pan.shape[-1] != 1 and scene.task != "mhif":
        raise InputError(f"pan must have one band, got {pan.shape[-1]}")
    h, w = pan.shape[:2]
    if h % r or w % r:
        raise InputError(f"PAN size {h}x{w} is not a multiple of the ratio {r}")
    if lrms.shape[:2] != (h // r, w // r):
        raise InputError(
            f"shape mismatch: LRMS is {lrms.shape[0]}x{lrms.shape[1]}, expected PAN size / ratio = {h // r}x{w // r}"
        )
    scene.sensor.gains(lrms.shape[-1])  # raises on a wrong band count
    if gt is not None and gt.shape != (h, w, lrms.shape[-1]):
        raise InputError(f"shape mismatch: GT is {gt.shape}, expected {(h, w, lrms.shape[-1])}")
    for what, a in (("lrms", lrms), ("pan", pan), ("gt", gt)):
        if a is None:
            continue
        check_finite(a, what)
        lo, hi = float(a.min()), float(a.max())
        if lo < -range_tol or hi > 1 + range_tol:
            raise InputError(
                f"{what} values outside the sensor's DN range [0, {scene.max_dn:g}]: "
                f"found [{lo * scene.max_dn:g}, {hi * scene.max_dn:g}] DN (bits={scene.bits})"
            )


def check_finite(a: np.ndarray, what: str) -> None:
    """Raise InputError if ``a`` holds NaN or Inf, saying how many."""
    bad = ~np.isfinite(a)
    if bad.any():
        raise InputError(f"{what} contains {int(bad.sum())} NaN/Inf values")
