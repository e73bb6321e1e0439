"""experiments/ablate.py: one run per (variant x grid point), its overrides applied, held-out scores of its own params."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.metrics import evaluate_reduced
from pansharp_jax.models import registry
from pansharp_jax.train.restore import restore_params

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grid_parsing_and_run_names() -> None:
    ablate = _load("ablate")
    assert ablate.parse_grid(["optim.lr=1e-4, 3e-4", "model.stages=2"]) == [("optim.lr", ["1e-4", "3e-4"]), ("model.stages", ["2"])]
    for bad in ("optim.lr", "=1,2", "optim.lr="):
        with pytest.raises(InputError, match="KEY=V1,V2"):
            ablate.parse_grid([bad])
    assert ablate.run_name("noprior,k2", {"optim.lr": "1e-3"}) == "noprior+k2_lr-1e-3"
    assert ablate.run_name("", {}) == "base"


def test_variant_times_grid_with_heldout_scores(data_dir: Path, tmp_path: Path) -> None:
    ablate = _load("ablate")
    out, work = tmp_path / "a.csv", tmp_path / "runs"
    argv = ["--config", str(REPO / "configs" / "fusionnet_wv2_real.py"), "--variants", "smoke", "--grid",
            "model.num_res_blocks=1,2", "--steps", "2", "--heldout", "--workdir", str(work), "--out", str(out),
            "--config.batch_size=2", "--config.eval.max_examples=1"]  # fmt: skip
    assert ablate.main(argv) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["run"] for r in rows] == ["smoke_num_res_blocks-1", "smoke_num_res_blocks-2"]
    assert out.with_suffix(".md").read_text().count("\n") == 4  # header, rule, two rows

    inputs = _load("real_scene_wv2").heldout_inputs
    for row, blocks in zip(rows, (1, 2)):
        run = work / row["run"]
        saved = json.loads((run / "config.json").read_text())
        assert saved["model"]["num_res_blocks"] == blocks and saved["steps"] == 2
        # the row's held-out scores are those of this run's own final params, computed here
        restored = restore_params(run, prefer="latest")
        cfg = registry.default_config("fusionnet")
        cfg.update(restored.model_config)
        inp = inputs(ablate.load_config(str(REPO / "configs" / "fusionnet_wv2_real.py")))
        lms = inp["lms"][None].astype(np.float32)
        fused = registry.build_model(cfg).apply(
            {"params": restored.params}, inp["lrms"][None].astype(np.float32), inp["pan"][None].astype(np.float32), lms
        )[0]
        want = evaluate_reduced(np.asarray(fused, np.float64), inp["gt"], ratio=4, max_dn=inp["max_dn"], block=32, cut=0)
        for k in ("Q2n", "SAM", "ERGAS"):
            assert float(row[f"heldout_{k}"]) == pytest.approx(want[k], rel=1e-3), (row["run"], k)
    assert rows[0]["heldout_ERGAS"] != rows[1]["heldout_ERGAS"]


def test_file_arg_in_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--variants"):
        _load("ablate").main(["--config", "configs/unfolding_wv2_real.py:noprior", "--out", str(tmp_path / "x.csv")])


def test_unfolding_sweep_forms_load_with_their_own_frozen_params() -> None:
    """Every `config` value of the W&B sweep parses as the trainer's --config=FILE:ARG and loads."""
    import argparse

    yaml = pytest.importorskip("yaml")
    from pansharp_jax.train.__main__ import add_arguments

    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "unfolding_ablation.yaml").read_text())
    forms = sweep["parameters"]["config"]["values"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    seen = set()
    for form in forms:
        args = parser.parse_args([f"--config={form}", "--workdir", "w"])
        c = _load("ablate").load_config(str(REPO / args.config))
        frozen = set(filter(None, str(c.optim.frozen).split(",")))
        assert ("prior" in frozen) == bool(c.model.prior) and ("consistency" in frozen) == (c.model.consistency_weight > 0)
        seen.add((bool(c.model.prior), c.model.consistency_weight > 0, int(c.model.stages)))
    assert {(True, True, 4), (False, True, 4), (True, False, 4), (False, False, 4), (True, True, 2), (True, True, 8)} == seen
