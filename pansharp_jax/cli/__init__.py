"""The ``pansharp`` command line (floor 6): one module per command, a thin :func:`main`.

::

    pansharp fuse    --method gsa --input scene.mat --out fused.tif
    pansharp fuse    --method fusionnet --weights fusionnet/WV3/fusionnet.pth --input ms.tif --pan pan.tif --out fused.tif --tile 512
    pansharp fuse    --method mtf_glp_fs --input scenes/ --out products/          # a catalogue, resumable
    pansharp eval    --fused fused.tif --input scene.mat [--json metrics.json]
    pansharp compare --input scene.mat --methods exp,gsa,fusionnet --weights fusionnet=FILE.pth --out report/
    pansharp train   --config configs/fusionnet_wv3.py --workdir runs/fnet [--resume] [--wandb] [--config.optim.lr=1e-3]
    pansharp demo    --out demo_out/ [--train-steps N]

Methods come from :func:`pansharp_jax.methods.resolve` (the one method API); this
package only parses, checks paths and prints.
"""

from __future__ import annotations

from pansharp_jax.cli._common import read_fused
from pansharp_jax.cli.compare import run_comparison
from pansharp_jax.cli.main import build_parser, main
from pansharp_jax.methods import Method, known_methods, resolve

__all__ = ["main", "build_parser", "read_fused", "run_comparison", "Method", "known_methods", "resolve"]
