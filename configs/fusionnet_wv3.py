"""FusionNet on PanCollection WorldView-3 (reduced resolution, 64 x 64 PAN patches).

Recipe as usually trained on PanCollection: Adam, MSE on [0, 1], batch 32, lr 3e-4 halved
every 30k steps. Data files: see ``default.pancollection``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    return default.pancollection(
        "fusionnet", "wv3", lr=3e-4, batch_size=32, steps=120_000, decay_every=30_000, arg=arg
    )
