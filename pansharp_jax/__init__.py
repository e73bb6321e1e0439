"""pansharp_jax: pan-sharpening and MS/HS image fusion in JAX on one toolbox-exact core.

Conventions used throughout (see ``DESIGN`` in the README):
  * arrays are NHWC (or HWC for one image), float32 in [0, 1] inside models and metrics;
  * DN (digital numbers, value x (2**bits - 1)) only at file boundaries and where the
    MATLAB toolbox defines a metric on DN;
  * ``lrms`` is the low-resolution multispectral image, ``pan`` the single-band
    panchromatic image, ``lms`` the MS upsampled to the PAN grid with ``interp23tap``.
"""

__version__ = "0.1.0"
