"""FusionNet on PanCollection WorldView-3 (reduced resolution, 64 x 64 PAN patches).

Data: ``pancollection/training_wv3/train_wv3.h5`` and ``valid_wv3.h5`` under
``$PANSHARP_DATA`` (not distributed with this project; override ``--config.data.train``).
Recipe as usually trained on PanCollection: Adam, MSE on [0, 1], batch 32, lr 3e-4 halved
every 30k steps.
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "default").get_config()
    c.model = registry.default_config("fusionnet")
    c.model.bands = 8

    c.data.kind = "panc"
    c.data.train = "pancollection/training_wv3/train_wv3.h5"
    c.data.val = "pancollection/training_wv3/valid_wv3.h5"
    c.data.scale = 2047.0
    c.data.sensor = "WV3"

    c.loss = "l2"
    c.optim.lr = 3e-4
    c.optim.schedule = "step"
    c.optim.decay_every = 30_000
    c.optim.decay_factor = 0.5
    c.steps = 120_000
    c.batch_size = 32
    c.eval_every = 2000
    c.checkpoint.every = 2000
    c.logging.group = "fusionnet_wv3"
    c.logging.tags = ("fusionnet", "wv3", "reduced")
    if arg == "smoke":  # a few steps to check the set-up end to end
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.optim.warmup_steps = 0
    return c
