"""experiments/unfolding_stages.py: one metric entry per stage, equal to evaluate_reduced on that stage."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.data import wald
from pansharp_jax.data.io import load_scene
from pansharp_jax.metrics import evaluate_reduced
from pansharp_jax.models import registry
from pansharp_jax.train.cli_args import load_config
from pansharp_jax.train.loop import train

REPO = Path(__file__).resolve().parents[1]


def test_stage_metrics_of_a_two_step_run(data_dir: Path, tmp_path: Path, experiment) -> None:
    run, out = tmp_path / "unf", tmp_path / "out"
    config = load_config(f"{REPO / 'configs' / 'unfolding_wv2_real.py'}:smoke,noloss,k2",
                         ["--config.steps=2", "--config.eval_every=0", "--config.batch_size=2"])  # fmt: skip
    config.logging.console = False
    params = train(config, run).params  # the 2-step run's final parameters (its last checkpoint)
    assert experiment("unfolding_stages").main(["--ckpt", str(run), "--scene", "rr/wv3_cdif.mat", "--prefer", "latest", "--out", str(out)]) == 0
    report = json.loads((out / "stages.json").read_text())
    assert (out / "stages.png").stat().st_size > 1000 and report["step"] == 2

    # the same scene and network, computed here: each stage's output, then the toolbox metrics
    s = load_scene(data_dir / "rr" / "wv3_cdif.mat")
    with jax.enable_x64(True):
        lms = np.asarray(wald.interp23tap(jnp.asarray(s.lrms, jnp.float64), 4), np.float32)
    model = registry.build_model(config.model)
    xs = model.apply({"params": params}, s.lrms[None].astype(np.float32), s.pan[None].astype(np.float32), lms[None],
                     return_stages=True)  # fmt: skip
    assert xs.shape[1] == int(config.model.stages) == 2
    assert [e["stage"] for e in report["stages"]] == [1, 2]
    for k, entry in enumerate(report["stages"]):
        want = evaluate_reduced(np.asarray(xs[0, k]), s.gt, ratio=4, max_dn=2047.0, block=32, cut=0)
        for m in ("SAM", "ERGAS", "Q2n"):
            assert entry[m] == pytest.approx(want[m], rel=1e-4, abs=1e-6), (k, m)
    lms_scores = evaluate_reduced(lms, s.gt, ratio=4, max_dn=2047.0, block=32, cut=0)
    assert report["lms"]["ERGAS"] == pytest.approx(lms_scores["ERGAS"], rel=1e-6)
    assert report["stages"][0]["ERGAS"] != report["stages"][1]["ERGAS"]
