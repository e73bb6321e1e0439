"""LoRA layers (pansharp_jax.nn.lora): exact base behaviour at B = 0, the low-rank update, merging, freezing."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.nn.lora import (
    LoRAConv,
    LoRADense,
    count_lora,
    freeze_all_but_lora,
    frozen_prefixes,
    is_lora_path,
    lora_paths,
    merge_lora,
)
from pansharp_jax.train.optim import make_optimizer

KEY = jax.random.PRNGKey(0)


def _np(tree):
    return jax.tree.map(np.asarray, tree)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(strides=(2, 2), padding="VALID", kernel_size=(2, 2)), dict(feature_group_count=4, padding=((1, 1), (1, 1)))],
)
def test_lora_conv_with_zero_b_is_the_base_conv_exactly(kw: dict) -> None:
    x = jax.random.normal(KEY, (2, 8, 8, 4))
    lora = LoRAConv(8, rank=3, alpha=6.0, **kw)
    params = lora.init(jax.random.PRNGKey(1), x)["params"]
    assert set(params) == {"kernel", "bias", "lora_a", "lora_b"}
    assert not np.any(np.asarray(params["lora_b"])) and np.any(np.asarray(params["lora_a"]))
    base = nn.Conv(8, kw.get("kernel_size", (3, 3)), strides=kw.get("strides", 1), padding=kw.get("padding", "SAME"),
                   feature_group_count=kw.get("feature_group_count", 1))  # fmt: skip
    want = base.apply({"params": {"kernel": params["kernel"], "bias": params["bias"]}}, x)
    np.testing.assert_array_equal(np.asarray(lora.apply({"params": params}, x)), np.asarray(want))


def test_lora_dense_with_zero_b_is_the_base_dense_exactly() -> None:
    x = jax.random.normal(KEY, (3, 5, 6))
    lora = LoRADense(7, rank=2)
    params = lora.init(jax.random.PRNGKey(2), x)["params"]
    want = nn.Dense(7).apply({"params": {"kernel": params["kernel"], "bias": params["bias"]}}, x)
    np.testing.assert_array_equal(np.asarray(lora.apply({"params": params}, x)), np.asarray(want))
    no_bias = LoRADense(7, rank=2, use_bias=False).init(KEY, x)["params"]
    assert set(no_bias) == {"kernel", "lora_a", "lora_b"}


def test_rank_zero_is_the_plain_layer() -> None:
    x = jnp.ones((1, 4, 4, 3))
    assert set(LoRAConv(5, rank=0).init(KEY, x)["params"]) == {"kernel", "bias"}
    assert set(LoRADense(5).init(KEY, x)["params"]) == {"kernel", "bias"}


def test_low_rank_update_matches_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    p = {"kernel": rng.normal(size=(6, 3)), "bias": rng.normal(size=3), "lora_a": rng.normal(size=(6, 2)),
         "lora_b": rng.normal(size=(2, 3))}  # fmt: skip
    p = {k: v.astype(np.float32) for k, v in p.items()}
    out = np.asarray(LoRADense(3, rank=2, alpha=1.0).apply({"params": p}, x))
    d = lambda k: p[k].astype(np.float64)  # noqa: E731
    want = x.astype(np.float64) @ (d("kernel") + 0.5 * d("lora_a") @ d("lora_b")) + d("bias")
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)

    # conv: y[n, i, j, o] = sum_{u, v, c} xpad[n, i + u, j + v, c] * W'[u, v, c, o] + b[o], W' = W + s A B
    xc = rng.normal(size=(1, 5, 5, 2)).astype(np.float32)
    pc = {"kernel": rng.normal(size=(3, 3, 2, 4)), "bias": rng.normal(size=4), "lora_a": rng.normal(size=(18, 2)),
          "lora_b": rng.normal(size=(2, 4))}  # fmt: skip
    pc = {k: v.astype(np.float32) for k, v in pc.items()}
    out = np.asarray(LoRAConv(4, rank=2, alpha=4.0).apply({"params": pc}, xc))
    w = pc["kernel"].astype(np.float64) + 2.0 * (pc["lora_a"].astype(np.float64) @ pc["lora_b"]).reshape(3, 3, 2, 4)
    xp = np.pad(xc.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((1, 5, 5, 4)) + pc["bias"]
    for i in range(5):
        for j in range(5):
            want[0, i, j] += np.einsum("uvc,uvco->o", xp[0, i : i + 3, j : j + 3], w)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_merge_lora_gives_the_rank_zero_model_with_the_same_output() -> None:
    class Net(nn.Module):
        rank: int

        @nn.compact
        def __call__(self, x):
            h = jax.nn.relu(LoRAConv(6, rank=self.rank, alpha=2.0 * max(self.rank, 1), name="c")(x))
            return LoRADense(3, rank=self.rank, alpha=2.0 * max(self.rank, 1), name="d")(h)

    x = jax.random.normal(KEY, (2, 6, 6, 3))
    params = _np(Net(2).init(KEY, x)["params"])
    rng = np.random.default_rng(5)
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: rng.normal(size=v.shape).astype(np.float32) if "lora_b" in str(p) else v, params
    )
    merged = merge_lora(params, scale=2.0)
    assert jax.tree.structure(merged) == jax.tree.structure(jax.eval_shape(Net(0).init, KEY, x)["params"])
    want = np.asarray(Net(2).apply({"params": params}, x))
    np.testing.assert_allclose(np.asarray(Net(0).apply({"params": merged}, x)), want, rtol=1e-5, atol=1e-5)


def _tree():
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    return {
        "enc": {"conv": {"kernel": z(3), "bias": z(1), "lora_a": z(2), "lora_b": z(2)}, "norm": {"scale": z(1)}},
        "spatial_0": {"conv1": {"kernel": z(3), "bias": z(1), "lora_a": z(2), "lora_b": z(2)}, "time": {"w": z(1)}},
        "head": {"kernel": z(2)},
    }


def test_frozen_prefixes_are_minimal_and_cover_exactly_the_rest() -> None:
    tree = _tree()
    assert lora_paths(tree) == ["enc/conv/lora_a", "enc/conv/lora_b", "spatial_0/conv1/lora_a", "spatial_0/conv1/lora_b"]
    assert lora_paths(tree, ["spatial_0"]) == ["spatial_0/conv1/lora_a", "spatial_0/conv1/lora_b"]
    assert is_lora_path("a/b/lora_b") and not is_lora_path("a/lora_b/kernel")
    want = ["enc", "spatial_0/conv1/kernel", "spatial_0/conv1/bias", "spatial_0/time", "head"]
    assert freeze_all_but_lora(tree, ["spatial_0"]) == want
    assert frozen_prefixes(tree, lambda p: p.startswith("head")) == ["enc", "spatial_0"]
    assert count_lora(tree, ["enc"]) == 4
    with pytest.raises(InputError, match="no LoRA parameters"):
        freeze_all_but_lora(tree, ["head"])
    with pytest.raises(InputError, match="no parameter would train"):
        frozen_prefixes(tree, lambda p: False)


def test_optimizer_with_those_prefixes_changes_only_the_chosen_lora_factors() -> None:
    tree = jax.tree.map(lambda v: v + 1.0, _tree())
    frozen = ",".join(freeze_all_but_lora(tree, ["spatial_0"]))
    tx, _ = make_optimizer({"name": "adam", "lr": 0.1, "frozen": frozen}, 10)
    state, params = tx.init(tree), tree
    for _ in range(2):
        upd, state = tx.update(jax.tree.map(np.ones_like, params), state, params)
        params = optax.apply_updates(params, upd)
    flat_new = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    flat_old = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    changed = {k for k in flat_old if not np.array_equal(flat_old[k], flat_new[k])}
    assert changed == {"['spatial_0']['conv1']['lora_a']", "['spatial_0']['conv1']['lora_b']"}


def test_negative_rank_is_refused() -> None:
    with pytest.raises(InputError, match="rank must be >= 0"):
        LoRADense(3, rank=-1).init(KEY, jnp.ones((1, 2)))
