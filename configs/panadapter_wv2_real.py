"""PanAdapter on the real WorldView-2 scene (data of ``fusionnet_wv2_real.py``), in two stages.

Stage-wise training is a sequence of configs of the one trainer:

0. ``pansharp train --config configs/mae_wv2_real.py --workdir runs/mae_wv2_real``: the ViT
   backbone (an MAE encoder pre-trained on the scene's patches);
1. ``:stage1`` (the default) ``--workdir runs/panadapter_wv2_real_stage1``: the two CNN prior
   bodies + LPE + a light head on the fusion loss (MSE); no ViT, no adapters. Add
   ``--config.optim.frozen=spectral/body,spatial/body`` to train the LPE only (the released
   code's setting, meaningful once the bodies hold imported EDSR weights);
2. ``:stage2`` ``--workdir runs/panadapter_wv2_real_stage2``: the priors (``spectral``,
   ``spatial``) come from stage 1 and the ViT (``vit``) from the MAE run (``init_from``); all
   three are frozen (``optim.frozen``); the token projections, adapters and tail train.

``:smoke`` is stage 2 with tiny sizes and everything random (no earlier runs needed; the priors
and the ViT random and frozen); ``:stage1_smoke`` is stage 1 with the same tiny sizes (its run
loads into a ``:smoke`` run with ``--config.init_from=spectral=W@spectral,spatial=W@spatial``).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling

CONFIG_ARGS = ("stage1", "stage2", "smoke", "stage1_smoke")
MAE_RUN = "runs/mae_wv2_real"
STAGE1_RUN = "runs/panadapter_wv2_real_stage1"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("panadapter")
    c.model.bands = 8
    stage = 2 if arg in ("stage2", "smoke") else 1
    c.model.stage = stage
    c.loss = "l2"  # the released code's MSE
    c.optim.lr = 3e-4 if stage == 1 else 2e-4
    c.steps = 4000
    if stage == 2:
        c.optim.frozen = "spectral,spatial,vit"  # = panadapter.STAGE2_FROZEN
        c.init_from = (
            f"spectral={STAGE1_RUN}@spectral,spatial={STAGE1_RUN}@spatial,"
            f"vit/embed={MAE_RUN}@mae/embed,vit/encoder={MAE_RUN}@mae/encoder"
        )
    c.logging.group = "panadapter_wv2_real"
    c.logging.tags = ("panadapter", "wv2", f"stage{stage}")
    if arg in ("smoke", "stage1_smoke"):
        c.model.update(features=8, blocks=2, lpe_dim=4, prior_dim=8, adapter_dim=16, adapter_heads=2, tail_hidden=32)
        c.model.vit.update(embed_dim=16, depth=2, heads=2)
        c.init_from = ""  # random (and, in stage 2, frozen) priors and ViT: no earlier runs needed
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size, c.eval.max_examples = 4, 2
        c.optim.warmup_steps = 0
    return c
