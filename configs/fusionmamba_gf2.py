"""FusionMamba on PanCollection GaoFen-2 (reduced resolution, 64 x 64 PAN patches, 4 bands, 10-bit).

Recipe as ``fusionmamba_wv3.py`` (the authors' ``train.py`` defaults: L1, Adam 5e-4, halved
every 200 epochs, 500 epochs, batch 32), in steps for the 19,809 GF2 training samples (619
steps per epoch at batch 32). Inputs are DN / 1023 (``data.scale`` from the sensor), our
[0, 1] scale. The authors released WV3 weights only. Data files: see ``default.pancollection``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS_PER_EPOCH_GF2 = 619  # 19,809 samples / batch 32


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    wv3 = load_sibling(__file__, "fusionmamba_wv3")
    c = default.pancollection("fusionmamba", "gf2", lr=5e-4, batch_size=32, steps=1, loss="l1")
    wv3.fusionmamba_recipe(c, STEPS_PER_EPOCH_GF2)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c
