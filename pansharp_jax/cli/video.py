"""``pansharp video-train`` and ``pansharp video-sample``: APLA one-video text-to-video diffusion.

::

    pansharp video-train --video clip.gif --prompt "a satellite flyover" --workdir runs/apla
    pansharp video-sample --ckpt runs/apla --prompt "a satellite flyover" --out flyover.gif

``video-train`` reads a video (GIF, folder of frames, .npy (T, H, W, 3) or TIFF stack), keeps
its first ``--frames`` frames centre-cropped and resized to ``--size``, builds the model of
``--config`` (default: ``configs/apla_tiny.py`` of the repository; ``--pretrained FOLDER`` loads
Stable Diffusion weights from a local diffusers folder), fits the tiny config's VAE to the
frames, fine-tunes (:mod:`pansharp_jax.generative.apla_train`) and saves one Orbax checkpoint
(``WORKDIR/checkpoints/<steps>/``: params, and the run's config, prompt, frames and size as
JSON) plus ``WORKDIR/input.gif``, ``WORKDIR/input_sheet.png`` and ``WORKDIR/apla_history.json``
(the per-step losses). ``--no-vgt`` / ``--no-adv``
train the ablations. ``video-sample`` restores it and writes ``--samples`` DDIM draws of the
prompt as one video (the draws side by side) and a contact sheet PNG (one row per draw;
``--sheet``, default ``<out stem>_sheet.png``). Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.cli._common import console
from pansharp_jax.errors import InputError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "apla_tiny.py"


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``video-train`` and ``video-sample`` on the sub-command parser ``sub``."""
    p = sub.add_parser("video-train", parents=parents, help="fine-tune APLA text-to-video diffusion on one video",
                       description="Fine-tune APLA (inflated Stable Diffusion + VGT + 1x1 discriminator) on one video and a prompt.")  # fmt: skip
    p.add_argument("--video", required=True, metavar="FILE", help="input video: .gif, a folder of frames, .npy (T, H, W, 3) or a TIFF stack")
    p.add_argument("--prompt", required=True, metavar="TEXT", help="the text describing the video")
    p.add_argument("--workdir", required=True, metavar="W", help="output folder (checkpoint, input preview)")
    p.add_argument("--config", default=None, metavar="FILE[:ARG]", help="run config (default: configs/apla_tiny.py)")
    p.add_argument("--pretrained", metavar="FOLDER", help="local diffusers Stable Diffusion folder (unet/, vae/, text_encoder/, tokenizer/)")
    p.add_argument("--steps", type=int, metavar="N", help="fine-tuning steps (default: the config's)")
    p.add_argument("--vae-steps", type=int, metavar="N", help="VAE fitting steps before fine-tuning (default: the config's; 0 with --pretrained)")
    p.add_argument("--frames", type=int, metavar="T", help="frames used (default: the config's)")
    p.add_argument("--size", type=int, metavar="PX", help="frame size after centre crop and resize (default: the config's)")
    p.add_argument("--seed", type=int, default=0, metavar="K", help="random seed (default: 0)")
    p.add_argument("--no-vgt", action="store_true", help="ablation: no Video Generation Transformer")
    p.add_argument("--no-adv", action="store_true", help="ablation: no adversarial loss")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in WORKDIR")
    p.set_defaults(func=cmd_train)
    q = sub.add_parser("video-sample", parents=parents, help="generate videos from an APLA checkpoint",
                       description="Sample videos of a prompt from a 'pansharp video-train' checkpoint (DDIM).")  # fmt: skip
    q.add_argument("--ckpt", required=True, metavar="W", help="a 'pansharp video-train' workdir")
    q.add_argument("--prompt", required=True, metavar="TEXT", help="the text to generate")
    q.add_argument("--out", "-o", required=True, metavar="F", help="output video: .gif (or .mp4 with imageio-ffmpeg)")
    q.add_argument("--sheet", metavar="PNG", help="contact sheet (default: <out stem>_sheet.png)")
    q.add_argument("--steps", type=int, metavar="N", help="DDIM steps (default: the config's)")
    q.add_argument("--samples", type=int, default=1, metavar="S", help="videos drawn (default: 1)")
    q.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance scale (default: the config's; 1 = none)")
    q.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default: 0, deterministic given the noise)")
    q.add_argument("--seed", type=int, default=0, metavar="K", help="random seed of the draws (default: 0)")
    q.add_argument("--fps", type=float, default=8.0, help="frames per second of the output (default: 8)")
    q.add_argument("--overwrite", action="store_true", help="replace existing output files")
    q.set_defaults(func=cmd_sample)


