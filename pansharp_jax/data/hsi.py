"""Multispectral/hyperspectral image fusion (MHIF) data: simulation, loaders, training patches.

MHIF fuses a low-resolution hyperspectral image (LR-HSI, ``h x w x B``) with a
high-resolution multispectral image (HR-MSI, e.g. RGB, ``H x W x K``) into an HR-HSI.
A :class:`~pansharp_jax.data.scene.Scene` with ``task="mhif"`` holds it: ``lrms`` is the
LR-HSI, ``pan`` the HR-MSI guide (K >= 1 bands), ``gt`` the HR-HSI when known.

Simulation (reduced-resolution protocol of the MHIF literature, CAVE/Harvard):
  * LR-HSI = blur(HR-HSI) then keep rows/cols ``phase, phase + r, ...`` (:func:`blur_decimate`);
  * HR-MSI = HR-HSI @ SRF, the SRF (B x K) with every column summing to 1 (:func:`normalise_srf`).

The default :data:`DEGRADATIONS` preset ``"zsl"`` follows R. Dian et al.'s ZSL code
(renweidian/ZSL: ``fspecial('gaussian', 7, 3)``, first sample kept) and the public Python
CAVE/Harvard data scripts in that line: ``fspecial('gaussian', 7, 3)`` (7 x 7, sigma 3 px,
the same kernel for every ratio), ``convolve2d(..., boundary='symm', mode='same')``,
decimation ``x[0::r, 0::r]`` (phase 0), and the Nikon D700 SRF of ``create_F`` whose rows
(our columns) sum to 1 (ZSL's demo filters circularly, via ``psf2otf``). The shared
``nikon_d700_srf_31x3.mat`` (key ``R``, from MHF-Net) is that matrix transposed. Other
presets: ``"mhf"`` (MHF-Net: r x r block average) and ``"hysure"`` (HySure's Paris demo:
5 x 5 Starck-Murtagh B3-spline filter, circular boundary, phase 0). Nothing here adds noise.

Files (readers take a path or a name under ``$PANSHARP_DATA``):
  * CAVE ``.mat``: ``Omsi`` uint16 (16-bit PNG stack, divided by 65535) or ``msi`` float
    in [0, 1]; 31 bands, 400-700 nm, 10 nm steps. :func:`load_cave_scene` crops the
    top-left corner to a multiple of the ratio (201 -> 200) and simulates the pair.
  * Harvard ``.mat``: key ``ref`` (1392 x 1040 x 31 float), normalised by the image's own
    maximum as the public scripts do; :func:`load_harvard_scene`.
  * HySure Paris (EO-1 Hyperion + ALI): ``HSim`` (128 kept bands), ``MSim`` (9 ALI MS bands,
    same 30 m grid) / ``PCim`` (ALI PAN, 3x finer), ``non_del_bands`` (1-based Hyperion band
    numbers of the kept bands). Every band is divided by its 0.999 quantile and clipped to
    [0, 1] (the HySure demos' normalisation; they clip the HS only, we clip all so that
    the scene lies on [0, 1]). :func:`load_paris_hs_ms` simulates LR-HSI from ``HSim`` at
    ratio 3 with the ``"hysure"`` preset (GT = ``HSim``); :func:`load_paris_hs_pan` is the
    real full-resolution pair (no GT).
  * PanCollection HISR ``.h5`` (HSRnet / Fusformer / Efficient-MIF): datasets ``GT``,
    ``LRHSI``, ``HSI_up`` (the upsampled LR-HSI), ``RGB``, each N x C x H x W float on
    [0, 1] (no DN scaling); :data:`HISR_KEYS`, :func:`load_hisr_h5`, :func:`hisr_source`.
    Efficient-MIF's loader notes that its CAVE ``RGB`` is stored in B, G, R order.

Training patches: :func:`mhif_patches` simulates whole images and cuts aligned patches into
NHWC arrays ``lrms``/``pan``/``gt``/``lms`` (``lms`` = MATLAB-bicubic upsampled LR-HSI, the
field's ``HSI_up``); ``np.savez(path, **arrays)`` gives the file that the trainer's
``data.kind = 'arrays'`` reads (``configs/default.py: cave_mhif``), and
``ArraySource(**arrays, ratio=r)`` the in-memory source.

Arrays are HWC (or (..., H, W, C)), float on [0, 1]; functions are pure; jittable ones take
``ratio`` and the degradation as static arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pansharp_jax.data.io import find_input
from pansharp_jax.data.io_mat import open_array_file
from pansharp_jax.data.scene import Scene
from pansharp_jax.errors import InputError

PathLike = str | os.PathLike[str]
HISR_KEYS = {"lrms": "LRHSI", "pan": "RGB", "lms": "HSI_up", "gt": "GT"}
SRF_FILE = "hs/nikon_d700_srf_31x3.mat"
# HySure's Paris demos: Hyperion band numbers (1-based) seen by each ALI band.
ALI_HYPERION_COVERAGE = {
    "ms": ((9, 10), (11, 16), (18, 25), (28, 33), (42, 45), (49, 53), (106, 115), (141, 160), (193, 219)),
    "pan": ((14, 33),),
}
_HSI_KEYS = ("Omsi", "msi", "ref", "HSI", "hsi", "GT", "gt", "data")


# ----------------------------------------------------------------------------- degradation


def gaussian_psf(size: int, sigma: float) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: (size, size) float64, sums to 1, tails < eps*max zeroed."""
    x = np.arange(size) - (size - 1) / 2.0
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def starck_murtagh_psf() -> np.ndarray:
    """The 5 x 5 B3-spline (Starck-Murtagh) filter ``outer(v, v) / 256``, v = (1, 4, 6, 4, 1)."""
    v = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
    return np.outer(v, v) / 256.0


