"""DiCNN on PanCollection WorldView-3: MSE, Adam lr 2e-4, batch 64, halved every 30k steps (our step count; the published recipe decays by epochs).

Data files: see ``default.pancollection`` (PanCollection WV3, 64 x 64 PAN patches).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    return default.pancollection("dicnn", "wv3", lr=2e-4, batch_size=64, steps=100_000, decay_every=30_000, arg=arg)
