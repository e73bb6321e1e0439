"""LE-Mamba (the 'tiny' preset the authors use for WV3) on the real WorldView-2 scene task.

Data as ``fusionnet_wv2_real`` (Wald-reduced patches of ``fr/wv2_pnn.mat``, right quarter held
out). Optimisation: the authors' AdamW / gradient clipping / cosine settings
(``le_mamba_wv3.le_mamba_recipe``), batch 8 and 1,000 steps by default so that it fits a CPU
session; drop path off for so short a run (our choice); scan 'sequential' (the CPU's fastest, and
what the default 'auto' picks on CPU; ``--config.model.scan_method=auto`` picks chunked with
remat on accelerators; 'associative' keeps (b, L, D, N) arrays for the backward pass).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config(arg)
    c.model = registry.default_config("le_mamba")
    c.model.update(dict(bands=8, size="tiny", drop_path=0.0, scan_method="sequential"))
    load_sibling(__file__, "le_mamba_wv3").le_mamba_recipe(c)
    c.optim.warmup_steps = 0 if arg == "smoke" else 50
    c.batch_size = 8
    c.logging.group = "le_mamba_wv2_real"
    c.logging.tags = ("le_mamba", "wv2", "wald", "single-scene")
    if arg != "smoke":
        c.steps, c.eval_every, c.checkpoint.every = 1000, 100, 100
    return c
