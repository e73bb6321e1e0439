"""Checkpoints: retention (latest K + best), and kill -9 mid-run then resume == uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pansharp_jax.train.checkpoint import Checkpointer
from pansharp_jax.train.loop import train
from pansharp_jax.train.testing import tiny_config, write_synthetic_panc

STEPS = 40

# Trains the tiny config in a fresh process; with SLOW > 0 every step sleeps (a window to kill it in).
SCRIPT = r"""
import sys, time
import jax, numpy as np
from pansharp_jax.train import loop
from pansharp_jax.train.testing import tiny_config

train_h5, val_h5, workdir, out, resume, slow = sys.argv[1:7]
if float(slow) > 0:
    real_rng = loop.step_rng
    def slow_rng(key, step):
        time.sleep(float(slow))
        return real_rng(key, step)
    loop.step_rng = slow_rng
c = tiny_config(train_h5, val_h5, steps=STEPS, batch_size=8)
c.checkpoint.every, c.eval_every, c.checkpoint.keep, c.checkpoint.async_save = 3, 10, 2, True
r = loop.train(c, workdir, resume=resume == "1")
np.savez(out, *[np.asarray(x) for x in jax.tree.leaves(r.state.arrays())])
print("start_step", r.start_step, "best", r.best[0], repr(r.best[1]))
""".replace("STEPS", str(STEPS))


def _config(train_h5, val_h5):
    c = tiny_config(str(train_h5), str(val_h5), steps=STEPS, batch_size=8)
    c.checkpoint.every, c.eval_every, c.checkpoint.keep, c.checkpoint.async_save = 3, 10, 2, True
    return c


def _steps(ckpt_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) if ckpt_dir.exists() else []


def test_killed_run_resumes_to_bit_identical_params(tmp_path):
    train_h5 = write_synthetic_panc(tmp_path / "train.h5", 28, seed=0)  # 3 batches per epoch: resume crosses epochs
    val_h5 = write_synthetic_panc(tmp_path / "val.h5", 4, seed=1)
    workdir, out = tmp_path / "killed", tmp_path / "resumed.npz"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-c", SCRIPT, str(train_h5), str(val_h5), str(workdir)]

    proc = subprocess.Popen(
        [*cmd, str(tmp_path / "unused.npz"), "0", "0.05"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and not any(s >= 9 for s in _steps(workdir / "checkpoints")):
            if time.monotonic() > deadline:
                pytest.fail("the training subprocess wrote no checkpoint >= 9 within 240 s")
            time.sleep(0.02)
        time.sleep(0.12)  # let it run on past the checkpoint, then kill it between two checkpoints
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    left = _steps(workdir / "checkpoints")
    assert left and max(left) < STEPS, left
    print(f"killed with checkpoints {left} on disk")

    done = subprocess.run([*cmd, str(out), "1", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    start = int(done.stdout.split("start_step")[-1].split()[0])
    assert 9 <= start < STEPS

    reference = train(_config(train_h5, val_h5), tmp_path / "uninterrupted")
    want = [np.asarray(x) for x in jax.tree.leaves(reference.state.arrays())]
    with np.load(out) as z:
        got = [z[f"arr_{i}"] for i in range(len(z.files))]
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # params, Adam moments, step and key: bit-identical
    best_step, best_value = done.stdout.split("best")[-1].split()[:2]
    assert (int(best_step), float(best_value)) == reference.best  # best checkpoint tracked across the kill
    print(f"resumed from step {start}: {len(want)} state arrays bit-identical to the uninterrupted run")


def test_retention_keeps_latest_k_and_the_best(tmp_path):
    ck = Checkpointer(tmp_path, keep=2, best_metric="ERGAS", mode="min", async_save=False)
    tree = {"w": jnp.arange(3.0), "step": jnp.zeros((), jnp.int32)}
    ergas = {2: 5.0, 4: 3.0, 6: 4.0}
    for step in range(1, 8):
        m = {"ERGAS": ergas[step], "SAM": 1.0} if step in ergas else None
        ck.save(
            step,
            {"w": tree["w"] + step, "step": jnp.asarray(step, jnp.int32)},
            {"epoch": 0, "position": step, "seed": 3},
            {"steps": 7},
            metrics=m,
        )
    ck.wait()
    assert ck.all_steps() == [4, 6, 7]  # latest two (6, 7) and the best ERGAS (4)
    assert ck.best_step() == 4 and ck.latest_step() == 7
    state, data, config = ck.restore(4, tree)
    np.testing.assert_array_equal(np.asarray(state["w"]), [4.0, 5.0, 6.0])
    assert int(state["step"]) == 4 and data == {"epoch": 0, "position": 4, "seed": 3} and config == {"steps": 7}
    ck.close()
    with pytest.raises(Exception, match="keep"):
        Checkpointer(tmp_path / "x", keep=0)
