"""PNN on PanCollection WorldView-3: MSE, Adam lr 1e-3, batch 64 (the DLPan-Toolbox settings).

Data files: see ``default.pancollection`` (PanCollection WV3, 64 x 64 PAN patches).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    return default.pancollection("pnn", "wv3", lr=1e-3, batch_size=64, steps=100_000, decay_every=0, arg=arg)
