"""FeINFN for MHIF on CAVE x8: as ``feinfn_cave_x4.py`` with ``cave/{train,test}_cave_x8.npz``."""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return load_sibling(__file__, "infn_cave_x4").cave_config(8, arg, method="feinfn")
