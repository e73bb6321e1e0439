"""APLA fine-tuning on a tiny moving-square clip: the loss falls, runs are deterministic, the
shared DDIM sampler draws videos, and ``pansharp video-train`` / ``video-sample`` work end to end.
Everything uses ``configs/apla_tiny.py:micro`` so the jitted steps compile once per module."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from pansharp_jax.cli.main import main
from pansharp_jax.generative.apla import sample_latents
from pansharp_jax.generative.apla_train import TrainConfig, build, finetune, fit_vae, trainable_labels
from pansharp_jax.train.cli_args import load_config

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "apla_tiny.py") + ":micro"


def square_clip(frames: int = 4, size: int = 16) -> np.ndarray:
    """A bright 6x6 square moving 2 px right per frame on a dark gradient, (T, H, W, 3) on [0, 1]."""
    v = np.zeros((frames, size, size, 3), np.float32)
    v += np.linspace(0.1, 0.3, size, dtype=np.float32)[None, :, None, None]
    for t in range(frames):
        v[t, 5:11, 2 + 2 * t : 8 + 2 * t] = (0.9, 0.8, 0.2)
    return v


@pytest.fixture(scope="module")
def setup() -> tuple:
    c = load_config(CONFIG)
    model, params, tok = build(c, 4, (16, 16), seed=0)
    tcfg = TrainConfig.from_dict(c.train)
    return c, model, params, tok, tcfg


def test_loss_falls_and_runs_are_deterministic(setup: tuple) -> None:
    c, model, params, tok, tcfg = setup
    clip = square_clip()
    tcfg = dataclasses.replace(tcfg, steps=60)
    p1, vl = fit_vae(model, params, clip, dataclasses.replace(tcfg, vae_steps=2))
    assert vl[-1] < vl[0]
    ids = tok(["a yellow square moves right"])
    a, h = finetune(model, p1, clip, ids, tcfg)
    first, last = np.mean(h["hyper"][:15]), np.mean(h["hyper"][-15:])
    assert last < 0.8 * first, (first, last)
    assert h["delta"][0] == 0.0 and h["delta"][-1] > 0  # the VGT starts silent and then perturbs
    assert np.isfinite(h["d_loss"]).all() and h["d_loss"][-1] > 0
    b, _ = finetune(model, p1, clip, ids, tcfg)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the frozen parts did not move; the trained ones did
    np.testing.assert_array_equal(np.asarray(a["vae"]["quant_conv"]["kernel"]), np.asarray(p1["vae"]["quant_conv"]["kernel"]))
    assert np.abs(np.asarray(a["unet"]["conv_in"]["kernel"]) - np.asarray(p1["unet"]["conv_in"]["kernel"])).max() > 0
    ctx = model.encode_text(a, ids)[0]
    z = sample_latents(model.cfg, a, ctx, jax.random.key(0), frames=4, latent_hw=(8, 8), samples=2, steps=2)
    z1 = sample_latents(model.cfg, a, ctx, jax.random.key(0), frames=4, latent_hw=(8, 8), samples=2, steps=2)
    assert z.shape == (2, 4, 8, 8, 4) and np.isfinite(np.asarray(z)).all()
    np.testing.assert_array_equal(np.asarray(z), np.asarray(z1))
    assert np.abs(np.asarray(z[0] - z[1])).max() > 1e-3  # two draws differ


def test_tav_mode_trains_only_temporal_and_queries(setup: tuple) -> None:
    _, _, params, _, _ = setup
    labels = trainable_labels({"unet": params["unet"], "vgt": params["vgt"]}, "tav")
    flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(labels)}
    train = [k for k, v in flat.items() if v == "train"]
    assert train and all(("attn_temp" in k or "norm_temp" in k or "to_q" in k or k.startswith("['vgt']")) for k in train)
    assert any("attn1']['to_q" in k for k in train) and not any("attn2']['to_k" in k for k in train)
    assert flat["['unet']['conv_in']['kernel']"] == "freeze"


def test_cli_video_train_and_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "clip.npy", square_clip())
    work = tmp_path / "run"
    rc = main(["video-train", "--video", str(tmp_path / "clip.npy"), "--prompt", "a square", "--workdir", str(work), "--config", CONFIG])
    assert rc == 0, capsys.readouterr().err
    assert (work / "input.gif").is_file() and (work / "input_sheet.png").is_file()
    rc = main(["video-train", "--video", str(tmp_path / "clip.npy"), "--prompt", "a square", "--workdir", str(work), "--config", CONFIG])
    assert rc == 2 and "overwrite" in capsys.readouterr().err
    out = tmp_path / "gen.gif"
    rc = main(["video-sample", "--ckpt", str(work), "--prompt", "a square", "--out", str(out), "--samples", "2"])
    assert rc == 0, capsys.readouterr().err
    from pansharp_jax.data.video import read_video

    assert read_video(out).shape == (4, 16, 32, 3)  # two draws side by side
    assert (tmp_path / "gen_sheet.png").is_file()
    rc = main(["video-sample", "--ckpt", str(work), "--prompt", "a square", "--out", str(tmp_path / "gen.mp4")])
    assert rc == 2 and ".gif" in capsys.readouterr().err
    rc = main(["video-sample", "--ckpt", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "x.gif")])
    assert rc == 2
