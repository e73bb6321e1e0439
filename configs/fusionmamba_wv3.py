"""FusionMamba on PanCollection WorldView-3 (reduced resolution, 64 x 64 PAN patches).

The authors' recipe (``train.py`` defaults of PSRben/FusionMamba): L1 loss, Adam lr 5e-4 (no
weight decay), StepLR halving every 200 epochs, 500 epochs, batch 32. In steps, with the
9,714 WV3 training samples (303 steps per epoch at batch 32): halving every 60,600 steps,
151,500 steps in all. Their optional ERGAS loss term (weight 1e-4) is off by default, as here.
Model: the released sizes (``registry.default_config('fusionmamba')``), selective scan
``auto`` (sequential on CPU, chunked with remat on accelerators: the train step at batch 32
plans ~12 GiB of temporaries, see ``pansharp_jax.models.fusion_mamba``; ``associative`` keeps
~100 GiB for the backward pass at this batch). Data files: see ``default.pancollection``.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS_PER_EPOCH_WV3 = 303  # 9,714 samples / batch 32


def fusionmamba_recipe(c: ml_collections.ConfigDict, steps_per_epoch: int) -> ml_collections.ConfigDict:
    """The authors' optimisation (Adam 5e-4, x0.5 every 200 epochs, 500 epochs, L1)."""
    c.optim.name = "adam"
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.0
    c.optim.schedule = "step"
    c.optim.decay_every = 200 * steps_per_epoch
    c.optim.decay_factor = 0.5
    c.loss = "l1"
    c.steps = 500 * steps_per_epoch
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    c = default.pancollection("fusionmamba", "wv3", lr=5e-4, batch_size=32, steps=1, loss="l1")
    fusionmamba_recipe(c, STEPS_PER_EPOCH_WV3)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c
