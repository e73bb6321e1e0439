"""SSDiff on the real WorldView-2 scene (data of ``fusionnet_wv2_real.py``), pre-training and L-BAF.

Stage-wise training is a sequence of configs of the one trainer:

1. this config (no ARG): joint pre-training of the whole SSNet with the diffusion loss (L1 on
   the x0 residual, cosine schedule, T = 1000); the LoRA factors exist but stay frozen at
   B = 0, so the model is the plain network;
2. ``:finetune_spatial`` (alias ``:finetune``): the whole pre-trained params are copied in
   (``init_from``) and only the spatial branch's LoRA factors train (``optim.frozen`` = all else);
3. ``:finetune_spectral``: the same from the spatial round, training only the spectral
   branch's factors. Further rounds alternate by overriding ``--config.init_from==WORKDIR``.

Validation scores one DDIM (eta 0) sample of ``model.sample_steps`` steps with a fixed key.
Options (``:ARG``, comma-separated): ``smoke`` (tiny sizes, 32-pixel patches, a few steps;
with a finetune option the start is random unless ``--config.init_from`` is given), and the
stages above. Training values the paper leaves open (lr 1e-3 AdamW without weight decay and
batch 20 as the official config; steps; fine-tuning lr 1e-4 for 2000 steps per round) are
ours; there is no EMA of the weights (the official code keeps one at 0.9999).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling

# Options are combined (":smoke,finetune_spatial"), so any ARG is accepted here and checked below.
CONFIG_ARGS = None
OPTIONS = ("smoke", "finetune", "finetune_spatial", "finetune_spectral")
PRETRAIN_RUN = "runs/ssdiff_wv2_real"
SPATIAL_RUN = "runs/ssdiff_wv2_real_spatial"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = [a.strip() for a in (arg or "").split(",") if a.strip()]
    for o in opts:
        if o not in OPTIONS:
            from pansharp_jax.errors import InputError

            raise InputError(f"ssdiff_wv2_real.py: unknown option :{o} (use {', '.join(OPTIONS)})")
    branch = "spatial" if ("finetune" in opts or "finetune_spatial" in opts) else None
    if "finetune_spectral" in opts:
        if branch is not None:
            from pansharp_jax.errors import InputError

            raise InputError("ssdiff_wv2_real.py: one fine-tuning round at a time (finetune_spatial or finetune_spectral)")
        branch = "spectral"

    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("ssdiff")
    c.model.bands = 8
    c.loss = "l1"  # reported at validation; training uses the model's diffusion loss
    c.optim.name = "adamw"
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 0
    c.batch_size = 20
    c.steps = 30_000
    c.eval_every = 1000
    c.checkpoint.every = 1000
    c.eval.batch_size = 4
    c.logging.group = "ssdiff_wv2_real"
    c.logging.tags = ("ssdiff", "wv2", "diffusion", branch or "pretrain")
    if "smoke" in opts:
        c.model.update(dim=16, model_channels=16, sample_steps=2, tile=32, tile_overlap=8)
        c.data.patch, c.data.stride, c.data.val_patch = 32, 64, 32
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size, c.eval.batch_size, c.eval.max_examples = 2, 2, 2
    if branch is not None:
        c.optim.lr = 1e-4
        c.steps = 2000 if "smoke" not in opts else c.steps
        c.init_from = "" if "smoke" in opts else f"={PRETRAIN_RUN if branch == 'spatial' else SPATIAL_RUN}"
    from pansharp_jax.generative.ssdiff import lbaf_frozen

    c.optim.frozen = lbaf_frozen(c.model, branch)
    return c
