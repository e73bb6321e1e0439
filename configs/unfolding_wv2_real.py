"""MAE-prior deep unfolding on the real WorldView-2 scene (data of ``fusionnet_wv2_real.py``).

Stage-wise training is a sequence of configs of the one trainer:

1. ``pansharp train --config configs/mae_wv2_real.py --workdir runs/mae_wv2_real``
   (the spatial-masking MAE: the prior), and ``configs/mae_wv2_real.py:spectral --workdir
   runs/mae_wv2_real_spectral`` (the spatial-spectral MAE of the consistency loss);
2. this config: both MAEs are copied in (``init_from``) and frozen (``optim.frozen``).

Options (``:ARG``, comma-separated): ``smoke`` (a few steps, tiny sizes, the MAEs random and
frozen: checks the set-up end to end without the pre-training runs), ``noprior`` (no MAE in
the proximal step), ``noloss`` (no consistency term), ``k2`` / ``k8`` ... (number of stages).
Override the pre-trained runs with ``--config.init_from=prior=W1@mae,consistency=W2@mae``.
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling

# Options are combined (":smoke,noprior,k2"), so any ARG is accepted here and checked below.
CONFIG_ARGS = None
PRIOR_RUN = "runs/mae_wv2_real"
CONSISTENCY_RUN = "runs/mae_wv2_real_spectral"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    opts = [a.strip() for a in (arg or "").split(",") if a.strip()]
    for o in opts:
        if o not in ("smoke", "noprior", "noloss") and not (o.startswith("k") and o[1:].isdigit()):
            from pansharp_jax.errors import InputError

            raise InputError(f"unfolding_wv2_real.py: unknown option :{o} (use smoke, noprior, noloss, kN)")
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config()
    c.model = registry.default_config("unfolding")
    c.model.bands, c.model.sensor = 8, "WV2"
    c.loss = "l1"  # reported at validation; training uses the model's L1 + consistency objective
    c.optim.lr = 5e-4
    for o in opts:
        if o.startswith("k"):
            c.model.stages = int(o[1:])
    if "noprior" in opts:
        c.model.prior = False
    if "noloss" in opts:
        c.model.consistency_weight = 0.0
    frozen, init = [], []
    if c.model.prior:
        frozen.append("prior")
        init.append(f"prior={PRIOR_RUN}@mae")
    if c.model.consistency_weight > 0:
        frozen.append("consistency")
        init.append(f"consistency={CONSISTENCY_RUN}@mae")
    c.optim.frozen = ",".join(frozen)
    c.init_from = ",".join(init)
    c.logging.group = "unfolding_wv2_real"
    c.logging.tags = ("unfolding", "wv2", f"k{c.model.stages}", "prior" if c.model.prior else "noprior")
    if "smoke" in opts:
        for m in (c.model.mae, c.model.consistency_mae):
            m.update(embed_dim=32, depth=1, heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2)
        c.model.features = 16
        c.model.stages = min(int(c.model.stages), 2)
        c.init_from = ""  # the MAEs stay random (and frozen): no pre-training runs needed
        c.steps, c.eval_every, c.checkpoint.every, c.log_every = 20, 10, 10, 5
        c.batch_size, c.eval.max_examples = 4, 2
        c.optim.warmup_steps = 0
    return c
