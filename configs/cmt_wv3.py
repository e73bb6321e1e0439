"""CMT on PanCollection WorldView-3 (reduced resolution, 64 x 64 PAN patches), hybrid loss.

Recipe (a guess: the official training script could not be read): Adam, lr 3e-4 halved every
30k steps, batch 32, 120k steps; loss ``hybrid`` with the default ``loss_weights`` = L1 +
0.1 Fourier-L1 + 0.1 wavelet-L1 (Haar, 2 levels) on [0, 1] (see ``pansharp_jax.train.losses``).
Data files: see ``default.pancollection``. ``cmt_gf2.py`` and ``cmt_qb.py`` use the same
recipe through :func:`cmt_config`.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def cmt_config(dataset: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """The CMT recipe on one PanCollection dataset (``wv3``, ``gf2``, ``qb``)."""
    default = load_sibling(__file__, "default")
    return default.pancollection(
        "cmt", dataset, lr=3e-4, batch_size=32, steps=120_000, loss="hybrid", decay_every=30_000, arg=arg
    )


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cmt_config("wv3", arg)
