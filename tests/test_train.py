"""Trainer: the loss goes down, one seed gives bit-identical parameters, configs load and override."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.train import losses
from pansharp_jax.train.cli_args import apply_overrides, load_config
from pansharp_jax.train.loop import train
from pansharp_jax.train.testing import tiny_config, write_synthetic_panc

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return write_synthetic_panc(d / "train.h5", 32, seed=0), write_synthetic_panc(d / "val.h5", 4, seed=1)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_loss_decreases_and_same_seed_gives_bit_identical_params(data, tmp_path):
    c = tiny_config(*map(str, data), steps=30, batch_size=8)
    c.eval_every = 30
    r1 = train(c, tmp_path / "a")
    r2 = train(c, tmp_path / "b")
    loss = np.array([m["loss"] for _, m in r1.history])
    first, last = loss[:5].mean(), loss[-5:].mean()
    print(f"tiny FusionNet, 30 steps: mean L1 loss of steps 1-5 {first:.5f} -> steps 26-30 {last:.5f}")
    assert last < 0.75 * first
    assert r1.metrics["ERGAS"] > 0 and r1.best is not None and r1.best[0] == 30
    for a, b in zip(_leaves(r1.params), _leaves(r2.params), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-identical on CPU
    assert [m for _, m in r1.history][-1]["loss"] == [m for _, m in r2.history][-1]["loss"]

    c.seed = 1
    r3 = train(c, tmp_path / "c")
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(r1.params), _leaves(r3.params), strict=True))


def test_workdir_with_checkpoints_needs_resume(data, tmp_path):
    c = tiny_config(str(data[0]), steps=2, batch_size=8)
    train(c, tmp_path)
    with pytest.raises(InputError, match="resume"):
        train(c, tmp_path)
    r = train(c, tmp_path, resume=True)  # already at the last step: nothing to do
    assert r.start_step == 2 and r.history == []


def test_losses():
    a, b = np.zeros((2, 4, 4, 3), np.float32), np.full((2, 4, 4, 3), 0.5, np.float32)
    assert float(losses.l1(a, b)) == pytest.approx(0.5)
    assert float(losses.l2(a, b)) == pytest.approx(0.25)
    with pytest.raises(InputError, match="unknown loss"):
        losses.get_loss("huber")


def test_configs_load_and_override():
    c = load_config(
        CONFIGS / "fusionnet_wv3.py",
        ["--config.optim.lr=1e-3", "--config.steps=500", "config.logging.tags=a,b", "--config.model.num_res_blocks=2"],
    )
    assert c.optim.lr == 1e-3 and c.steps == 500 and c.logging.tags == ("a", "b")
    assert c.model.name == "fusionnet" and c.model.num_res_blocks == 2 and c.loss == "l2"
    assert c.checkpoint.best_metric == "ERGAS" and c.checkpoint.best_mode == "min"
    real = load_config(str(CONFIGS / "fusionnet_wv2_real.py") + ":smoke", [])
    assert real.data.kind == "wald_scene" and real.data.holdout_fraction == 0.25 and real.steps == 20
    apply_overrides(c, ["--config.optim.lr=2", "--config.logging.enabled=false", "--config.data.train=x/y.h5"])
    assert (
        c.optim.lr == 2.0 and isinstance(c.optim.lr, float) and c.logging.enabled is False and c.data.train == "x/y.h5"
    )

    with pytest.raises(InputError, match=r"unknown config key 'optim.lrr'.*optim.lr"):
        apply_overrides(c, ["--config.optim.lrr=1"])
    with pytest.raises(InputError, match="expected an integer"):
        apply_overrides(c, ["--config.steps=ten"])
    with pytest.raises(InputError, match="expected a number"):
        apply_overrides(c, ["--config.optim.lr=fast"])
    with pytest.raises(InputError, match="expected a boolean"):
        apply_overrides(c, ["--config.logging.enabled=maybe"])
    with pytest.raises(InputError, match="is a group"):
        apply_overrides(c, ["--config.optim=1"])
    with pytest.raises(InputError, match="KEY=VALUE"):
        apply_overrides(c, ["--config.steps"])
