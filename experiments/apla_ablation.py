"""APLA ablation on one real 8-frame clip (tiny config, CPU): APLA vs no VGT vs no adversarial loss vs neither.

The clip: a simulated camera pan (8 crops of 64 x 64, 4 px per frame along (0.5, 1)) over the
true-colour GT of ``rr/wv3_cdif.mat`` (under ``$PANSHARP_DATA``); ``--astronaut`` uses
scikit-image's bundled astronaut photograph instead. The tiny VAE is fitted once to the clip's
frames and shared by all variants; each variant then fine-tunes from the same random UNet
(same seed) for ``--steps`` steps and draws ``--samples`` videos (DDIM, ``--ddim`` steps,
eta 0, the training prompt, no guidance; the same noise for every variant). Metrics:

* ``FCI_pix`` / ``FCI_conv``: the frame-consistency stand-in of
  :func:`pansharp_jax.generative.apla.frame_consistency` (CLIP is not available offline);
* ``PSNR``: text-free reconstruction PSNR (dB) of the drawn videos against the input clip,
  mean over draws (the one-video model should regenerate its clip);
* ``loss``: mean hyper-loss (MSE + L1 on eps) of the last 50 training steps.

Rows ``input`` and ``VAE rec.`` give the clip's own FCI and the VAE's reconstruction ceiling.
Writes ``--out`` (default ``runs/apla_ablation``): ``table.md``, ``results.json``, and with
``--figure`` a contact sheet (rows: input, VAE reconstruction, each variant's first draw).

    python experiments/apla_ablation.py                      # ~10-15 min on 2 CPU cores
    python experiments/apla_ablation.py --steps 50 --samples 1   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

VARIANTS = (("APLA (VGT-Hyper + adv.)", {}), ("no VGT", {"vgt": "none"}), ("no adv. loss", {"adv_weight": 0.0}),
            ("neither (Tune-A-Video-like)", {"vgt": "none", "adv_weight": 0.0}))  # fmt: skip
PROMPT = "a satellite flyover of a city"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--vae-steps", type=int, default=300)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--ddim", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--astronaut", action="store_true", help="use skimage.data.astronaut() instead of the satellite scene")
    ap.add_argument("--out", default="runs/apla_ablation")
    ap.add_argument("--figure", default="", help="also write the contact sheet PNG here")
    args = ap.parse_args()

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax

    from pansharp_jax.data.video import camera_clip, contact_sheet, satellite_clip
    from pansharp_jax.generative.apla import APLA, frame_consistency, sample_latents, video_psnr
    from pansharp_jax.generative.apla_train import TrainConfig, build, finetune, fit_vae
    from pansharp_jax.train.cli_args import load_config

    if args.astronaut:
        from skimage.data import astronaut

        clip = camera_clip(astronaut()[::4, ::4] / 255.0, 8, 64, 4, start=(20, 20))
        source = "skimage astronaut (downsampled x4), camera pan"
    else:
        clip = satellite_clip("rr/wv3_cdif.mat", frames=8, size=64, step=4, start=(96, 96))
        source = "WV3 rr/wv3_cdif.mat true-colour GT, camera pan"
    c = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "apla_tiny.py"))
    c.train.update(steps=args.steps, vae_steps=args.vae_steps, seed=args.seed, log_every=max(args.steps // 3, 1))
    model, params0, tok = build(c, clip.shape[0], clip.shape[1:3], seed=args.seed)
    tcfg = TrainConfig.from_dict(c.train)
    t0 = time.perf_counter()
    params0, vl = fit_vae(model, params0, clip, tcfg)
    print(f"VAE fitted: loss {vl[0]:.4f} -> {vl[-1]:.4f} in {time.perf_counter() - t0:.0f} s", flush=True)
    rec = np.asarray(model.decode(params0, model.encode(params0, clip[None])))[0]
    ids = tok([PROMPT])
    f = model.cfg.vae.factor
    rows = [("input", frame_consistency(clip), None, None, None), ("VAE rec.", frame_consistency(rec), video_psnr(rec, clip), None, None)]
    firsts = [clip, rec]
    for name, change in VARIANTS:
        cfg = model.cfg
        if "vgt" in change:
            cfg = dataclasses.replace(cfg, vgt=dataclasses.replace(cfg.vgt, variant=change["vgt"]))
        if "adv_weight" in change:
            cfg = dataclasses.replace(cfg, adv_weight=change["adv_weight"])
        m = APLA(cfg)
        p = {k: v for k, v in params0.items() if k != "vgt" or m.vgt is not None}
        t1 = time.perf_counter()
        p, hist = finetune(m, p, clip, ids, tcfg, log=lambda s, n=name: print(f"  [{n}] {s}", flush=True))
        ctx = m.encode_text(p, ids)[0]
        z = sample_latents(cfg, p, ctx, jax.random.key(args.seed + 1), frames=clip.shape[0],
                           latent_hw=(clip.shape[1] // f, clip.shape[2] // f), samples=args.samples, steps=args.ddim)  # fmt: skip
        vids = np.asarray(m.decode(p, z))
        fcis = [frame_consistency(v) for v in vids]
        fci = {k: float(np.mean([x[k] for x in fcis])) for k in fcis[0]}
        psnr = float(np.mean([video_psnr(v, clip) for v in vids]))
        loss = float(np.mean(hist["hyper"][-50:]))
        rows.append((name, fci, psnr, loss, time.perf_counter() - t1))
        firsts.append(vids[0])
        print(f"{name}: FCI_pix {fci['fci_pix']:.4f} FCI_conv {fci['fci_conv']:.4f} PSNR {psnr:.2f} dB loss {loss:.4f} "
              f"({time.perf_counter() - t1:.0f} s)", flush=True)  # fmt: skip

    lines = [f"clip: {source}; 8 frames 64x64; tiny config, {args.steps} fine-tuning steps, VAE fitted {args.vae_steps} steps; "
             f"{args.samples} DDIM draws x {args.ddim} steps, seed {args.seed}", "",
             "| variant | FCI_pix | FCI_conv | PSNR (dB) | final hyper-loss | time (s) |", "|---|---|---|---|---|---|"]  # fmt: skip
    fmt = lambda v, s: "-" if v is None else s.format(v)  # noqa: E731
    for name, fci, psnr, loss, secs in rows:
        lines.append(f"| {name} | {fci['fci_pix']:.4f} | {fci['fci_conv']:.4f} | {fmt(psnr, '{:.2f}')} | {fmt(loss, '{:.4f}')} | {fmt(secs, '{:.0f}')} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps([{"variant": r[0], **r[1], "psnr": r[2], "loss": r[3], "seconds": r[4]} for r in rows], indent=1))
    if args.figure:
        contact_sheet(args.figure, np.stack(firsts), gap=2)
        from PIL import Image

        with Image.open(args.figure) as im:  # a 256-colour palette keeps the figure small
            im.convert("RGB").quantize(256).save(args.figure, optimize=True)
        print(f"figure -> {args.figure}")


if __name__ == "__main__":
    main()
