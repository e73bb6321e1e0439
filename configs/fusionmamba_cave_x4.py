"""FusionMamba for MHIF on CAVE x4: 31-band LR-HSI + RGB HR-MSI guide -> 31-band HR-HSI.

The README of the authors lists HISR on CAVE, but its code and recipe are not released. Here
the PAN stream takes the RGB HR-MSI (``model.guide_bands = 3``, the ``pan`` input), the MS
stream the 31-band LR-HSI, upsampled by the learned conv3x3 (31 -> 4^2 x 31) + PixelShuffle(4)
(``model.ratio = 4``); the network ignores ``lms``. Recipe: the pan-sharpening one of
``fusionmamba_wv3.py`` (L1, Adam 5e-4 halved every 60,600 steps, 151,500 steps, batch 32),
our guess.

Data: placeholder. The MHIF data pipeline (CAVE patches, HR-MSI simulation) comes later; until
then ``data.kind = 'arrays'`` reads ``cave/train_cave_x4.npz`` / ``cave/test_cave_x4.npz`` under
``data.root`` / ``$PANSHARP_DATA`` (not distributed): NHWC ``lrms`` (N, h, w, 31), ``pan``
(N, 4 h, 4 w, 3) RGB guide, ``gt`` (N, 4 h, 4 w, 31), optional ``lms``, all on [0, 1].
``data.scale`` 65535 (16-bit CAVE PNGs) is the DN of 1.0 used by the DN-based metrics.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def cave_config(ratio: int, arg: str | None = None) -> ml_collections.ConfigDict:
    """FusionMamba on CAVE x``ratio`` (``default.cave_mhif`` data; the learned x``ratio`` upsampler)."""
    wv3 = load_sibling(__file__, "fusionmamba_wv3")
    c = load_sibling(__file__, "default").cave_mhif("fusionmamba", ratio)
    c.model.ratio = ratio
    wv3.fusionmamba_recipe(c, wv3.STEPS_PER_EPOCH_WV3)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cave_config(4, arg)
