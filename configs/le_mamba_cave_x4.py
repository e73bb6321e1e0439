"""LE-Mamba for MHIF on CAVE x4: 31-band LR-HSI + RGB HR-MSI guide -> 31-band HR-HSI.

The network gets the upsampled LR-HSI as ``lms`` (31 bands) and the RGB HR-MSI as its guide
(the ``pan`` input, ``model.guide_bands = 3``). Recipe as ``le_mamba_wv3.py``.

Data: placeholder. The MHIF data pipeline (CAVE patches, HR-MSI simulation) comes later; until
then ``data.kind = 'arrays'`` reads ``cave/train_cave_x4.npz`` / ``cave/test_cave_x4.npz`` under
``data.root`` / ``$PANSHARP_DATA`` (not distributed): NHWC ``lrms`` (N, h, w, 31), ``pan``
(N, 4 h, 4 w, 3) RGB guide, ``gt`` (N, 4 h, 4 w, 31), optional ``lms``, all on [0, 1].
``data.scale`` 65535 (16-bit CAVE PNGs) is the DN of 1.0 used by the DN-based metrics.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def cave_config(ratio: int, arg: str | None = None) -> ml_collections.ConfigDict:
    """LE-Mamba on CAVE x``ratio`` (``default.cave_mhif`` data, the WV3 optimiser recipe)."""
    c = load_sibling(__file__, "default").cave_mhif("le_mamba", ratio)
    c.steps = 150_000
    load_sibling(__file__, "le_mamba_wv3").le_mamba_recipe(c)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cave_config(4, arg)