@dataclasses.dataclass(frozen=True)
class Degradation:
    """How the LR-HSI is made from the HR-HSI: a PSF, a boundary rule and a decimation phase.

    Attributes:
      name: a label (the preset's key).
      kernel: ``"gaussian"`` (``size``, ``sigma`` in HR pixels), ``"starck_murtagh"`` (5 x 5)
        or ``"box"`` (r x r block average, ``size``/``sigma``/``phase``/``boundary`` unused).
      size, sigma: the Gaussian's side (odd) and standard deviation.
      phase: first kept row/column, 0 <= phase < ratio (``x[phase::r, phase::r]``).
      boundary: padding for the ``'same'`` convolution: ``"symmetric"`` (scipy ``'symm'``:
        mirror with the edge sample repeated), ``"circular"`` or ``"replicate"``.
    """

    name: str
    kernel: str = "gaussian"
    size: int = 7
    sigma: float = 3.0
    phase: int = 0
    boundary: str = "symmetric"

    def psf(self, ratio: int) -> np.ndarray:
        """The (k, k) float64 point spread function, summing to 1."""
        if self.kernel == "gaussian":
            if self.size < 1 or self.size % 2 == 0 or not self.sigma > 0:
                raise InputError(f"degradation {self.name}: Gaussian size must be odd and sigma > 0")
            return gaussian_psf(self.size, self.sigma)
        if self.kernel == "starck_murtagh":
            return starck_murtagh_psf()
        if self.kernel == "box":
            return np.full((ratio, ratio), 1.0 / (ratio * ratio))
        raise InputError(f"degradation {self.name}: unknown kernel {self.kernel!r}")


DEGRADATIONS: dict[str, Degradation] = {
    "zsl": Degradation("zsl", "gaussian", 7, 3.0, 0, "symmetric"),
    "mhf": Degradation("mhf", "box"),
    "hysure": Degradation("hysure", "starck_murtagh", 5, 0.0, 0, "circular"),
}
_PAD = {"symmetric": "symmetric", "circular": "wrap", "replicate": "edge"}


