"""CANNet on PanCollection GaoFen-2 (reduced resolution, 64 x 64 PAN patches, 4 bands, 10-bit).

The authors' GF2 preset: as ``cannet_wv3.py`` but lr 5e-4 and StepLR every 500 epochs (so,
over 500 epochs, no decay), in steps for the 19,809 GF2 training samples (619 steps per epoch
at batch 32). Inputs are DN / 1023. Released weights: ``cannet_gf2.pth``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS_PER_EPOCH_GF2 = 619  # 19,809 samples / batch 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    wv3 = load_sibling(__file__, "cannet_wv3")
    c = default.pancollection("cannet", "gf2", lr=5e-4, batch_size=32, steps=1, loss="l1")
    wv3.cannet_recipe(c, STEPS_PER_EPOCH_GF2, lr=5e-4, decay_epochs=500)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c
