"""The embedded demo scene: a SYNTHETIC QuickBird-like scene, generated deterministically.

No real image ships with the package (a fresh machine cannot download one, and the public
real scenes we test on do not allow redistribution). Instead the demo scene is built at run
time, in about a second, from a fixed seed and a 15-row table of material spectra that ships
as ``pansharp_jax/data/demo/materials.csv`` (our own numbers, Apache-2.0 like the code).

What the scene is
-----------------
1. A 1024 x 1024 "ground" on the native PAN grid, painted from a seeded procedural layout:
   farm parcels (a random rectangular partition of a slightly rotated frame, with crop rows,
   bare or wet soil, dry grass, and hedges along some parcel edges), a forest with crown
   texture and gaps, a meandering river (clear to turbid water, sandy and wooded banks), a
   town (street grid with dashed centre lines, pavements, buildings with tile, metal and
   dark roofs, their cast shadows, gardens and street trees), a straight main road with a
   dashed centre line and a concrete bridge over the river (with its shadow on the water),
   and a dirt track. Every pixel holds a reflectance spectrum (4 bands) mixed from the
   material table, with per-pixel texture. Sharp edges down to 1-2 native pixels (road
   paint, roof edges) give pan-sharpening something to recover.
2. At-sensor values on the [0, 1] scale (DN / 2047, 11-bit): ``value = haze + reflectance``,
   with a band-dependent additive haze (path radiance: larger in blue, 0.055 / 0.035 /
   0.020 / 0.010), which also gives haze-corrected methods (BT-H) something to estimate.
3. The native PAN is the spectral-response weighted sum of the four bands (weights 0.20,
   0.27, 0.28, 0.25: a silicon detector over 450-900 nm), slightly blurred (the PAN's own
   optics, Gaussian sigma 0.5 px), plus sensor noise; quantised to 11-bit DN.
4. The MS the sensor delivers (the ground truth, 256 x 256 x 4) is the native ground seen
   through the QuickBird MS MTF (toolbox Nyquist gains 0.34/0.32/0.30/0.22) and decimated
   by 4 (:func:`pansharp_jax.data.wald.wald_degrade`), plus sensor noise; quantised to DN.
5. The Wald protocol (``wald_degrade``, sensor ``QB``, ratio 4) then makes the 64 x 64 x 4
   LRMS from the GT and the 256 x 256 PAN from the native PAN.

The reduced-resolution demo scene is (LRMS 64x64x4, PAN 256x256x1, GT 256x256x4); the
full-resolution demo scene is the same LRMS and PAN without GT, used "as if real". Sensor
``QB``, ratio 4, 11 bits; all arrays float64 on [0, 1].

The spectra (reflectance at 485 / 560 / 660 / 830 nm) follow standard remote-sensing
physics: green vegetation absorbs blue and red (chlorophyll), peaks slightly in green and
jumps to a high NIR plateau past the red edge (leaf mesophyll scattering); senescent grass
loses the chlorophyll absorption (red rises, NIR falls); soils brighten monotonically with
wavelength (iron oxides) and darken when wet; water is dark and nearly black in the NIR
(strong absorption), turbid water scatters more green/red (suspended sediment); concrete
and galvanised metal are bright and flat; asphalt and bitumen are dark and slowly rising;
red clay tiles are dark in blue/green and bright in red/NIR (iron oxide); road paint is
bright and flat. Shadows scale reflectance down.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from pansharp_jax.data.scene import Scene
from pansharp_jax.data.wald import wald_degrade

__all__ = [
    "DEMO_SEED",
    "DEMO_SENSOR",
    "DEMO_RATIO",
    "DEMO_BITS",
    "NATIVE_SIZE",
    "PAN_WEIGHTS",
    "HAZE",
    "load_materials",
    "make_native",
    "make_demo_arrays",
    "demo_scene",
    "write_demo_scene",
]

DEMO_SEED = 20240611
DEMO_SENSOR = "QB"
DEMO_RATIO = 4
DEMO_BITS = 11
NATIVE_SIZE = 1024  # native PAN grid; the GT is NATIVE_SIZE / 4 = 256
PAN_WEIGHTS = (0.20, 0.27, 0.28, 0.25)  # blue, green, red, NIR
HAZE = (0.055, 0.035, 0.020, 0.010)  # additive path radiance per band, [0, 1] scale
_NOISE_SIGMA = 0.0015  # sensor noise std, [0, 1] scale (about 3 DN)
_MAX_DN = float(2**DEMO_BITS - 1)


def load_materials() -> dict[str, np.ndarray]:
    """The shipped material table: name -> reflectance (4,) at 485/560/660/830 nm, float64."""
    text = (importlib.resources.files("pansharp_jax") / "data" / "demo" / "materials.csv").read_text()
    rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    out: dict[str, np.ndarray] = {}
    for ln in rows[1:]:
        name, *vals = ln.split(",")
        out[name.strip()] = np.array([float(v) for v in vals], dtype=np.float64)
    return out


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-std Gaussian random field: white noise through a Gaussian of std ``sigma`` px.

    Filtered in the Fourier domain (periodic boundary), so the cost does not grow with sigma.
    """
    f = np.fft.fftfreq(n)
    transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * transfer).real
    return (field - field.mean()) / field.std()


