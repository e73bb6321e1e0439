"""Schrödinger-bridge matching (``sbm``) on Wald-reduced patches of the real WorldView-2 scene.

The data are those of ``fusionnet_wv2_real.py`` (``fr/wv2_pnn.mat``, right quarter held out).
The model learns the bridge from the patches' LMS to their GT (its own objective,
:mod:`pansharp_jax.generative.sb_matching`); validation scores the mean of ``eval_samples``
few-step draws with a fixed key, so that evaluations are comparable. The bridge schedule
(symmetric, total variance 0.001; the model's default) is our choice until the paper's is
known. For a short run set the schedule's length with the run's: the CPU result in the README is
``--steps 1500 --config.batch_size=8 --config.data.patch=32 --config.optim.lr=1e-3
--config.optim.warmup_steps=100`` (the cosine decays over ``--steps``).

Forms: ``configs/sbm_wv2_real.py`` (UNet width 32, 3 levels; 5-step SDE sampler),
``:ode`` (the deterministic one-step OT-ODE output for validation and ``fuse``), ``:smoke``
(a few steps; a one-level UNet of width 8).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling

CONFIG_ARGS = ("ode", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("sbm")
    c.model.bands = 8
    c.loss = "l2"  # unused: the bridge-matching loss (c.model.loss) is the objective
    c.optim.lr = 2e-4
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 500
    c.optim.grad_clip = 1.0
    c.steps = 20_000
    c.batch_size = 16
    c.eval_every = 1000
    c.checkpoint.every = 1000
    c.logging.group = "sbm_wv2_real"
    c.logging.tags = ("sbm", "wv2", "wald", "generative")
    if arg == "ode":
        c.model.sampler, c.model.eval_steps, c.model.eval_samples = "ode", 1, 1
    if arg == "smoke":
        c.model.update(base=8, mults=(1,), eval_steps=2, eval_samples=1)
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size, c.eval.batch_size, c.eval.max_examples = 4, 2, 2
        c.optim.warmup_steps = 0
    return c
