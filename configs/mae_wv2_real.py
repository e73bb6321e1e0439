"""MAE pre-training on Wald-reduced patches of the real WorldView-2 scene (the unfolding's priors).

The data are those of ``fusionnet_wv2_real.py`` (``fr/wv2_pnn.mat``, right quarter held out);
the MAE learns the high-resolution MS patches (``batch['gt']``). Validation scores the
reconstruction of masked held-out patches (visible pixels kept, hidden ones predicted)
against the GT; the step metrics ``masked_mse`` / ``mean_fill_mse`` compare it with filling
the hidden tokens by the visible mean. The 204 training patches are augmented by the 8
rotations/flips of the square (``data.augment``): without it the held-out error rises again after
2000 steps (overfitting).

Forms: ``configs/mae_wv2_real.py`` (spatial masking, ratio 0.75: the unfolding's prior),
``:spectral`` (spatial-spectral masking, 2 band groups, ratio 0.5: its consistency loss),
``:smoke`` / ``:spectral_smoke`` (a few steps, tiny sizes).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


CONFIG_ARGS = ("spectral", "smoke", "spectral_smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("mae")
    c.model.bands = 8
    if arg in ("spectral", "spectral_smoke"):
        c.model.masking, c.model.mask_ratio = "spectral", 0.5
    c.data.augment = "dihedral"  # the MAE sees only batch['gt'], so the flips' decimation phase does not matter
    c.loss = "l2"  # unused: the MAE's own masked MSE is the objective
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.05
    c.optim.name = "adamw"
    c.steps = 4000
    c.checkpoint.best_metric = "loss"
    c.checkpoint.best_mode = "min"
    c.logging.group = "mae_wv2_real"
    c.logging.tags = ("mae", "wv2", "pretrain", str(c.model.masking))
    if arg in ("smoke", "spectral_smoke"):
        c.model.update(embed_dim=32, depth=1, heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2)
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size, c.eval.max_examples = 4, 2
        c.optim.warmup_steps = 0
    return c
