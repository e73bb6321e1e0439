"""CMT on PanCollection QuickBird (reduced resolution, 64 x 64 PAN patches), hybrid loss.

Recipe (a guess: the official training script could not be read): Adam, lr 3e-4 halved every
30k steps, batch 32, 120k steps; loss ``hybrid`` = L1 + 0.1 Fourier-L1 + 0.1 wavelet-L1
(Haar, 2 levels) on [0, 1] (see ``pansharp_jax.train.losses``). Data files: see
``default.pancollection``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    c = default.pancollection(
        "cmt", "qb", lr=3e-4, batch_size=32, steps=120_000, loss="hybrid", decay_every=30_000, arg=arg
    )
    c.loss_weights = ml_collections.ConfigDict(
        {"l1": 1.0, "l2": 0.0, "fft": 0.1, "dwt": 0.1, "wavelet": "haar", "levels": 2, "fft_norm": "ortho"}
    )
    return c
