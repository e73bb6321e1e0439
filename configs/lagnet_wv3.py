"""LAGNet on PanCollection WorldView-3: MSE, Adam lr 1e-3, batch 32, x0.1 every 50k steps.

The CANConv recipe decays by 0.1 every 500 epochs; we express it in steps (our choice).
Data files: see ``default.pancollection`` (PanCollection WV3, 64 x 64 PAN patches).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    return default.pancollection(
        "lagnet", "wv3", lr=1e-3, batch_size=32, steps=150_000, decay_every=50_000, decay_factor=0.1, arg=arg
    )
