"""Floor 4: the one method API. ``resolve(name, weights=, ckpt=) -> Method``.

Every caller (the CLI, ``experiments/``, ``benchmarks/``, notebooks, the product engine)
gets runnable methods from here, whatever their source: classical baselines, learned
models with the authors' released weights or one's own checkpoints, and later sources
(generative samplers, MHIF models) registered with :func:`register_source`::

    from pansharp_jax.data.io import load_scene
    from pansharp_jax.methods import resolve

    scene = load_scene("fr/wv2_pnn.mat")                 # relative: also under $PANSHARP_DATA
    fused = resolve("mtf_glp_fs").fuse(scene)            # (H, W, C) on [0, 1], clipped
    net = resolve("fusionnet", weights="fusionnet/WV2/fusionnet.pth")  # also under $PANSHARP_WEIGHTS
    raw = net.fuse(scene, clip=False)                    # the network's raw output
"""

from __future__ import annotations

from pansharp_jax.methods.base import GLOBAL, LOCAL, Method, finish_product
from pansharp_jax.methods.sources import (
    GLOBAL_MODEL_MARGINS,
    ClassicalSource,
    MethodSource,
    ModelSource,
    from_params,
    known_methods,
    normalise,
    register_source,
    resolve,
    resolve_many,
    sha256_file,
    method_sources,
)

__all__ = [
    "GLOBAL",
    "LOCAL",
    "GLOBAL_MODEL_MARGINS",
    "Method",
    "MethodSource",
    "ClassicalSource",
    "ModelSource",
    "finish_product",
    "from_params",
    "known_methods",
    "normalise",
    "register_source",
    "resolve",
    "resolve_many",
    "sha256_file",
    "method_sources",
]
