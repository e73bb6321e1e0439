"""Training-run usability: resume messages, the saved config, wrong workdirs, signals, config ARGs, W&B, NaN.

Every run is a tiny FusionNet (4 channels, 1 residual block) on synthetic PanCollection files,
driven through :func:`pansharp_jax.train.__main__.run` (the ``pansharp train`` code path) or, for
the signal tests, ``python -m pansharp_jax.train`` in a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from pansharp_jax.errors import InputError
from pansharp_jax.train import __main__ as train_main
from pansharp_jax.train import loop
from pansharp_jax.train.cli_args import config_to_dict, load_config, main_args
from pansharp_jax.train.restore import restore_params
from pansharp_jax.models import registry
from pansharp_jax.train.testing import synthetic_samples, tiny_config, write_synthetic_panc

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# A config file as users write them; ARG is the step count. {extra} customises the model/logging.
CONFIG = """
from pansharp_jax.train.testing import tiny_config


def get_config(arg=None):
    c = tiny_config({train!r}, {val!r}, steps=int(arg or 2), batch_size=4)
    c.eval_every = 2
{extra}
    return c
"""


def _write_config(path: Path, data: tuple[Path, Path], extra: str = "") -> Path:
    body = "\n".join("    " + line for line in extra.strip().splitlines())
    path.write_text(CONFIG.format(train=str(data[0]), val=str(data[1]), extra=body), encoding="utf-8")
    return path


def _args(*argv: object) -> tuple[argparse.Namespace, list[str]]:
    """(args, overrides) exactly as ``pansharp train`` / ``python -m pansharp_jax.train`` parse them."""
    overrides, rest = main_args([str(a) for a in argv])
    parser = argparse.ArgumentParser()
    train_main.add_arguments(parser)
    return parser.parse_args(rest), overrides


def _run(*argv: object) -> dict[str, Any]:
    args, overrides = _args(*argv)
    return train_main.run(args, overrides)


def _steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ux_data")
    return write_synthetic_panc(d / "train.h5", 16, seed=0).absolute(), write_synthetic_panc(d / "val.h5", 4, seed=1).absolute()


@pytest.fixture(scope="module")
def config_file(data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_config(tmp_path_factory.mktemp("ux_cfg") / "tiny.py", data)


@pytest.fixture(scope="module")
def base_run(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run (lr overridden to 0.01; evaluated and saved at step 2). Copy before resuming."""
    workdir = tmp_path_factory.mktemp("ux_runs") / "base"
    summary = _run("--config", f"{config_file}:2", "--workdir", workdir, "--config.optim.lr=0.01")
    assert summary["step"] == 2
    return workdir


