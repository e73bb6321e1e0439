"""Reading and writing colour images for restoration: PNG, TIFF and (pan-sharpened) GeoTIFF.

Everything returns (H, W, 3) float32 on [0, 1]:

* PNG / JPEG (Pillow): integers divided by their dtype's maximum (255 for 8 bits); palette
  images are converted to RGB, RGBA loses its alpha band, grey images are refused.
* TIFF / GeoTIFF with 3 bands: integers are divided by their dtype's maximum, floats must
  already lie in [0, 1].
* TIFF / GeoTIFF with more bands (a pan-sharpened product): a true-colour composite of the
  red, green and blue bands, chosen from the sensor band names of
  :mod:`pansharp_jax.data.sensors` (4 bands: blue, green, red, nir -> 3, 2, 1; 8 bands:
  WorldView -> 5, 3, 2; 6 bands: Landsat -> 3, 2, 1; 1-based) or ``bands``, then
  percentile-stretched band by band (2nd -> 0, 98th -> 1, clipped). The stretch is a
  display choice: the restored composite is on that stretched scale, not in DN.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.errors import InputError

PNG_EXTS = (".png", ".jpg", ".jpeg")
TIFF_EXTS = (".tif", ".tiff")
STRETCH = (2.0, 98.0)


def default_rgb(nbands: int) -> tuple[int, int, int]:
    """0-based red, green, blue band indices for an image of ``nbands`` bands (sensor band names)."""
    from pansharp_jax.data.sensors import SENSORS

    if nbands == 3:
        return (0, 1, 2)
    for name in ("QB", "WV3", "Landsat8"):
        s = SENSORS[name]
        if s.nbands == nbands:
            names = s.band_names
            return (names.index("red"), names.index("green"), names.index("blue"))
    raise InputError(f"no default true-colour bands for a {nbands}-band image: pass --bands R,G,B (1-based)")


def parse_bands(text: str | None) -> tuple[int, int, int] | None:
    """``"R,G,B"`` 1-based band numbers -> 0-based tuple (None stays None); InputError if malformed."""
    if text is None:
        return None
    parts = [t.strip() for t in str(text).split(",")]
    if len(parts) != 3 or not all(t.isdigit() and int(t) >= 1 for t in parts):
        raise InputError(f"--bands must be three 1-based band numbers R,G,B, got '{text}'")
    return tuple(int(t) - 1 for t in parts)  # type: ignore[return-value]


def stretch(a: np.ndarray, lo: float = STRETCH[0], hi: float = STRETCH[1]) -> np.ndarray:
    """Per-band percentile stretch of (H, W, C) values to [0, 1] (``lo`` -> 0, ``hi`` -> 1, clipped), float32."""
    a = np.asarray(a, np.float64)
    p0 = np.percentile(a, lo, axis=(0, 1))
    p1 = np.percentile(a, hi, axis=(0, 1))
    return np.clip((a - p0) / np.maximum(p1 - p0, 1e-12), 0.0, 1.0).astype(np.float32)


def true_colour(a: np.ndarray, bands: tuple[int, int, int] | None = None) -> np.ndarray:
    """The stretched true-colour composite of a multi-band (H, W, C) image -> (H, W, 3) float32 on [0, 1]."""
    idx = bands if bands is not None else default_rgb(a.shape[-1])
    if max(idx) >= a.shape[-1]:
        raise InputError(f"band {max(idx) + 1} requested but the image has {a.shape[-1]} bands")
    return stretch(a[..., list(idx)])


def _unit(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind in "biu":
        return (a.astype(np.float64) / np.iinfo(a.dtype).max).astype(np.float32)
    if a.dtype.kind != "f":
        raise InputError(f"{name} has pixel type {a.dtype}: expected real numbers")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} contains NaN or Inf values")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise InputError(f"{name} has float values in [{a.min():.3g}, {a.max():.3g}]: expected [0, 1]")
    return a


def read_image(path: str | os.PathLike[str], bands: tuple[int, int, int] | None = None) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Read a colour image as (H, W, 3) float32 on [0, 1], plus the GeoTIFF georeference (or None).

    ``bands``: 0-based red, green, blue bands of a multi-band TIFF (default: by sensor
    band names, see the module docstring). Raises InputError for a missing or unreadable
    file, a grey image, NaN/Inf, or float values outside [0, 1] (3-band files).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    ext = path.suffix.lower()
    georef = None
    if ext in PNG_EXTS:
        from PIL import Image

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK", "YCbCr") else im)
        except Exception as e:  # noqa: BLE001 - any decoder failure is bad input
            raise InputError(f"unreadable image {path.name}: {' '.join(str(e).split())[:200]}") from None
        if a.ndim == 3 and a.shape[-1] == 4:
            a = a[..., :3]
    elif ext in TIFF_EXTS:
        from pansharp_jax.data.io_geotiff import read_geotiff

        a, georef = read_geotiff(path)
    else:
        raise InputError(f"unsupported image format '{path.suffix or path.name}': use .png, .jpg, .tif or .tiff")
    if a.ndim != 3 or a.shape[-1] < 3:
        raise InputError(f"{path.name} has shape {a.shape}: expected a colour image with 3 bands (or more, GeoTIFF)")
    if a.shape[-1] == 3 and bands is None:
        return _unit(a, path.name), georef
    a = np.asarray(a, np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{path.name} contains NaN or Inf values")
    return true_colour(a, bands), georef


def check_output(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """An output image path: .png/.tif/.tiff, its folder exists, replaced only with ``overwrite``."""
    out = Path(path)
    if out.suffix.lower() not in (".png", *TIFF_EXTS):
        raise InputError(f"unsupported output format '{out.suffix or out.name}': use .png, .tif or .tiff")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder: give a file name")
    if not out.absolute().parent.is_dir():
        raise InputError(f"the folder of --out {out} does not exist")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists: pass --overwrite to replace it")
    return out


def write_image(path: str | os.PathLike[str], image: np.ndarray, georef: dict[str, Any] | None = None) -> Path:
    """Write (H, W, 3) values on [0, 1]: PNG as 8-bit, TIFF as float32 (GeoTIFF with ``georef``)."""
    path = Path(path)
    a = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if path.suffix.lower() == ".png":
        from PIL import Image

        Image.fromarray(np.round(a * 255.0).astype(np.uint8)).save(path)
    else:
        from pansharp_jax.data.io_geotiff import write_geotiff

        write_geotiff(path, a, georef, dtype=np.float32)
    return path