def _paint(r: np.ndarray, mask: np.ndarray, spectrum: np.ndarray | float) -> None:
    """In place: pixels of ``mask`` get ``spectrum``, a (4,) spectrum or an (H, W, 4) image."""
    if np.ndim(spectrum) == 3:
        r[mask] = spectrum[mask]
    else:
        r[mask] = spectrum


def _parcels(rng: np.random.Generator, n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Parcel id per pixel: a random rectangular partition of the rotated (u, v) frame."""
    half = 0.75 * n
    todo = [(-half, half, -half, half)]
    leaves: list[tuple[float, float, float, float]] = []
    while todo:
        u0, u1, v0, v1 = todo.pop()
        du, dv = u1 - u0, v1 - v0
        if max(du, dv) < 230 or (max(du, dv) < 330 and rng.random() < 0.3):
            leaves.append((u0, u1, v0, v1))
            continue
        t = rng.uniform(0.35, 0.65)
        if du >= dv:
            m = u0 + t * du
            todo += [(u0, m, v0, v1), (m, u1, v0, v1)]
        else:
            m = v0 + t * dv
            todo += [(u0, u1, v0, m), (u0, u1, m, v1)]
    ids = np.zeros((n, n), dtype=np.int32)
    for k, (u0, u1, v0, v1) in enumerate(leaves):
        ids[(u >= u0) & (u < u1) & (v >= v0) & (v < v1)] = k
    return ids


def _dashes(along: np.ndarray, period: float, duty: float = 0.5) -> np.ndarray:
    return np.mod(along, period) < duty * period


def make_native(seed: int = DEMO_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The native ground: at-sensor MS values and the PAN on the 1024 x 1024 grid.

    Returns:
      (ms_native, pan_native): (1024, 1024, 4) and (1024, 1024, 1) float64 on the [0, 1]
      scale (before the MS sensor's MTF and decimation; the PAN already quantised to DN).
    """
    rng = np.random.default_rng(seed)
    mat = load_materials()
    n = NATIVE_SIZE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    r = np.zeros((n, n, 4))

    # --- farmland: parcels in a frame rotated by ~11 degrees -------------------------
    theta = 0.19
    c, s = np.cos(theta), np.sin(theta)
    u = c * (xx - n / 2) + s * (yy - n / 2)
    v = -s * (xx - n / 2) + c * (yy - n / 2)
    ids = _parcels(rng, n, u, v)
    soil_mix = np.clip(0.5 + 0.35 * _smooth_noise(rng, n, 40.0), 0.0, 1.0)[..., None]
    soil = (1 - soil_mix) * mat["soil"] + soil_mix * mat["wet_soil"]
    for k in range(int(ids.max()) + 1):
        m = ids == k
        kind = rng.choice(["crop", "young", "bare", "dry"], p=[0.4, 0.2, 0.2, 0.2])
        if kind == "bare":
            _paint(r, m, soil)
            continue
        if kind == "dry":
            _paint(r, m, mat["dry_grass"] * rng.uniform(0.9, 1.1))
            continue
        cover = rng.uniform(0.8, 1.0) if kind == "crop" else rng.uniform(0.35, 0.6)
        period = rng.uniform(7.0, 11.0)
        axis = (u if rng.random() < 0.5 else v)[m]
        rows = 0.5 + 0.5 * np.sin(2 * np.pi * axis / period)
        depth = 0.15 if kind == "crop" else 0.5
        frac = np.clip(cover * (1 - depth + depth * rows), 0, 1)[:, None]
        r[m] = frac * mat["crop"] + (1 - frac) * soil[m]
    # parcel edges: hedges where a smooth field is positive, grassy margins elsewhere
    edge = np.zeros((n, n), bool)
    for d in (1, 2):
        edge |= ids != np.roll(ids, d, axis=0)
        edge |= ids != np.roll(ids, d, axis=1)
    hedge_field = _smooth_noise(rng, n, 25.0)
    _paint(r, edge & (hedge_field > 0), mat["forest"])
    _paint(r, edge & (hedge_field <= 0), mat["grass"])

    # --- river: meandering channel, x = f(y) ------------------------------------------
    centre = 0.62 * n + 70 * np.sin(2 * np.pi * yy / 720 + 0.7) + 22 * np.sin(2 * np.pi * yy / 230 + 2.0)
    width = 34 + 8 * np.sin(2 * np.pi * yy / 400)
    dist_r = np.abs(xx - centre)
    water = dist_r < width / 2
    bank = (dist_r >= width / 2) & (dist_r < width / 2 + 14)

    # --- town ---------------------------------------------------------------------------
    town = (xx > 60) & (xx < 500) & (yy > 570) & (yy < 990)

    # --- forest: smooth blobs away from town and river ---------------------------------
    blobs = _smooth_noise(rng, n, 55.0) + 1.2 * (yy < 0.45 * n) * (xx > 0.7 * n)
    forest = (blobs > 0.9) & ~town & (dist_r > width / 2 + 30)
    crowns = _smooth_noise(rng, n, 2.2)
    canopy = np.clip(0.8 + 0.2 * crowns, 0.45, 1.2)[..., None] * mat["forest"]
    _paint(r, forest, canopy)
    _paint(r, forest & (crowns < -1.3), 0.4 * mat["forest"])  # gaps in shade

    # river banks: sand where a noise field says so, riparian trees otherwise
    bank_noise = _smooth_noise(rng, n, 12.0)
    _paint(r, bank & (bank_noise > 0.4), mat["sand"])
    _paint(r, bank & (bank_noise <= 0.4), canopy)
    turb = np.clip(0.5 + 0.4 * _smooth_noise(rng, n, 30.0), 0, 1)[..., None]
    _paint(r, water, (1 - turb) * mat["water_clear"] + turb * mat["water_turbid"])

    # town ground: gardens (grass) or paved blocks, streets every 110 px
    _paint(r, town, mat["concrete"] * 0.9)
    street_x = np.abs(np.mod(xx - 60, 110) - 55) > 48  # within 7 px of a grid line
    street_y = np.abs(np.mod(yy - 570, 110) - 55) > 48
    streets = town & (street_x | street_y)
    block = town & ~streets
    block_id = ((xx - 60) // 110).astype(int) * 100 + ((yy - 570) // 110).astype(int)
    for b in np.unique(block_id[block]):
        if rng.random() < 0.45:
            _paint(r, block & (block_id == b) & (np.abs(np.mod(xx - 60, 110) - 55) < 44)
                   & (np.abs(np.mod(yy - 570, 110) - 55) < 44), mat["grass"])  # fmt: skip
    buildings = np.zeros((n, n), bool)
    roofs = [mat["roof_tile"], mat["roof_metal"], mat["roof_dark"], mat["concrete"]]
    for _ in range(150):
        bx, by = rng.uniform(70, 480), rng.uniform(580, 970)
        bw, bh = rng.uniform(14, 46), rng.uniform(14, 46)
        win = (slice(int(by), int(np.ceil(by + bh))), slice(int(bx), int(np.ceil(bx + bw))))
        wx, wy = xx[win], yy[win]
        m = (wx >= bx) & (wx < bx + bw) & (wy >= by) & (wy < by + bh) & block[win]
        if not m.any():
            continue
        roof = roofs[rng.integers(len(roofs))] * rng.uniform(0.85, 1.1)
        ridge = (np.abs(wy - (by + bh / 2)) < 0.8) if bw > bh else (np.abs(wx - (bx + bw / 2)) < 0.8)
        rw = r[win]  # a view: painting it paints r
        rw[m] = roof
        rw[m & ridge] = roof * 0.7  # roof ridge line
        buildings[win] |= m
    # cast shadows: sun from the top-left, shadows fall 6 px down-right
    shadow = np.roll(np.roll(buildings, 6, axis=0), 6, axis=1) & ~buildings & town
    r[shadow] *= 0.35
    for _ in range(60):  # street trees
        tx, ty, tr = rng.uniform(70, 490), rng.uniform(580, 980), rng.uniform(4, 8)
        win = (slice(int(ty - tr), int(ty + tr) + 1), slice(int(tx - tr), int(tx + tr) + 1))
        m = ((xx[win] - tx) ** 2 + (yy[win] - ty) ** 2 < tr * tr) & town[win] & ~buildings[win]
        r[win][m] = canopy[win][m]
    _paint(r, streets, mat["asphalt"])
    lane = town & (
        (street_x & (np.abs(np.mod(xx - 60, 110) - 55) > 54) & _dashes(yy, 16))
        | (street_y & ~street_x & (np.abs(np.mod(yy - 570, 110) - 55) > 54) & _dashes(xx, 16))
    )
    _paint(r, lane, mat["paint"])

    # --- dirt track, then main road with a bridge ---------------------------------------
    track_y = 180 + 0.28 * xx + 35 * np.sin(xx / 140)
    track = (np.abs(yy - track_y) < 4) & ~water & ~town
    _paint(r, track, mat["soil"] * 1.15)
    # main road: the line through (0, 330) and (1024, 760)
    a, b, c0 = 430.0, -1024.0, 330.0 * 1024.0
    norm = np.hypot(a, b)
    d_road = (a * xx + b * yy + c0) / norm
    along = (-b * xx + a * yy) / norm
    road = np.abs(d_road) < 9
    bridge = road & (dist_r < width / 2 + 3)
    _paint(r, road & ~bridge, mat["asphalt"])
    _paint(r, bridge, mat["concrete"])
    _paint(r, road & (np.abs(d_road) < 1.0) & _dashes(along, 24), mat["paint"])
    bridge_shadow = ~road & (np.abs(d_road - 12) < 3) & water
    r[bridge_shadow] *= 0.4

    # --- texture and at-sensor values ------------------------------------------------------
    common = 0.04 * rng.standard_normal((n, n, 1))
    per_band = 0.01 * rng.standard_normal((n, n, 4))
    r = np.clip(r * (1 + common + per_band), 0.0, 1.0)
    ms_native = r + np.asarray(HAZE)
    pan = ms_native @ np.asarray(PAN_WEIGHTS) / sum(PAN_WEIGHTS)
    pan = ndimage.gaussian_filter(pan, 0.5, mode="nearest")
    pan = pan + _NOISE_SIGMA * rng.standard_normal((n, n))
    pan = np.clip(np.rint(pan * _MAX_DN), 0, _MAX_DN) / _MAX_DN
    return ms_native, pan[..., None]


def make_demo_arrays(seed: int = DEMO_SEED) -> dict[str, np.ndarray]:
    """Build the demo scene's arrays (no caching; deterministic for a given seed).

    Returns:
      ``{"gt": (256, 256, 4), "lrms": (64, 64, 4), "pan": (256, 256, 1), "pan_native":
      (1024, 1024, 1)}``, float64 on [0, 1] (DN / 2047). ``lrms, pan = wald_degrade(gt,
      pan_native, "QB", 4)`` exactly; ``gt`` and ``pan_native`` are integer DN / 2047.
    """
    ms_native, pan_native = make_native(seed)
    noise = np.random.default_rng(seed + 1).standard_normal((NATIVE_SIZE // DEMO_RATIO,) * 2 + (4,))
    with jax.enable_x64(True):
        gt, _ = wald_degrade(jnp.asarray(ms_native, jnp.float64), jnp.asarray(pan_native, jnp.float64), DEMO_SENSOR, DEMO_RATIO)
        gt = np.asarray(gt) + _NOISE_SIGMA * noise
        gt = np.clip(np.rint(gt * _MAX_DN), 0, _MAX_DN) / _MAX_DN
        lrms, pan = wald_degrade(jnp.asarray(gt, jnp.float64), jnp.asarray(pan_native, jnp.float64), DEMO_SENSOR, DEMO_RATIO)
        lrms, pan = np.asarray(lrms, np.float64), np.asarray(pan, np.float64)
    return {"gt": gt, "lrms": lrms, "pan": pan, "pan_native": pan_native}


@functools.lru_cache(maxsize=2)
def _cached_arrays(seed: int) -> dict[str, np.ndarray]:
    arrays = make_demo_arrays(seed)
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def demo_scene(mode: str = "rr", seed: int = DEMO_SEED) -> Scene:
    """The demo scene as a :class:`Scene` (arrays float64 on [0, 1], sensor QB, ratio 4).

    Args:
      mode: ``"rr"``: reduced resolution, LRMS (64, 64, 4), PAN (256, 256, 1) and GT
        (256, 256, 4); ``"fr"``: the same LRMS and PAN without GT, used as if real.
      seed: layout seed (the default is the documented demo scene).
    """
    if mode not in ("rr", "fr"):
        raise ValueError(f"mode must be 'rr' or 'fr', got {mode!r}")
    a = _cached_arrays(int(seed))
    return Scene(
        lrms=a["lrms"].copy(), pan=a["pan"].copy(), gt=a["gt"].copy() if mode == "rr" else None,
        sensor=DEMO_SENSOR, ratio=DEMO_RATIO, bits=DEMO_BITS, name=f"demo_{mode}",
    )  # fmt: skip


def write_demo_scene(path: str | os.PathLike[str], mode: str = "rr", seed: int = DEMO_SEED) -> Path:
    """Write the demo scene as an ``.npz`` that ``load_scene`` reads back.

    Keys ``lrms`` (64, 64, 4), ``pan`` (256, 256), ``gt`` (256, 256, 4; rr only), float64 on
    [0, 1], plus ``sensor='QB'``, ``ratio=4``, ``L=11``.
    """
    sc = demo_scene(mode, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"lrms": sc.lrms, "pan": sc.pan[..., 0], "sensor": np.array(DEMO_SENSOR),
               "ratio": np.array(DEMO_RATIO), "L": np.array(DEMO_BITS)}  # fmt: skip
    if sc.gt is not None:
        payload["gt"] = sc.gt
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **payload)
    return path
