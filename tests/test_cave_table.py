"""experiments/cave_table.py and the training queue it shares with self_trained_wv3.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pansharp_jax.train.cli_args import load_config
from pansharp_jax.train.queue import finished, run_recorded

REPO = Path(__file__).resolve().parents[1]


def test_run_recorded_keeps_every_outcome_and_finished_matches_the_record(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    assert run_recorded("good", [sys.executable, "-c", "print('done 1')"], summary, 60.0, steps=3)
    assert not run_recorded("bad", [sys.executable, "-c", "import sys; sys.exit('broken')"], summary, 60.0, steps=3)
    assert not run_recorded("slow", [sys.executable, "-c", "import time; time.sleep(30)"], summary, 0.5, steps=3)
    rec = json.loads(summary.read_text())
    assert rec["good"]["ok"] and rec["good"]["tail"] == ["done 1"] and rec["good"]["steps"] == 3
    assert not rec["bad"]["ok"] and rec["bad"]["tail"] == ["broken"]
    assert rec["slow"]["tail"] == ["stopped after 0 s"] or rec["slow"]["tail"][0].startswith("stopped after")
    assert finished(summary, "good", steps=3)
    assert not finished(summary, "good", steps=4)  # another run length: train again
    assert not finished(summary, "bad", steps=3) and not finished(summary, "missing")
    assert not finished(tmp_path / "none.json", "good")


@pytest.mark.parametrize("model", ["infn", "feinfn", "le_mamba", "fusionmamba"])
def test_every_override_names_a_key_of_the_model_config(model: str, experiment) -> None:
    """Each override of the table's runs applies to the model's CAVE config (a typo would raise)."""
    cave = experiment("cave_table")
    overrides = cave.train_overrides(model, Path("data"), 7, 2, 1e-3, "tiny")
    cfg = load_config(str(REPO / "configs" / f"{model}_cave_x8.py"), overrides)
    assert cfg.steps == 7 and cfg.batch_size == 2 and cfg.optim.schedule == "cosine" and cfg.data.ratio == 8
    for item in cave.TINY[model]:
        key, value = item.split("=", 1)
        node = cfg
        for part in key.split(".")[:-1]:
            node = node[part]
        got = node[key.split(".")[-1]]
        assert str(tuple(got) if isinstance(got, (list, tuple)) else got) == value


def test_table_marks_the_best_value_of_each_metric_per_ratio(experiment) -> None:
    cave = experiment("cave_table")

    def res(rows):
        return {"results": [{"method": m, "label": m.upper(), "metrics": dict(zip(("PSNR", "SAM", "ERGAS", "SSIM"), v))}
                            for m, v in rows]}  # fmt: skip

    md = cave.table({8: res([("bicubic", (30.0, 6.0, 11.0, 0.86)), ("infn", (31.0, 7.0, 10.0, 0.85))]),
                     4: res([("cnmf", (51.0, 3.5, 2.0, 0.99)), ("infn", (40.0, 3.0, 9.0, 0.95))])},
                    {"infn": 300}, "tiny")  # fmt: skip
    lines = md.splitlines()
    assert lines[0].startswith("| method | ratio | PSNR (dB) | SAM (deg) | ERGAS | SSIM |")
    assert lines[2] == "| CNMF | x4 | **51.0000** | 3.5000 | **2.0000** | **0.9900** |"
    assert lines[3] == "| INFN (300 steps, tiny) | x4 | 40.0000 | **3.0000** | 9.0000 | 0.9500 |"
    assert lines[4] == "| BICUBIC | x8 | 30.0000 | **6.0000** | 11.0000 | **0.8600** |"
    assert lines[5] == "| INFN (300 steps, tiny) | x8 | **31.0000** | 7.0000 | **10.0000** | 0.8500 |"


def test_missing_patches_name_the_command_that_makes_them(tmp_path: Path, experiment) -> None:
    with pytest.raises(SystemExit, match="make_cave_patches.py --root"):
        experiment("cave_table").main(["--data", str(tmp_path), "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "o")])


def test_model_steps_override_only_the_named_models(experiment) -> None:
    cave = experiment("cave_table")
    assert cave.steps_per_model(["infn", "feinfn"], 300, "infn=2000") == {"infn": 2000, "feinfn": 300}
    assert cave.steps_per_model(["infn"], 300, "") == {"infn": 300}
    for bad in ("fusionmamba=5", "infn=x", "infn"):
        with pytest.raises(SystemExit, match="--model-steps"):
            cave.steps_per_model(["infn", "feinfn"], 300, bad)
