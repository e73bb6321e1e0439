"""CANNet on PanCollection QuickBird (reduced resolution, 64 x 64 PAN patches, 4 bands, 11-bit).

The authors' QB preset: as ``cannet_wv3.py`` but lr 5e-4 and StepLR every 500 epochs (no
decay within the 500 epochs). Steps per epoch assume the 17,139 PanCollection QB training
samples (535 at batch 32); adjust ``STEPS_PER_EPOCH_QB`` if your ``train_qb.h5`` differs.
Released weights: ``cannet_qb.pth``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS_PER_EPOCH_QB = 535  # 17,139 samples / batch 32 (sample count not checked against the file)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    wv3 = load_sibling(__file__, "cannet_wv3")
    c = default.pancollection("cannet", "qb", lr=5e-4, batch_size=32, steps=1, loss="l1")
    wv3.cannet_recipe(c, STEPS_PER_EPOCH_QB, lr=5e-4, decay_epochs=500)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c
