"""Sensor facts: MTF gains at Nyquist, radiometric depth, band names, RGB indices.

The MS and PAN Nyquist gains are those of the MATLAB pansharpening toolbox
(``genMTF.m`` / ``MTF_PAN.m``); any sensor the toolbox does not know gets 0.3 for
every MS band and 0.15 for PAN, exactly as the toolbox's ``otherwise`` branch.

Design choices where the toolbox is silent (documented, configurable by building
your own :class:`Sensor`):
  * GF2, Pleiades and Landsat 8/9 use the toolbox's generic gains (0.3 / 0.15).
  * Landsat 8/9 OLI: 6 reflective MS bands (B2..B7 at 30 m) fused with B8 (15 m),
    ratio 2, 12-bit products stored in 16 bits: we take ``bits = 12``.
"""

from __future__ import annotations

import dataclasses

from pansharp_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Sensor:
    """Static facts about one sensor.

    Attributes:
      name: the toolbox's sensor string (``'WV3'``, ``'QB'``...), or ``'generic'``.
      ms_gnyq: MTF gain at Nyquist for each MS band, in band order (unitless, (0, 1)).
      pan_gnyq: MTF gain at Nyquist of the PAN band.
      bits: radiometric depth; DN = value x (2**bits - 1).
      band_names: one name per MS band.
      rgb: 0-based indices of the red, green and blue bands (for true-colour views).
      ratio: PAN/MS resolution ratio of the sensor's products.
    """

    name: str
    ms_gnyq: tuple[float, ...]
    pan_gnyq: float
    bits: int
    band_names: tuple[str, ...]
    rgb: tuple[int, int, int]
    ratio: int = 4

    @property
    def nbands(self) -> int:
        return len(self.ms_gnyq)

    @property
    def max_dn(self) -> float:
        """The largest DN of the sensor's products, ``2**bits - 1`` (2047 for 11 bits)."""
        return float(2**self.bits - 1)

    def gains(self, nbands: int) -> tuple[float, ...]:
        """MS Nyquist gains for an image with ``nbands`` bands.

        Raises InputError when a sensor with fixed band count gets another count; the
        generic sensor repeats its gain for any count (the toolbox's ``otherwise``).
        """
        if self.name == "generic":
            return (self.ms_gnyq[0],) * nbands
        if nbands != self.nbands:
            raise InputError(
                f"wrong band count: sensor {self.name} has {self.nbands} MS bands, the image has {nbands}"
            )
        return self.ms_gnyq


_BGRN = ("blue", "green", "red", "nir")
_WV8 = ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2")

SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in [
        Sensor("QB", (0.34, 0.32, 0.30, 0.22), 0.15, 11, _BGRN, (2, 1, 0)),
        Sensor("IKONOS", (0.26, 0.28, 0.29, 0.28), 0.17, 11, _BGRN, (2, 1, 0)),
        Sensor("GeoEye1", (0.23,) * 4, 0.16, 11, _BGRN, (2, 1, 0)),
        Sensor("WV4", (0.23,) * 4, 0.16, 11, _BGRN, (2, 1, 0)),
        Sensor("WV2", (0.35,) * 7 + (0.27,), 0.11, 11, _WV8, (4, 2, 1)),
        Sensor("WV3", (0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14, 11, _WV8, (4, 2, 1)),
        Sensor("GF2", (0.3,) * 4, 0.15, 10, _BGRN, (2, 1, 0)),
        Sensor("Pleiades", (0.3,) * 4, 0.15, 12, _BGRN, (2, 1, 0)),
        Sensor(
            "Landsat8",
            (0.3,) * 6,
            0.15,
            12,
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            (2, 1, 0),
            ratio=2,
        ),
        Sensor(
            "Landsat9",
            (0.3,) * 6,
            0.15,
            12,
            ("blue", "green", "red", "nir", "swir1", "swir2"),
            (2, 1, 0),
            ratio=2,
        ),
        Sensor("generic", (0.3,), 0.15, 11, ("band",), (0, 0, 0)),
    ]
}

_ALIASES = {
    "quickbird": "QB",
    "ikonos": "IKONOS",
    "geoeye1": "GeoEye1",
    "geoeye-1": "GeoEye1",
    "ge1": "GeoEye1",
    "wv4": "WV4",
    "wv2": "WV2",
    "wv3": "WV3",
    "worldview2": "WV2",
    "worldview3": "WV3",
    "worldview4": "WV4",
    "gf2": "GF2",
    "gaofen2": "GF2",
    "pleiades": "Pleiades",
    "landsat8": "Landsat8",
    "landsat9": "Landsat9",
    "l8": "Landsat8",
    "l9": "Landsat9",
    "qb": "QB",
    "none": "generic",
}


def get_sensor(name: str | Sensor | None) -> Sensor:
    """Look a sensor up by its toolbox string or a common alias (case-insensitive).

    ``None`` gives the generic sensor. Raises InputError naming the known sensors
    for an unknown name.
    """
    if isinstance(name, Sensor):
        return name
    if name is None:
        return SENSORS["generic"]
    if name in SENSORS:
        return SENSORS[name]
    key = name.strip().lower().replace("_", "").replace(" ", "")
    if key in _ALIASES:
        return SENSORS[_ALIASES[key]]
    if key == "generic":
        return SENSORS["generic"]
    raise InputError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)}")
