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
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config(arg)
    c.model = registry.default_config("cmt")
    c.model.bands = 8
    c.loss = "hybrid"  # with the default loss_weights: L1 + 0.1 Fourier + 0.1 Haar(2) wavelet
    c.optim.lr = 5e-4
    c.optim.warmup_steps = 0 if arg == "smoke" else 50
    c.batch_size = 8
    c.logging.group = "cmt_wv2_real"
    c.logging.tags = ("cmt", "wv2", "wald", "single-scene")
    if arg != "smoke":
        c.steps, c.eval_every, c.checkpoint.every = 2000, 100, 100
    return c