def get_degradation(spec: str | Degradation) -> Degradation:
    """A :class:`Degradation` from a preset name (``zsl``, ``mhf``, ``hysure``) or itself."""
    if isinstance(spec, Degradation):
        return spec
    if spec not in DEGRADATIONS:
        raise InputError(f"unknown degradation {spec!r}: use one of {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[spec]


@functools.partial(jax.jit, static_argnames=("ratio", "degradation"))
def blur_decimate(x: jax.Array, ratio: int, degradation: str | Degradation = "zsl") -> jax.Array:
    """Blur each band with the PSF ('same' size) and keep every ``ratio``-th row/column.

    Args:
      x: (..., H, W, C) image, any scale (linear operation); H, W multiples of ``ratio``.
      ratio: decimation factor (static).
      degradation: preset name or :class:`Degradation` (static).

    Returns:
      (..., H / ratio, W / ratio, C), the dtype of ``x``. Equals scipy's
      ``convolve2d(band, psf, boundary='symm', mode='same')[phase::r, phase::r]`` for the
      ``"symmetric"`` boundary (``'wrap'`` for ``"circular"``); ``"box"`` is the block mean.
    """
    d = get_degradation(degradation)
    x = jnp.asarray(x)
    h, w, c = x.shape[-3:]
    if h % ratio or w % ratio:
        raise InputError(f"image size {h}x{w} is not a multiple of the ratio {ratio}")
    if not 0 <= d.phase < ratio:
        raise InputError(f"decimation phase {d.phase} outside [0, {ratio})")
    lead = x.shape[:-3]
    xb = x.reshape((-1, h, w, c))
    if d.kernel == "box":
        out = xb.reshape((-1, h // ratio, ratio, w // ratio, ratio, c)).mean(axis=(2, 4))
        return out.reshape((*lead, h // ratio, w // ratio, c))
    psf = d.psf(ratio)
    p = psf.shape[0] // 2
    if d.boundary not in _PAD:
        raise InputError(f"unknown boundary {d.boundary!r}: use {', '.join(_PAD)}")
    xp = jnp.pad(xb, ((0, 0), (p, p), (p, p), (0, 0)), mode=_PAD[d.boundary])[:, d.phase :, d.phase :, :]
    kern = jnp.asarray(np.tile(psf[::-1, ::-1, None, None], (1, 1, 1, c)), x.dtype)  # HWIO, depthwise
    out = jax.lax.conv_general_dilated(
        xp, kern, (ratio, ratio), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
        precision=jax.lax.Precision.HIGHEST,
    )[:, : h // ratio, : w // ratio, :]  # fmt: skip
    return out.reshape((*lead, h // ratio, w // ratio, c))


def normalise_srf(srf: Any) -> np.ndarray:
    """(B, K) spectral response with each column (one MSI band) scaled to sum to 1, float64."""
    r = np.asarray(srf, np.float64)
    if r.ndim != 2 or np.any(r < 0) or np.any(r.sum(axis=0) <= 0):
        raise InputError(f"SRF must be a non-negative B x K matrix with non-zero columns, got shape {r.shape}")
    return r / r.sum(axis=0, keepdims=True)


def spectral_response(hsi: jax.Array, srf: Any) -> jax.Array:
    """HR-MSI = HSI @ SRF: (..., H, W, B) x (B, K) -> (..., H, W, K), same scale as ``hsi``."""
    hsi = jnp.asarray(hsi)
    srf = jnp.asarray(srf, hsi.dtype)
    if srf.ndim != 2 or srf.shape[0] != hsi.shape[-1]:
        raise InputError(f"SRF {tuple(srf.shape)} does not match {hsi.shape[-1]} HSI bands")
    return jnp.einsum("...b,bk->...k", hsi, srf, precision=jax.lax.Precision.HIGHEST)


def crop_to_multiple(x: np.ndarray, ratio: int) -> np.ndarray:
    """The top-left ``(H - H % ratio) x (W - W % ratio)`` corner of an (H, W, ...) array."""
    h, w = x.shape[0] - x.shape[0] % ratio, x.shape[1] - x.shape[1] % ratio
    if h == 0 or w == 0:
        raise InputError(f"image {x.shape[0]}x{x.shape[1]} is smaller than the ratio {ratio}")
    return x[:h, :w]


# ----------------------------------------------------------------------------- files


def _read(path: PathLike, names: Sequence[str]) -> dict[str, np.ndarray]:
    p = find_input(path)
    f = open_array_file(p)
    try:
        have = f.names()
        missing = [n for n in names if n not in have]
        if missing:
            raise InputError(f"{p.name}: variable(s) {', '.join(missing)} not found; found: {f.describe()}")
        return {n: np.asarray(f.read(n)) for n in names}
    finally:
        f.close()


def load_srf(path: PathLike = SRF_FILE, key: str = "R") -> np.ndarray:
    """The camera SRF (B x K, e.g. Nikon D700 31 x 3), columns normalised to sum to 1.

    ``path`` defaults to ``hs/nikon_d700_srf_31x3.mat`` under ``$PANSHARP_DATA``; a K x B
    matrix (more columns than rows) is transposed.
    """
    r = _read(path, [key])[key].astype(np.float64)
    return normalise_srf(r.T if r.ndim == 2 and r.shape[1] > r.shape[0] else r)


def read_hsi(path: PathLike, key: str | None = None, *, norm: str = "auto") -> np.ndarray:
    """One hyperspectral cube from a .mat/.h5/.npz file, (H, W, B) float64 on [0, 1].

    Args:
      path: the file (or a name under ``$PANSHARP_DATA``).
      key: the variable; default the first 3-D one of ``Omsi, msi, ref, HSI, hsi, GT, gt, data``.
      norm: ``"auto"`` (uint16 / 65535, uint8 / 255, floats with max <= 1.5 kept) or
        ``"max"`` (divide by the image's maximum: Harvard's convention).
    """
    p = find_input(path)
    f = open_array_file(p)
    try:
        names = f.names()
        if key is None:
            key = next((k for k in _HSI_KEYS if k in names and len(f.shape(k)) == 3), None)
            if key is None:
                raise InputError(f"no hyperspectral cube in {p.name}; found: {f.describe()}; pass key=")
        elif key not in names:
            raise InputError(f"variable {key!r} not found in {p.name}; found: {f.describe()}")
        a = np.asarray(f.read(key))
    finally:
        f.close()
    if a.ndim != 3 or a.dtype.kind not in "uif":
        raise InputError(f"{key} in {p.name} must be a real H x W x B cube, got {a.shape} {a.dtype}")
    x = a.astype(np.float64)
    if norm == "max":
        return x / x.max()
    if norm != "auto":
        raise InputError(f"unknown norm {norm!r}: use 'auto' or 'max'")
    if a.dtype == np.uint16:
        return x / 65535.0
    if a.dtype == np.uint8:
        return x / 255.0
    if a.dtype.kind == "f" and x.max() <= 1.5:
        return x
    raise InputError(f"{key} in {p.name} ({a.dtype}, max {x.max():g}) is not on [0, 1]: pass norm='max'")


def simulate_mhif(
    hr_hsi: Any,
    srf: Any,
    *,
    ratio: int,
    degradation: str | Degradation = "zsl",
    name: str = "mhif",
    bits: int = 16,
    assumed: dict[str, str] | None = None,
) -> Scene:
    """A reduced-resolution MHIF scene from an HR-HSI (the GT).

    Args:
      hr_hsi: (H, W, B) on [0, 1], H and W multiples of ``ratio``.
      srf: (B, K) spectral response (columns are normalised to sum to 1 here).
      ratio: spatial ratio (4, 8, ...). degradation: preset or :class:`Degradation`.
      name, bits: scene label and radiometric depth (16 for the 16-bit CAVE PNGs).

    Returns:
      ``Scene(task="mhif")``: ``lrms`` (H/r, W/r, B) LR-HSI, ``pan`` (H, W, K) HR-MSI,
      ``gt`` the HR-HSI; generic sensor; float64.
    """
    x = np.asarray(hr_hsi, np.float64)
    if x.ndim != 3:
        raise InputError(f"HR-HSI must be H x W x B, got shape {x.shape}")
    r = normalise_srf(srf)
    with jax.enable_x64(True):
        lr = np.asarray(blur_decimate(jnp.asarray(x), int(ratio), get_degradation(degradation)))
        msi = np.asarray(spectral_response(jnp.asarray(x), r))
    return Scene(
        lrms=lr, pan=msi, gt=x, ratio=int(ratio), bits=bits, name=name, task="mhif", assumed=dict(assumed or {})
    )


def _cropped(x: np.ndarray, ratio: int) -> tuple[np.ndarray, dict[str, str]]:
    c = crop_to_multiple(x, ratio)
    note = {} if c.shape == x.shape else {"crop": f"{x.shape[0]}x{x.shape[1]} -> {c.shape[0]}x{c.shape[1]} (top-left)"}
    return c, note


def load_cave_scene(
    path: PathLike, *, ratio: int = 4, srf: Any = None, degradation: str | Degradation = "zsl", key: str | None = None
) -> Scene:
    """A CAVE cube (``Omsi`` uint16 or ``msi`` [0, 1]) simulated into an MHIF scene at ``ratio``.

    ``srf`` defaults to :func:`load_srf` (Nikon D700). The cube is cropped top-left to a
    multiple of the ratio (noted in ``scene.assumed["crop"]``). Returns :func:`simulate_mhif`'s scene.
    """
    x, note = _cropped(read_hsi(path, key), ratio)
    srf = load_srf() if srf is None else srf
    return simulate_mhif(x, srf, ratio=ratio, degradation=degradation, name=_stem(path), assumed=note)


def load_harvard_scene(
    path: PathLike, *, ratio: int = 4, srf: Any = None, degradation: str | Degradation = "zsl"
) -> Scene:
    """A Harvard cube (key ``ref``, 1392 x 1040 x 31, divided by its maximum) as an MHIF scene."""
    x, note = _cropped(read_hsi(path, "ref", norm="max"), ratio)
    srf = load_srf() if srf is None else srf
    return simulate_mhif(x, srf, ratio=ratio, degradation=degradation, name=_stem(path), assumed=note)


def _stem(path: PathLike) -> str:
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def quantile_normalise(x: np.ndarray, q: float = 0.999) -> np.ndarray:
    """Each band of (H, W, C) divided by its ``q`` quantile and clipped to [0, 1] (HySure demos)."""
    x = np.asarray(x, np.float64)
    scale = np.quantile(x.reshape(-1, x.shape[-1]), q, axis=0)
    return np.clip(x / np.where(scale > 0, scale, 1.0), 0.0, 1.0)


def paris_bands(path: PathLike) -> np.ndarray:
    """``non_del_bands``: the 1-based Hyperion band numbers of the bands kept in ``HSim`` (int64)."""
    return _read(path, ["non_del_bands"])["non_del_bands"].astype(np.int64).ravel()


def box_srf(bands: Sequence[int], coverage: Sequence[tuple[int, int]]) -> np.ndarray:
    """A (B, K) SRF with equal weights on the kept bands each guide band covers (inclusive ranges)."""
    b = np.asarray(bands)
    srf = np.stack([((b >= lo) & (b <= hi)).astype(np.float64) for lo, hi in coverage], axis=1)
    return normalise_srf(srf)


def load_paris_hs_ms(path: PathLike = "hs/paris_hyperion_ali_hs_ms.mat", *, ratio: int = 3) -> Scene:
    """HySure's Paris HS-MS data as a reduced-resolution MHIF scene.

    GT = ``HSim`` (72 x 72 x 128, quantile-normalised), LR-HSI = its ``"hysure"``
    degradation at ``ratio`` (24 x 24 x 128), guide = ``MSim`` (72 x 72 x 9 ALI bands).
    """
    d = _read(path, ["HSim", "MSim"])
    gt, note = _cropped(quantile_normalise(d["HSim"]), ratio)
    ms = crop_to_multiple(quantile_normalise(d["MSim"]), ratio)
    with jax.enable_x64(True):
        lr = np.asarray(blur_decimate(jnp.asarray(gt), int(ratio), DEGRADATIONS["hysure"]))
    note["bits"] = "16 (float reflectance data; no DN scale in the file)"
    return Scene(lrms=lr, pan=ms, gt=gt, ratio=ratio, bits=16, name=_stem(path), task="mhif", assumed=note)


def load_paris_hs_pan(path: PathLike = "hs/paris_hyperion_ali_hs_pan.mat") -> Scene:
    """HySure's real Paris HS-PAN pair (no GT): ``HSim`` 72 x 58 x 128 + ALI ``PCim`` 216 x 174, ratio 3."""
    d = _read(path, ["HSim", "PCim"])
    hs, pan = quantile_normalise(d["HSim"]), quantile_normalise(d["PCim"][..., None])
    note = {"bits": "16 (float reflectance data; no DN scale in the file)"}
    return Scene(lrms=hs, pan=pan, ratio=3, bits=16, name=_stem(path), task="mhif", assumed=note)


def load_hisr_h5(path: PathLike, index: int = 0) -> Scene:
    """One sample of a PanCollection HISR ``.h5`` (``LRHSI``, ``RGB``, ``GT`` if present) as a Scene."""
    p = find_input(path)
    f = open_array_file(p)
    try:
        names = f.names()
        for k in ("LRHSI", "RGB"):
            if k not in names:
                raise InputError(f"{p.name} is not a HISR file: no {k}; found: {f.describe()}")
        lr, rgb = np.asarray(f.read("LRHSI", index)), np.asarray(f.read("RGB", index))
        gt = np.asarray(f.read("GT", index)) if "GT" in names else None
    finally:
        f.close()
    ratio = rgb.shape[0] // max(lr.shape[0], 1)
    return Scene(lrms=lr, pan=rgb, gt=gt, ratio=ratio, bits=16, name=f"{p.stem}[{index}]", task="mhif")


def hisr_source(path: PathLike) -> Any:
    """A lazy training source over a HISR ``.h5``: ``PanCollectionSource`` with :data:`HISR_KEYS`, scale 1."""
    from pansharp_jax.data.pipeline import PanCollectionSource

    return PanCollectionSource(find_input(path), scale=1.0, keys=HISR_KEYS)


def mhif_layout(names: Sequence[str], shape: Any) -> str | None:
    """The MHIF layout of a file's variable ``names`` (``shape(name)`` = one sample's shape), or None.

    ``"hisr"`` (``LRHSI`` + ``RGB``), ``"paris_ms"`` (``HSim`` + ``MSim``), ``"paris_pan"``
    (``HSim`` + ``PCim``), ``"cave"`` (3-D ``Omsi`` / ``msi``), ``"harvard"`` (3-D ``ref``),
    ``"arrays"`` (``lrms`` + a multi-band ``pan``: :func:`mhif_patches` arrays), first match.
    """
    have = set(names)
    if {"LRHSI", "RGB"} <= have:
        return "hisr"
    if "HSim" in have and ("MSim" in have or "PCim" in have):
        return "paris_ms" if "MSim" in have else "paris_pan"
    if any(k in have and len(shape(k)) == 3 for k in ("Omsi", "msi")):
        return "cave"
    if "ref" in have and len(shape("ref")) == 3:
        return "harvard"
    if {"lrms", "pan"} <= have and len(shape("pan")) == 3 and shape("pan")[-1] > 1:
        return "arrays"
    return None


def load_mhif(path: PathLike, *, ratio: int | None = None, bits: int | None = None, index: int = 0) -> Scene | None:
    """An MHIF scene (``task="mhif"``) when the file has an MHIF layout (:func:`mhif_layout`), else None.

    CAVE and Harvard cubes are simulated at ``ratio`` (default 4, noted in ``scene.assumed``)
    with the ``"zsl"`` degradation and the Nikon D700 SRF; HySure's Paris HS-MS pair at
    ``ratio`` (default 3); HISR ``.h5`` and ``mhif_patches`` arrays give sample ``index``
    (ratio from the sizes). ``bits`` (default 16) sets the DN scale of products.
    """
    p = find_input(path)
    f = open_array_file(p)
    try:
        layout = mhif_layout(f.names(), f.shape)
        if layout == "arrays":
            arrays = {k: np.asarray(f.read(k, index)) for k in ("lrms", "pan", "gt") if k in f.names()}
            multi = f.nsamples("lrms") > 1
    finally:
        f.close()
    if layout is None:
        return None
    note = {}
    if ratio is None and layout in ("cave", "harvard", "paris_ms"):
        note["ratio"] = f"{3 if layout == 'paris_ms' else 4} (the MHIF simulation's default)"
    if layout == "hisr":
        scene = load_hisr_h5(p, index)
    elif layout == "paris_ms":
        scene = load_paris_hs_ms(p, ratio=int(ratio or 3))
    elif layout == "paris_pan":
        scene = load_paris_hs_pan(p)
    elif layout == "cave":
        scene = load_cave_scene(p, ratio=int(ratio or 4))
    elif layout == "harvard":
        scene = load_harvard_scene(p, ratio=int(ratio or 4))
    else:
        r = int(ratio or arrays["pan"].shape[0] // max(arrays["lrms"].shape[0], 1))
        name = f"{p.stem}[{index}]" if multi else p.stem
        scene = Scene(**arrays, ratio=r, bits=16, name=name, task="mhif")
    scene.assumed.update(note)
    if bits is None:
        return scene
    scene.assumed.pop("bits", None)
    return dataclasses.replace(scene, bits=int(bits))


# ----------------------------------------------------------------------------- patches


def mhif_patches(
    images: Sequence[Any],
    srf: Any,
    *,
    ratio: int,
    patch: int = 64,
    stride: int = 32,
    degradation: str | Degradation = "zsl",
) -> dict[str, np.ndarray]:
    """Training patches from HR-HSIs: each image simulated whole, then cut into aligned patches.

    Args:
      images: HR-HSIs (H, W, B) on [0, 1] (cropped to multiples of ``ratio``).
      srf: (B, K) spectral response. ratio: spatial ratio.
      patch, stride: HR patch side and stride, multiples of ``ratio``.

    Returns:
      float32 NHWC arrays ``lrms`` (N, p/r, p/r, B), ``pan`` (N, p, p, K), ``gt`` (N, p, p, B)
      and ``lms`` (N, p, p, B), the MATLAB-bicubic upsampled LR patch (``HSI_up``).
    """
    from pansharp_jax.data.resize import imresize_bicubic

    if patch <= 0 or stride <= 0 or patch % ratio or stride % ratio:
        raise InputError(f"patch {patch} and stride {stride} must be positive multiples of the ratio {ratio}")
    out: dict[str, list[np.ndarray]] = {"lrms": [], "pan": [], "gt": []}
    q = patch // ratio
    for img in images:
        img = crop_to_multiple(np.asarray(img, np.float64), ratio)
        s = simulate_mhif(img, srf, ratio=ratio, degradation=degradation)
        hh, ww = s.gt.shape[:2]  # type: ignore[union-attr]
        for r0 in range(0, hh - patch + 1, stride):
            for c0 in range(0, ww - patch + 1, stride):
                out["gt"].append(s.gt[r0 : r0 + patch, c0 : c0 + patch])  # type: ignore[index]
                out["pan"].append(s.pan[r0 : r0 + patch, c0 : c0 + patch])
                out["lrms"].append(s.lrms[r0 // ratio : r0 // ratio + q, c0 // ratio : c0 // ratio + q])
    if not out["gt"]:
        raise InputError(f"no {patch} x {patch} patch fits in the images")
    arrays = {k: np.stack(v).astype(np.float32) for k, v in out.items()}
    arrays["lms"] = np.asarray(imresize_bicubic(jnp.asarray(arrays["lrms"]), ratio), np.float32)
    return arrays
