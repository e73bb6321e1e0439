"""CMT on one real full-resolution WorldView-2 scene, trained on Wald-reduced patches, hybrid loss.

Data block as ``fusionnet_wv2_real``: the scene ``fr/wv2_pnn.mat`` (MS 320 x 320 x 8, PAN
1280 x 1280, 11 bits) is split on its MS grid, the right quarter held out (validation only);
each part is degraded by the Wald protocol with the WV2 MTF, cut into 64 x 64 patches of the
reduced PAN grid with stride 16 (204 training patches); validation on 80 x 80 tiles of the
held-out quarter (4 tiles).

Loss ``hybrid`` = L1 + 0.1 Fourier-L1 + 0.1 wavelet-L1 (Haar, 2 levels). Batch 8 (not 16 as
FusionNet's) because CMT costs several seconds per batch of 8 on a small shared CPU; Adam,
lr 5e-4 with cosine decay after a short warm-up.
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "default").get_config()
    c.model = registry.default_config("cmt")
    c.model.bands = 8

    c.data.kind = "wald_scene"
    c.data.scene = "fr/wv2_pnn.mat"
    c.data.sensor = "WV2"
    c.data.patch = 64
    c.data.stride = 16
    c.data.val_patch = 80
    c.data.holdout_side = "right"
    c.data.holdout_fraction = 0.25

    c.loss = "hybrid"
    c.loss_weights = ml_collections.ConfigDict(
        {"l1": 1.0, "l2": 0.0, "fft": 0.1, "dwt": 0.1, "wavelet": "haar", "levels": 2, "fft_norm": "ortho"}
    )
    c.optim.lr = 5e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 50
    c.steps = 2000
    c.batch_size = 8
    c.eval_every = 100
    c.eval.batch_size = 4
    c.checkpoint.every = 100
    c.logging.group = "cmt_wv2_real"
    c.logging.tags = ("cmt", "wv2", "wald", "single-scene")
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.optim.warmup_steps = 0
    return c
