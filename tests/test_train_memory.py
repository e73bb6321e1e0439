"""benchmarks/train_memory.py: the abstract train-step builder and its table on a tiny model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _train_step_build as tsb  # noqa: E402
import train_memory  # noqa: E402

TINY = {"channels": 4, "num_res_blocks": 1}


def test_abstract_step_sizes_and_table_row() -> None:
    r = tsb.compile_train_step("fusionnet", 2, size=16, bands=4, overrides=TINY)
    # the arguments are the state (params, Adam's mu and nu, step, rng), the batch and the key;
    # jit drops inputs the step does not read (FusionNet does not read lrms)
    cfg = tsb.model_config("fusionnet", 4, TINY)
    from pansharp_jax.models import registry

    shapes = jax.eval_shape(
        registry.build_model(cfg).init, jax.random.key(0),
        jnp.zeros((1, 4, 4, 4)), jnp.zeros((1, 16, 16, 1)), jnp.zeros((1, 16, 16, 4)),
    )["params"]  # fmt: skip
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
    batch_floats = 2 * (16 * 16 * 1 + 2 * 16 * 16 * 4)  # pan, lms, gt
    expected = 4 * (3 * n_params + batch_floats)
    assert expected <= r.argument <= expected + 256
    assert r.temp > 0 and r.batch == 2 and r.bands == 4
    row = train_memory.table_row(r)
    assert row.startswith("| fusionnet | 4 | 2 | ") and row.count("|") == train_memory.HEADER.count("|")
    assert f"{r.temp / 2**30 / 2:.3f}" in row


def test_overrides_parse_literals() -> None:
    assert train_memory.parse_overrides(["scan_method=sequential", "dim=16", "remat_blocks=True"]) == {
        "scan_method": "sequential",
        "dim": 16,
        "remat_blocks": True,
    }
