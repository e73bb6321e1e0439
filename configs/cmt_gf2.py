"""CMT on PanCollection GaoFen-2 (reduced resolution, 64 x 64 PAN patches), hybrid loss.

The recipe of ``cmt_wv3.py`` (a guess: the official training script could not be read).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return load_sibling(__file__, "cmt_wv3").cmt_config("gf2", arg)
