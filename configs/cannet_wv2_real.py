"""CANNet on one real full-resolution WorldView-2 scene, trained on Wald-reduced patches.

Data block as ``fusionnet_wv2_real.py``: ``fr/wv2_pnn.mat`` (MS 320 x 320 x 8, PAN 1280 x
1280, 11 bits) split on its MS grid, the right quarter held out; each part degraded by the
Wald protocol with the WV2 MTF, cut into 64 x 64 patches of the reduced PAN grid with stride
16; validation on 80 x 80 tiles of the held-out quarter. Optimiser as the authors' (L1, Adam
1e-3), with a cosine decay for this short single-scene run. The authors give no WV2 training
recipe (their WV2 preset is test-only); a good start is fine-tuning the imported
``cannet_wv3.pth`` (8 bands). The per-sample k-means cache is on with the official schedule, as
in ``cannet_wv3.py`` (204 patches: ~1 MB of cached indices).
"""

import ml_collections

from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = load_sibling(__file__, "fusionnet_wv2_real").get_config(arg)
    c.model = registry.default_config("cannet")
    c.model.bands = 8
    c.seed = 10
    c.loss = "l1"
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 0 if arg == "smoke" else 100
    c.cluster_cache.enabled = True  # the official per-sample k-means cache and schedule
    c.cluster_cache.policy = "10:1,100:10,300:20,50"
    c.logging.group = "cannet_wv2_real"
    c.logging.tags = ("cannet", "wv2", "wald", "single-scene")
    return c
