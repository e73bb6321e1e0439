"""LE-Mamba on PanCollection GaoFen-2 (4 bands, 10-bit: inputs / 1023; 64 x 64 PAN patches).

Same recipe as ``le_mamba_wv3.py`` (AdamW 1e-3, wd 1e-6, clip 0.03, cosine to 8e-5, L1).
"""

import ml_collections

from pansharp_jax.train.cli_args import load_sibling


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    default = load_sibling(__file__, "default")
    wv3 = load_sibling(__file__, "le_mamba_wv3")
    c = default.pancollection("le_mamba", "gf2", lr=1e-3, batch_size=32, steps=150_000, loss="l1", arg=arg)
    return wv3.le_mamba_recipe(c)
