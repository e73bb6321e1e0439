"""DRPNN on PanCollection WorldView-3: MSE, Adam lr 3e-4, batch 32, halved every 30k steps (our choice: the record gives no recipe).

Data files: see ``default.pancollection`` (PanCollection WV3, 64 x 64 PAN patches).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    return default.pancollection("drpnn", "wv3", lr=3e-4, batch_size=32, steps=100_000, decay_every=30_000, arg=arg)
