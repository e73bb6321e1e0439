"""INFN for MHIF on CAVE x4: 31-band LR-HSI + RGB HR-MSI guide -> 31-band HR-HSI (any output scale).

Data (``default.cave_mhif``): ``cave/train_cave_x4.npz`` (CAVE ``balloons`` patches, 64 x 64 HR)
and ``cave/test_cave_x4.npz`` (``fake_and_real_food``, 200 x 200) under ``data.root`` /
``$PANSHARP_DATA``, written by ``python experiments/make_cave_patches.py --root DIR``.

Recipe (INFN's own is not public; FeINFN's, spec ``feinfn.md``, is used for both): Adam
(AdamW with weight decay 0) 2e-4, cosine to 1e-5 (``min_lr_ratio`` 0.05), L1 loss (the
official L1 + SSIM is not in the trainer), batch 8 (the official 4 x 2 gradient accumulation),
12,000 steps = 2,000 epochs of the 49 ``balloons`` patches at 6 steps per epoch. The official
global-norm clip of 1e-4 is off: under Adam it only rescales the gradient (set
``--config.optim.grad_clip=1e-4`` to follow it). ``:smoke``: a tiny network (16 features, one
residual block, MLP 32) for 20 steps, batch 4, to check a set-up on a CPU.
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS = 12_000


def cave_config(ratio: int, arg: str | None = None, method: str = "infn") -> ml_collections.ConfigDict:
    """``method`` (``infn`` / ``feinfn``) on CAVE x``ratio`` with the shared INR recipe above."""
    c = load_sibling(__file__, "default").cave_mhif(method, ratio)
    c.loss = "l1"
    c.optim.name = "adam"
    c.optim.lr = 2e-4
    c.optim.schedule = "cosine"
    c.optim.min_lr_ratio = 0.05
    c.optim.weight_decay = 0.0
    c.optim.grad_clip = 0.0
    c.steps = STEPS
    c.batch_size = 8
    c.eval_every = c.checkpoint.every = 500
    c.eval.batch_size = 1  # the validation scene is one 200 x 200 image
    if arg == "smoke":
        c.model.feats, c.model.blocks = 16, 1
        for key in ("hidden", "spatial_hidden", "amp_hidden", "phase_hidden"):
            if key in c.model:
                c.model[key] = (32,)
        if "spatial_dim" in c.model:
            c.model.spatial_dim, c.model.decoder_width, c.model.decoder_layers = 8, 32, 2
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size = 4
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return cave_config(4, arg)
