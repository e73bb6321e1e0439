"""FeINFN for MHIF on CAVE x4: 31-band LR-HSI + RGB HR-MSI guide -> 31-band HR-HSI (any output scale).

Data and recipe as ``infn_cave_x4.py`` (FeINFN's published recipe: AdamW 2e-4, weight decay 0,
cosine to 1e-5, batch 4 x 2 accumulation; our L1 instead of L1 + SSIM, clip off, 12,000 steps
of the ``balloons`` patches). ``:smoke``: a tiny network for 20 steps.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return load_sibling(__file__, "infn_cave_x4").cave_config(4, arg, method="feinfn")
