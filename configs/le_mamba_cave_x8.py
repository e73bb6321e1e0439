"""LE-Mamba for MHIF on CAVE x8: 31-band LR-HSI + RGB HR-MSI guide -> 31-band HR-HSI.

The network gets the upsampled LR-HSI as ``lms`` (31 bands) and the RGB HR-MSI as its guide
(the ``pan`` input, ``model.guide_bands = 3``). Recipe as ``le_mamba_wv3.py``.

Data: placeholder. The MHIF data pipeline (CAVE patches, HR-MSI simulation) comes later; until
then ``data.kind = 'arrays'`` reads ``cave/train_cave_x8.npz`` / ``cave/test_cave_x8.npz`` under
``data.root`` / ``$PANSHARP_DATA`` (not distributed): NHWC ``lrms`` (N, h, w, 31), ``pan``
(N, 8 h, 8 w, 3) RGB guide, ``gt`` (N, 8 h, 8 w, 31), optional ``lms``, all on [0, 1].
``data.scale`` 65535 (16-bit CAVE PNGs) is the DN of 1.0 used by the DN-based metrics.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return load_sibling(__file__, "le_mamba_cave_x4").cave_config(8, arg)
