"""INFN for MHIF on CAVE x8: as ``infn_cave_x4.py`` with ``cave/{train,test}_cave_x8.npz``
(64 x 64 HR patches, 8 x 8 LR-HSI)."""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return load_sibling(__file__, "infn_cave_x4").cave_config(8, arg)