def _copy(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(base, dst)
    return dst


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


# --- 1. "resumed from step N" and the restored checkpoint's path --------------------------------
def test_resumed_run_prints_step_and_checkpoint_folder(
    base_run: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _copy(base_run, tmp_path)
    capsys.readouterr()
    summary = _run("--config", config_file, "--workdir", wd, "--resume", "--config.steps=3")
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if "resumed from step" in ln]
    assert lines == [f"resumed from step 2 ({(wd / 'checkpoints' / '2').absolute()})"], out
    assert summary["step"] == 3 and _steps(wd)[-1] == 3


def test_restore_params_carries_the_checkpoint_path(base_run: Path) -> None:
    r = restore_params(base_run)
    assert r.which == "best" and r.step == 2  # the only evaluation was at step 2
    assert r.path == (base_run / "checkpoints" / "2").absolute() and r.path.is_dir()
    assert r.describe() == f"using checkpoint {r.path} (best, step 2)"
    assert restore_params(base_run, step=2).describe() == f"using checkpoint {r.path} (step 2)"


# --- 2. the saved config: config.json, --resume without --config, overrides on top -------------
def test_run_saves_its_config_as_json(base_run: Path, config_file: Path) -> None:
    saved = json.loads((base_run / "config.json").read_text())
    expected = json.loads(json.dumps(config_to_dict(load_config(f"{config_file}:2", ["--config.optim.lr=0.01"]))))
    assert saved == expected
    assert saved["optim"]["lr"] == 0.01 and saved["steps"] == 2
    assert sorted(p.name for p in base_run.iterdir()) == ["checkpoints", "config.json"]  # no temporary file left


def test_resume_uses_saved_config_and_prints_each_override(
    base_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _copy(base_run, tmp_path)
    capsys.readouterr()
    summary = _run("--workdir", wd, "--resume", "--config.steps=3", "--config.optim.lr=0.02")  # no --config
    out = capsys.readouterr().out
    changes = sorted(ln for ln in out.splitlines() if ln.startswith("config."))
    assert changes == ["config.optim.lr: 0.01 -> 0.02", "config.steps: 2 -> 3"], out
    assert summary["step"] == 3
    r = restore_params(wd, prefer="latest")
    assert r.step == 3 and r.config["optim"]["lr"] == 0.02 and r.config["batch_size"] == 4
    assert json.loads((wd / "config.json").read_text())["steps"] == 3


def test_resume_keeps_saved_values_over_a_different_config_file(
    base_run: Path, data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = _copy(base_run, tmp_path)
    other = _write_config(tmp_path / "other.py", data, "c.optim.lr = 0.5\nc.batch_size = 8")
    capsys.readouterr()
    _run("--config", other, "--workdir", wd, "--resume", "--config.steps=3")
    out = capsys.readouterr().out
    assert [ln for ln in out.splitlines() if ln.startswith("config.")] == ["config.steps: 2 -> 3"], out
    note = [ln for ln in out.splitlines() if "differs from the run's saved config" in ln]
    assert len(note) == 1 and "optim.lr" in note[0] and "batch_size" in note[0], out
    r = restore_params(wd, prefer="latest")
    assert r.step == 3 and r.config["optim"]["lr"] == 0.01 and r.config["batch_size"] == 4  # the saved values


def test_config_is_required_for_a_new_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--config") as e:
        _run("--workdir", tmp_path / "new")
    _one_line(e)
    with pytest.raises(InputError, match="holds no run to resume") as e:
        _run("--workdir", tmp_path / "new", "--resume")
    _one_line(e)


# --- 3. a workdir holding another model's run --------------------------------------------------
def test_workdir_of_another_model_is_refused_before_data_and_orbax(
    base_run: Path, data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orbax.checkpoint as ocp

    from pansharp_jax.data import pipeline

    def must_not_run(*a: Any, **k: Any) -> Any:
        raise AssertionError("data preparation or Orbax reached before the workdir check")

    wd = _copy(base_run, tmp_path)
    pannet = _write_config(
        tmp_path / "pannet.py",
        data,
        "from pansharp_jax.models import registry\nc.model = registry.default_config('pannet')\nc.model.bands = 4",
    )
    monkeypatch.setattr(pipeline, "build_sources", must_not_run)
    monkeypatch.setattr(ocp, "CheckpointManager", must_not_run)
    want = f"workdir {wd} holds a fusionnet run; this config trains pannet: use another --workdir"
    for extra in (("--resume",), ()):
        with pytest.raises(InputError) as e:
            _run("--config", pannet, "--workdir", wd, *extra)
        assert _one_line(e) == want
    with pytest.raises(InputError) as e:  # the override changes the model: refused as well
        _run("--workdir", wd, "--resume", "--config.model.name=pannet")
    assert _one_line(e) == want
    (wd / "config.json").unlink()  # a workdir from before config.json: the checkpoint's config is read
    with pytest.raises(InputError) as e:
        loop.train(load_config(pannet), wd, resume=True)
    assert _one_line(e) == want


def test_resume_with_changed_model_sizes_is_one_line(base_run: Path, tmp_path: Path) -> None:
    wd = _copy(base_run, tmp_path)
    before = (wd / "config.json").read_bytes()
    with pytest.raises(InputError) as e:
        _run("--workdir", wd, "--resume", "--config.model.channels=8", "--config.steps=3")
    line = _one_line(e)
    assert "does not fit this config's model" in line and "config.model.channels: 4 -> 8" in line, line
    assert (wd / "config.json").read_bytes() == before  # the failed start left the saved config alone


# --- 4. SIGINT / SIGTERM: checkpoint, resume command, exit code -------------------------------
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_resume_continues(
    sig: signal.Signals, code: int, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = tmp_path / "sig"
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "pansharp_jax.train", "--config", f"{config_file}:100000", "--workdir", str(wd),
           "--config.logging.console=true", "--config.eval_every=0"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not any(ln.startswith("training fusionnet from step 0") for ln in lines):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "no first log line within 240 s"
            time.sleep(0.05)
        proc.send_signal(sig)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    proc.stdout.close()
    out = "".join(lines)
    assert rc == code, out[-3000:]
    steps = _steps(wd)
    assert len(steps) == 1 and 1 <= steps[0] < 100000, (steps, out[-3000:])
    n = steps[0]
    assert f"stopped at step {n}, checkpoint saved in {(wd / 'checkpoints' / str(n)).absolute()}" in out, out[-3000:]
    assert f"resume with: pansharp train --workdir {wd} --resume" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]

    capsys.readouterr()
    summary = _run("--workdir", wd, "--resume", f"--config.steps={n + 2}", "--config.logging.console=false")
    assert f"resumed from step {n} (" in capsys.readouterr().out
    assert summary["step"] == n + 2 and _steps(wd)[-1] == n + 2


# --- 5. FILE:ARG -------------------------------------------------------------------------------------
def test_unknown_config_arg_is_refused_with_the_valid_ones(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError) as e:
        load_config(f"{CONFIGS / 'fusionnet_wv3.py'}:smok")
    line = _one_line(e)
    assert "'smok'" in line and "valid ARGs: smoke" in line, line
    assert load_config(f"{CONFIGS / 'fusionnet_wv3.py'}:smoke").steps == 20  # the valid one still works
    with pytest.raises(InputError) as e:
        load_config(f"{CONFIGS / 'default.py'}:smoke")  # get_config() takes no ARG at all
    assert "takes no ARG" in _one_line(e)
    with pytest.raises(InputError) as e:  # get_config raises (int('many')): refused, one line
        load_config(f"{config_file}:many")
    line = _one_line(e)
    assert "get_config('many') failed" in line and "ValueError" in line, line

    with warnings.catch_warnings():  # main() warns that JAX already runs in this process
        warnings.simplefilter("ignore")
        rc = train_main.main(["--config", f"{CONFIGS / 'cannet_wv3.py'}:smoky", "--workdir", "unused"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "smoke" in err[0], err


# --- 6. W&B off unless --wandb -------------------------------------------------------------------
class _Stop(Exception):
    pass


def test_wandb_only_with_the_flag(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on = _write_config(tmp_path / "wandb_on.py", data, "c.logging.enabled = True")
    asked: list[bool] = []

    def fake_train(config: Any, workdir: Any, resume: bool = False, wandb: bool = False) -> Any:
        asked.append(wandb)
        raise _Stop

    monkeypatch.setattr(loop, "train", fake_train)
    for flags in ((), ("--no-wandb",), ("--wandb",)):
        with pytest.raises(_Stop):
            _run("--config", on, "--workdir", tmp_path / "w", *flags)
    assert asked == [False, False, True]
    monkeypatch.undo()

    seen: list[bool] = []

    def fake_logger(*a: Any, use_wandb: bool, **k: Any) -> Any:
        seen.append(use_wandb)
        raise _Stop

    monkeypatch.setattr(loop, "RunLogger", fake_logger)
    off = tiny_config(*map(str, data), steps=1, batch_size=4)  # logging.enabled = False in the config
    with pytest.raises(_Stop):
        loop.train(off, tmp_path / "t1", wandb=True)  # --wandb turns it on anyway
    assert seen == [True]


# --- 7. a loss that becomes NaN / inf -----------------------------------------------------------
NAN_RE = re.compile(r"^loss became (NaN|inf) at step (\d+): lower --config\.optim\.lr or check the data")


def test_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    data: tuple[Path, Path], tmp_path: Path
) -> None:
    c = tiny_config(str(data[0]), steps=50, batch_size=4)
    c.optim.lr = 1e10  # Adam steps of ~1e10: the outputs overflow after the first update
    c.log_every = 1000  # not a log step: caught where the checkpoint syncs anyway
    c.checkpoint.every = 1
    c.checkpoint.keep = 100
    with pytest.raises(InputError) as e:
        loop.train(c, tmp_path / "diverged")
    line = _one_line(e)
    m = NAN_RE.match(line)
    assert m, line
    bad = int(m.group(2))
    kept = _steps(tmp_path / "diverged")
    assert kept == list(range(1, bad)), (kept, line)  # every step before the bad one, not the bad one
    assert f"step {bad - 1}" in line
    r = restore_params(tmp_path / "diverged", prefer="latest")
    assert r.step == bad - 1 and all(np.isfinite(x).all() for x in jax.tree.leaves(r.params))

    # independently: the loss of step `bad` is computed with the parameters of step bad - 1
    # (the kept checkpoint); the model they make does not give finite outputs
    model = registry.build_model(r.model_config)
    s = synthetic_samples(4, seed=0)
    x = {k: s[k].astype(np.float32) for k in ("lrms", "pan", "lms")}
    out = np.asarray(model.apply({"params": r.params}, x["lrms"], x["pan"], x["lms"], train=False))
    assert not np.isfinite(np.abs(out - s["gt"]).mean())

    # at a log step (no checkpoint at all): the same step is named, nothing is saved
    c.steps, c.log_every, c.checkpoint.every = 50, 1, 0
    with pytest.raises(InputError) as e:
        loop.train(c, tmp_path / "logged")
    m2 = NAN_RE.match(_one_line(e))
    assert m2 and int(m2.group(2)) == bad and "no checkpoint was saved" in str(e.value)
    assert _steps(tmp_path / "logged") == []


def test_failed_start_leaves_no_empty_workdir(tmp_path, monkeypatch, capsys):
    """A run that fails before writing anything (missing training data) leaves no folder."""
    from pansharp_jax.cli import main

    monkeypatch.setenv("PANSHARP_DATA", str(tmp_path / "no_data_here"))
    workdir = tmp_path / "runs" / "fn"
    cfg = Path(__file__).resolve().parents[1] / "configs" / "fusionnet_wv3.py"
    rc = main(["train", "--config", str(cfg), "--workdir", str(workdir)])
    assert rc == 2 and "not found" in capsys.readouterr().err
    assert not workdir.exists()