def _say(text: str) -> None:
    console().print(text, markup=False)


def load_run_config(path: str | None, args: argparse.Namespace) -> Any:
    """The run config of ``--config`` (default :data:`DEFAULT_CONFIG`) with the command-line overrides."""
    from pansharp_jax.train.cli_args import load_config

    if path is None and not DEFAULT_CONFIG.is_file():
        raise InputError("no --config given and configs/apla_tiny.py is not beside the package: pass --config")
    c = load_config(path or str(DEFAULT_CONFIG))
    if args.pretrained:
        c.pretrained = str(args.pretrained)
        c.train.vae_steps = 0
    for key, val in (("steps", args.steps), ("vae_steps", args.vae_steps)):
        if val is not None:
            if val < 0:
                raise InputError(f"--{key.replace('_', '-')} must be >= 0, got {val}")
            c.train[key] = int(val)
    c.train.seed = int(args.seed)
    if args.frames is not None:
        c.data.frames = int(args.frames)
    if args.size is not None:
        c.data.size = int(args.size)
    if args.no_vgt:
        c.model.vgt.variant = "none"
    if args.no_adv:
        c.model.adv_weight = 0.0
    return c


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune on one video and save the checkpoint; print progress and a summary line."""
    from pansharp_jax.cli._common import input_path
    from pansharp_jax.data.video import contact_sheet, fit_frames, read_video, write_video
    from pansharp_jax.generative.apla_train import TrainConfig, build, finetune, fit_vae
    from pansharp_jax.train.checkpoint import Checkpointer

    c = load_run_config(args.config, args)
    if c.data.frames < 2:
        raise InputError(f"--frames must be >= 2, got {c.data.frames}")
    video = fit_frames(read_video(input_path(args.video)), int(c.data.frames), int(c.data.size))
    work = Path(args.workdir)
    ckdir = work / "checkpoints"
    if ckdir.exists() and any(ckdir.iterdir()) and not args.overwrite:
        raise InputError(f"{ckdir} already holds a checkpoint: pass --overwrite or another --workdir")
    work.mkdir(parents=True, exist_ok=True)
    if ckdir.exists() and args.overwrite:
        import shutil

        shutil.rmtree(ckdir)
    model, params, tok = build(c, video.shape[0], video.shape[1:3], seed=int(args.seed))
    tcfg = TrainConfig.from_dict(c.train)
    t, h = video.shape[0], video.shape[1]
    _say(f"APLA: {t} frames of {h}x{h}, prompt {args.prompt!r}, VGT {model.cfg.vgt.variant}, adv weight {model.cfg.adv_weight}")
    t0 = time.perf_counter()
    if tcfg.vae_steps > 0:
        params, vl = fit_vae(model, params, video, tcfg, log=_say)
        _say(f"VAE fitted in {tcfg.vae_steps} steps: loss {vl[0]:.4f} -> {vl[-1]:.4f}")
    ids = tok([args.prompt])
    params, hist = finetune(model, params, video, ids, tcfg, log=_say)
    run = {"model": model.cfg.to_dict(), "train": _plain(c.train), "sample": _plain(c.sample),
           "pretrained": str(c.get("pretrained", "") or ""), "prompt": args.prompt, "frames": int(t), "size": [int(h), int(video.shape[2])],
           "seed": int(args.seed), "final_loss": float(hist["loss"][-1]) if hist["loss"] else None}  # fmt: skip
    ck = Checkpointer(ckdir, keep=1, async_save=False)
    ck.save(int(tcfg.steps), {"params": params}, {"epoch": 0, "position": 0, "seed": int(args.seed)}, run)
    ck.close()
    write_video(work / "input.gif", video)
    contact_sheet(work / "input_sheet.png", video)
    (work / "apla_history.json").write_text(json.dumps({k: v for k, v in hist.items()}, indent=1), encoding="utf-8")
    _say(f"APLA: {tcfg.steps} steps in {time.perf_counter() - t0:.1f} s; final loss {run['final_loss']} -> {ckdir}")
    return 0


def _plain(cd: Any) -> dict[str, Any]:
    from pansharp_jax.generative.apla import json_safe

    return json_safe(cd.to_dict() if hasattr(cd, "to_dict") else dict(cd))


def restore(workdir: str | Path) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """(model, params, tokenizer, run dict) of a ``video-train`` workdir."""
    import orbax.checkpoint as ocp

    from pansharp_jax.generative.apla import APLA, APLAConfig
    from pansharp_jax.generative.apla_text import make_tokenizer
    from pansharp_jax.train.checkpoint import Checkpointer

    ckdir = Path(workdir) / "checkpoints"
    if not ckdir.is_dir():
        raise InputError(f"{workdir} is not a 'pansharp video-train' workdir (no checkpoints/ folder)")
    ck = Checkpointer(ckdir, keep=1, async_save=False)
    step = ck.latest_step()
    if step is None:
        raise InputError(f"no checkpoint in {ckdir}")
    run = dict(ck.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])
    model = APLA(APLAConfig.from_dict(run["model"]))
    shapes = model.shapes(int(run["frames"]), tuple(run["size"]))
    state, _, _ = ck.restore(step, {"params": shapes})
    ck.close()
    pre = run.get("pretrained") or ""
    tok = make_tokenizer(model.cfg.text, Path(pre) / "tokenizer" if pre else None)
    return model, state["params"], tok, run


def cmd_sample(args: argparse.Namespace) -> int:
    """Draw videos of ``--prompt``; write the video and its contact sheet."""
    import jax
    import jax.numpy as jnp

    from pansharp_jax.data.video import check_video_out, contact_sheet, write_video
    from pansharp_jax.generative.apla import sample_latents

    out = check_video_out(args.out)
    sheet = Path(args.sheet) if args.sheet else out.with_name(f"{out.stem}_sheet.png")
    for f in (out, sheet):
        if f.exists() and not args.overwrite:
            raise InputError(f"{f} exists: pass --overwrite to replace it")
    if args.samples < 1 or (args.steps is not None and args.steps < 1):
        raise InputError("--samples and --steps must be >= 1")
    model, params, tok, run = restore(args.ckpt)
    steps = int(args.steps or run["sample"].get("steps", 20))
    guidance = float(args.guidance if args.guidance is not None else run["sample"].get("guidance", 1.0))
    ctx = model.encode_text(params, jnp.asarray(tok([args.prompt])))[0]
    if guidance != 1.0:
        ctx = jnp.stack([model.encode_text(params, jnp.asarray(tok([""])))[0], ctx])
    f = model.cfg.vae.factor
    t, (h, w) = int(run["frames"]), run["size"]
    _say(f"APLA: {args.samples} video(s) of {t} frames {h}x{w}, {steps} DDIM steps, guidance {guidance}, seed {args.seed} ...")
    t0 = time.perf_counter()
    z = sample_latents(model.cfg, params, ctx, jax.random.key(int(args.seed)), frames=t, latent_hw=(h // f, w // f),
                       samples=int(args.samples), steps=steps, guidance=guidance, eta=float(args.eta))  # fmt: skip
    videos = np.asarray(model.decode(params, z))
    secs = time.perf_counter() - t0
    if not np.isfinite(videos).all():
        raise InputError("sampling produced NaN/Inf: check the checkpoint")
    write_video(out, np.concatenate(list(videos), axis=2), fps=args.fps)
    contact_sheet(sheet, videos)
    _say(f"APLA: {args.samples} x {t} frames in {secs:.2f} s -> {out} (+ {sheet.name})")
    return 0
