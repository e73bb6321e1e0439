"""CANNet on PanCollection WorldView-3 (reduced resolution, 64 x 64 PAN patches, 8 bands, 11-bit).

The authors' recipe (CANConv ``cannet/default.json`` + ``presets.json``): L1 loss, Adam
(weight decay 0), lr 1e-3 multiplied by 0.1 every 250 epochs (StepLR), 500 epochs, batch 32,
seed 10. In steps for the 9,714 WV3 training samples (303 steps per epoch at batch 32): decay
every 75,750 steps, 151,500 steps. Data files: see ``default.pancollection``.

The official per-sample k-means cache is on (``config.cluster_cache``, the official schedule
``[[10, 1], [100, 10], [300, 20], 50]`` in epochs; :mod:`pansharp_jax.train.cluster_cache`):
epoch 1 clusters every training sample and stores its rb1/rb2/rb3 indices (5,376 bytes per
64 x 64 sample: ~52 MB for WV3, kept on the host and saved with every checkpoint); epochs 2-10
re-cluster warm-started from them, and from epoch 11 only every 10th/20th/50th epoch does, the
others reuse them and run no k-means. ``--config.cluster_cache.enabled=False`` clusters afresh
on every forward (as at evaluation).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling

STEPS_PER_EPOCH_WV3 = 303  # 9,714 samples / batch 32


def cannet_recipe(c: ml_collections.ConfigDict, steps_per_epoch: int, lr: float, decay_epochs: int) -> None:
    """Set the authors' schedule on a ``default.pancollection`` config (in place)."""
    c.seed = 10
    c.loss = "l1"
    c.optim.name = "adam"
    c.optim.lr = lr
    c.optim.weight_decay = 0.0
    c.optim.schedule = "step"
    c.optim.decay_every = decay_epochs * steps_per_epoch
    c.optim.decay_factor = 0.1
    c.steps = 500 * steps_per_epoch
    c.batch_size = 32
    c.eval_every = 10 * steps_per_epoch  # validation every 10 epochs
    c.checkpoint.every = 25 * steps_per_epoch
    c.cluster_cache.enabled = True  # the official per-sample k-means cache and schedule
    c.cluster_cache.policy = "10:1,100:10,300:20,50"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    c = default.pancollection("cannet", "wv3", lr=1e-3, batch_size=32, steps=1, loss="l1")
    cannet_recipe(c, STEPS_PER_EPOCH_WV3, lr=1e-3, decay_epochs=250)
    if arg == "smoke":
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
    return c
