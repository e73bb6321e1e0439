"""FusionNet on one real full-resolution WorldView-2 scene, trained on Wald-reduced patches.

The scene ``fr/wv2_pnn.mat`` (MS 320 x 320 x 8, PAN 1280 x 1280, 11 bits) is split on its MS
grid; the right quarter is held out (validation only). Each part is degraded by the Wald
protocol with the WV2 MTF (its MS becomes the reference), then cut into 64 x 64 patches of the
reduced PAN grid with stride 16 (204 training patches); validation uses 80 x 80 tiles of the
held-out quarter (4 tiles).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "default").get_config()
    c.model = registry.default_config("fusionnet")
    c.model.bands = 8

    c.data.kind = "wald_scene"
    c.data.scene = "fr/wv2_pnn.mat"
    c.data.sensor = "WV2"
    c.data.patch = 64
    c.data.stride = 16
    c.data.val_patch = 80
    c.data.holdout_side = "right"
    c.data.holdout_fraction = 0.25

    c.loss = "l2"
    c.optim.lr = 3e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 200
    c.steps = 5000
    c.batch_size = 16
    c.eval_every = 250
    c.eval.batch_size = 4
    c.checkpoint.every = 250
    c.logging.group = "fusionnet_wv2_real"
    c.logging.tags = ("fusionnet", "wv2", "wald", "single-scene")
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.optim.warmup_steps = 0
    return c
