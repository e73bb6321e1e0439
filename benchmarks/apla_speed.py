"""APLA speed: one fine-tuning step and one DDIM video draw, tiny config (and SD-sized on a GPU).

Usage::

    python benchmarks/apla_speed.py [--steps 10] [--ddim 20] [--sd] [--sd-size 512] [--sd-frames 8]

For each model, a random clip (T frames, on [0, 1]) and prompt; the jitted fine-tuning step
(:func:`pansharp_jax.generative.apla_train.make_step`: UNet + VGT forward/backward, the 1x1
discriminator update, AdamW) is compiled by its first call, then ``--steps`` calls are timed
(mean s/step). Sampling: one :func:`~pansharp_jax.generative.apla.sample_latents` call (DDIM,
``--ddim`` network calls, one video) compiled first, then timed once, plus the VAE decode. The
tiny config (8 x 64 x 64) always runs; the Stable-Diffusion-1.5-sized config (random weights of
the SD shapes, ``trainable='tav'``) runs when JAX sees a GPU, or with ``--sd``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np


def bench(name: str, c: object, frames: int, size: int, steps: int, ddim: int) -> None:
    import jax
    import jax.numpy as jnp

    from pansharp_jax.generative.apla import sample_latents
    from pansharp_jax.generative.apla_train import TrainConfig, build, make_step

    t0 = time.perf_counter()
    model, params, tok = build(c, frames, (size, size))
    t_init = time.perf_counter() - t0
    n_unet = sum(int(np.size(x)) for x in jax.tree.leaves(params["unet"]))
    clip = np.random.default_rng(0).random((frames, size, size, 3)).astype(np.float32)
    tcfg = TrainConfig.from_dict(c.train)
    step, tx_g, tx_d = make_step(model, dataclasses.replace(tcfg, steps=0, seed=0, log_every=0, vae_steps=0))
    z0 = jax.jit(model.encode)(params, jnp.asarray(clip)[None])
    ids = tok(["a benchmark prompt"])
    ctx = model.encode_text(params, jnp.asarray(ids))
    G = {k: params[k] for k in ("unet", "vgt") if k in params}
    D, og, od = params["disc"], tx_g.init(G), tx_d.init(params["disc"])
    t0 = time.perf_counter()
    out = step(G, D, og, od, z0, ctx, jax.random.key(0))
    jax.block_until_ready(out)
    t_compile = time.perf_counter() - t0
    G, D, og, od, _ = out
    t0 = time.perf_counter()
    for i in range(steps):
        G, D, og, od, m = step(G, D, og, od, z0, ctx, jax.random.key(i + 1))
    jax.block_until_ready(m)
    t_step = (time.perf_counter() - t0) / steps
    f = model.cfg.vae.factor
    kw = dict(frames=frames, latent_hw=(size // f, size // f), samples=1, steps=ddim)
    p = {**params, **G}
    t0 = time.perf_counter()
    jax.block_until_ready(sample_latents(model.cfg, p, ctx[0], jax.random.key(0), **kw))
    t_sc = time.perf_counter() - t0
    t0 = time.perf_counter()
    z = jax.block_until_ready(sample_latents(model.cfg, p, ctx[0], jax.random.key(1), **kw))
    t_sample = time.perf_counter() - t0
    dec = jax.jit(model.decode)
    jax.block_until_ready(dec(p, z))
    t0 = time.perf_counter()
    jax.block_until_ready(dec(p, z))
    t_dec = time.perf_counter() - t0
    print(f"{name}: {frames} frames {size}x{size} (latents {size // f}x{size // f}), UNet {n_unet / 1e6:.2f} M params, "
          f"backend {jax.default_backend()}")  # fmt: skip
    print(f"  init {t_init:.1f} s | train step: compile {t_compile:.1f} s, {t_step * 1000:.1f} ms/step (batch {tcfg.batch}) "
          f"| DDIM {ddim} steps: compile {t_sc:.1f} s, {t_sample:.2f} s/video ({t_sample / ddim * 1000:.1f} ms/step) "
          f"| VAE decode {t_dec * 1000:.1f} ms", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--ddim", type=int, default=20)
    ap.add_argument("--sd", action="store_true", help="also run the SD-sized config without a GPU")
    ap.add_argument("--sd-size", type=int, default=512)
    ap.add_argument("--sd-frames", type=int, default=8)
    args = ap.parse_args()
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax

    from pansharp_jax.train.cli_args import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    bench("tiny", load_config(str(root / "apla_tiny.py")), 8, 64, args.steps, args.ddim)
    if args.sd or jax.default_backend() == "gpu":
        bench("SD-1.5-sized", load_config(str(root / "apla_sd15.py")), args.sd_frames, args.sd_size, args.steps, args.ddim)
    else:
        print("SD-1.5-sized: skipped (no GPU; pass --sd to force)")


if __name__ == "__main__":
    main()
