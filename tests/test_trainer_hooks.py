"""Stage-wise training through the one trainer: model-defined objectives, frozen params, init_from."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from pansharp_jax.cli import main
from pansharp_jax.errors import InputError
from pansharp_jax.train.init_from import check_same_layout, parse_init_from, replace_subtree, subtree
from pansharp_jax.train.optim import freeze_labels, make_optimizer
from pansharp_jax.train.restore import restore_params

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_frozen_prefixes_get_zero_updates_and_typos_are_refused() -> None:
    params = {"prior": {"w": np.ones(3, np.float32)}, "body": {"edsr": {"k": np.ones(2, np.float32)}, "head": np.ones(2, np.float32)}}
    tx, _ = make_optimizer({"name": "adam", "lr": 0.1, "frozen": "prior,body/edsr"}, 10)
    state = tx.init(params)
    grads = jax.tree.map(np.ones_like, params)
    upd, _ = tx.update(grads, state, params)
    new = optax.apply_updates(params, upd)
    np.testing.assert_array_equal(new["prior"]["w"], params["prior"]["w"])
    np.testing.assert_array_equal(new["body"]["edsr"]["k"], params["body"]["edsr"]["k"])
    assert np.all(new["body"]["head"] < 1.0)
    assert freeze_labels(params, ("body",)) == {"prior": {"w": "train"}, "body": {"edsr": {"k": "frozen"}, "head": "frozen"}}
    with pytest.raises(InputError, match="names no parameters: prior/x"):
        freeze_labels(params, ("prior/x",))


def test_init_from_spec_and_tree_helpers() -> None:
    assert parse_init_from("prior=runs/a@mae, consistency=runs/b") == [("prior", "runs/a", "mae"), ("consistency", "runs/b", "")]
    with pytest.raises(InputError, match="DST=WORKDIR"):
        parse_init_from("prior")
    tree = {"a": {"b": np.zeros(2)}, "c": np.ones(1)}
    assert subtree(tree, "a/b", "x").shape == (2,)
    with pytest.raises(InputError, match="has no 'a/z'"):
        subtree(tree, "a/z", "the run")
    new = replace_subtree(tree, "a", {"b": np.full(2, 5.0)})
    assert new["a"]["b"][0] == 5.0 and tree["a"]["b"][0] == 0.0
    with pytest.raises(InputError, match=r"is \(3,\) in the source and \(2,\) here"):
        check_same_layout({"b": np.zeros(3)}, {"b": np.zeros(2)}, "x")


@pytest.mark.usefixtures("data_dir")
def test_mae_pretraining_then_unfolding_with_the_frozen_prior(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The MAE trains through its own objective; the unfolding starts from its params and
    keeps them bit-identical (frozen) while its own stages change."""
    w_mae, w_unf = tmp_path / "mae", tmp_path / "unf"
    tiny = ["--config.steps=3", "--config.eval_every=3", "--config.checkpoint.every=3", "--config.log_every=1"]
    assert main(["train", "--config", f"{CONFIGS / 'mae_wv2_real.py'}:smoke", "--workdir", str(w_mae), *tiny]) == 0
    out = capsys.readouterr().out
    assert "masked_mse" in out or "loss" in out
    mae = restore_params(w_mae)
    assert mae.model_config["name"] == "mae"
    args = ["train", "--config", f"{CONFIGS / 'unfolding_wv2_real.py'}:smoke,noloss,k1", "--workdir", str(w_unf), *tiny,
            f"--config.init_from=prior={w_mae}@mae", "--config.model.mae.embed_dim=32", "--config.batch_size=2"]  # fmt: skip
    assert main(args) == 0
    assert "initialised from prior=" in capsys.readouterr().out
    unf = restore_params(w_unf, prefer="latest")
    assert unf.step == 3
    a, b = _leaves(mae.params["mae"]), _leaves(unf.params["prior"])
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # copied in and frozen: bit-identical
    init = np.log(np.e - 1.0)  # the stages' step size moved away from its initial value
    assert not np.allclose(np.asarray(unf.params["stages"]["eta"]), init)
