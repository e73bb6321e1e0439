"""Generative methods on the WV2 held-out quarter: quality against NFE, and the uncertainty map.

For project-trained checkpoints of the generative methods (``--ckpt ssdiff=WORKDIR``,
``--ckpt sbm=WORKDIR``; trained on the real-scene task, ``configs/{ssdiff,sbm}_wv2_real.py``),
on the Wald-reduced held-out right quarter of ``fr/wv2_pnn.mat`` (the inputs of
``experiments/real_scene_wv2.py``: LRMS 80 x 20 x 8, PAN 320 x 80, GT = the original MS):

* **quality against the number of function evaluations** (NFE = sampler steps; one network
  call each for DDIM and for the bridge sampler): Q2n, SAM, ERGAS (toolbox conventions, block
  32, border cut 0) of the mean of ``--nfe-samples`` draws for every NFE of ``--nfe``, beside
  the best classical method on the same inputs; ``quality_vs_nfe.png``;
* **the uncertainty map**: ``--samples`` draws at ``--uq-steps`` steps; per pixel and band the
  standard deviation of the draws against the absolute error of their mean (Pearson and
  Spearman correlation over all pixels and bands, and over pixels of the band means), the mean
  error per decile of std (is the std calibrated in ranking?), and a picture: true colour of
  the mean, |error| and std (band means, same colour scale) ``uncertainty_<name>.png``.

Products are not clipped for the scores (as real_scene_wv2.py). Writes ``generative_nfe.md``,
``generative_nfe.json`` and the PNGs into ``--out``. Usage::

    python experiments/generative_nfe.py --out reports/gen --ckpt ssdiff=runs/ssdiff_wv2_real \\
        --ckpt sbm=runs/sbm_wv2_real --nfe 1,2,5,10,20,50,100 --samples 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_scene_wv2 import heldout_inputs, score  # noqa: E402

from pansharp_jax import classical  # noqa: E402
from pansharp_jax.analysis import plots  # noqa: E402
from pansharp_jax.methods import resolve  # noqa: E402
from pansharp_jax.train.cli_args import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEAD = ("Q2n", "SAM", "ERGAS")


def draws(method: Any, ho: dict[str, Any], samples: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, std, seconds) of ``samples`` draws of ``steps`` steps on the held-out inputs;
    mean and std (H, W, C) on the [0, 1] scale; seconds of the second (compiled) call."""
    args = (ho["lrms"][None].astype(np.float32), ho["pan"][None].astype(np.float32), ho["sensor"], ho["ratio"])
    kw = {"samples": samples, "steps": steps, "rng": jax.random.key(seed), "lms": ho["lms"][None].astype(np.float32)}
    method.sample_batch(*args, **kw)  # compile
    t0 = time.perf_counter()
    mean, std = method.sample_batch(*args, **kw)
    return np.asarray(mean[0], np.float64), np.asarray(std[0], np.float64), time.perf_counter() - t0


def best_classical(ho: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Best value per headline metric over ``classical.METHODS`` on the held-out inputs, and which method."""
    best: dict[str, float] = {}
    who: dict[str, str] = {}
    for name in classical.METHODS:  # through the method API, raw outputs, as real_scene_wv2.py
        method = resolve(name)
        fused = method.fuse_arrays(ho["lrms"], ho["pan"], sensor=ho["sensor"], ratio=ho["ratio"], clip=False)
        s = score(fused, ho["gt"], ho["ratio"], ho["max_dn"], 0)
        for k in HEAD:
            better = s[k] > best.get(k, -np.inf) if k == "Q2n" else s[k] < best.get(k, np.inf)
            if better:
                best[k], who[k] = s[k], method.label
    return best, who


def uncertainty(mean: np.ndarray, std: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Correlations of the per-pixel std with |mean - gt| (all values and band means) and the
    mean error per std decile."""
    err = np.abs(mean - gt)
    out: dict[str, Any] = {}
    for tag, e, s in (("all", err.ravel(), std.ravel()), ("band_mean", err.mean(-1).ravel(), std.mean(-1).ravel())):
        out[tag] = {"pearson": float(stats.pearsonr(s, e)[0]), "spearman": float(stats.spearmanr(s, e)[0])}
    s, e = std.mean(-1).ravel(), err.mean(-1).ravel()
    edges = np.quantile(s, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, 9)
    out["error_by_std_decile"] = [float(e[idx == i].mean()) for i in range(10)]
    out["std_mean"], out["error_mean"] = float(std.mean()), float(err.mean())
    return out


def picture(mean: np.ndarray, std: np.ndarray, gt: np.ndarray, rgb: tuple[int, int, int], path: Path, title: str) -> Path:
    """True colour of the mean, |error| and std (band means, one colour scale), side by side."""
    err, sd = np.abs(mean - gt).mean(-1), std.mean(-1)
    vmax = float(np.quantile(np.concatenate([err.ravel(), sd.ravel()]), 0.99))
    tc = mean[..., list(rgb)]
    lo, hi = np.quantile(tc, 0.01), np.quantile(tc, 0.99)
    fig = plots.new_figure(900, 700)
    axes = fig.subplots(1, 3)
    axes[0].imshow(np.clip((tc - lo) / (hi - lo), 0, 1))
    axes[0].set_title("mean of the draws")
    for ax, img, name in ((axes[1], err, "|mean - GT|"), (axes[2], sd, "std of the draws")):
        im = ax.imshow(img, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(name)
    fig.colorbar(im, ax=axes[1:], fraction=0.05, label="band mean, [0, 1] scale")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return plots.save_figure(fig, path)


def plot_nfe(curves: dict[str, list[dict[str, float]]], best: dict[str, float], who: dict[str, str], path: Path) -> Path:
    """Q2n, SAM, ERGAS of each method against NFE (log axis); dashed: the best classical value."""
    fig = plots.new_figure(1300, 420)
    axes = fig.subplots(1, 3)
    for ax, k in zip(axes, HEAD, strict=True):
        for name, rows in curves.items():
            ax.plot([r["nfe"] for r in rows], [r[k] for r in rows], marker="o", label=name)
        ax.axhline(best[k], color="grey", ls="--", label=f"best classical ({who[k]})")
        ax.set_xscale("log")
        ax.set_xlabel("NFE (sampler steps)")
        ax.set_ylabel(k + (" (higher is better)" if k == "Q2n" else " (lower is better)"))
    axes[0].legend(fontsize=8)
    fig.suptitle("Quality of the mean draw against the number of network calls, WV2 held-out quarter", fontsize=10)
    return plots.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--ckpt", action="append", required=True, metavar="NAME=WORKDIR", help="a generative checkpoint (repeatable)")
    ap.add_argument("--nfe", default="1,2,5,10,20,50,100", help="comma-separated NFE values")
    ap.add_argument("--nfe-samples", type=int, default=1, help="draws averaged per NFE point (default 1)")
    ap.add_argument("--samples", type=int, default=16, help="draws for the uncertainty map")
    ap.add_argument("--uq-steps", default="", help="NAME=STEPS,... for the uncertainty map (default: each config's eval steps)")
    ap.add_argument("--nfe-for", default="", help="NAME=N1/N2/...,... NFE values of one method instead of --nfe (e.g. ssdiff=1/2/5/10)")
    ap.add_argument("--uq-samples", default="", help="NAME=S,... draws for one method's uncertainty map instead of --samples (0: no map)")
    ap.add_argument("--data-config", default=str(REPO / "configs" / "fusionnet_wv2_real.py"), help="config whose data section defines the held-out quarter")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ho = heldout_inputs(load_config(args.data_config))
    rgb = tuple(int(i) for i in ho["sensor"].rgb)  # 0-based R, G, B
    best, who = best_classical(ho)
    nfes = [int(v) for v in args.nfe.split(",") if v.strip()]
    uq_steps = dict(kv.split("=") for kv in args.uq_steps.split(",") if kv.strip())
    nfe_for = {k: [int(v) for v in vs.split("/") if v.strip()] for k, vs in (kv.split("=") for kv in args.nfe_for.split(",") if kv.strip())}
    uq_samples = {k: int(v) for k, v in (kv.split("=") for kv in args.uq_samples.split(",") if kv.strip())}
    curves: dict[str, list[dict[str, float]]] = {}
    uq: dict[str, Any] = {}
    for item in args.ckpt:
        name, _, workdir = item.partition("=")
        method = resolve(name, ckpt=workdir)
        if not method.generative:
            raise SystemExit(f"{name} is not a generative method")
        label = f"{method.label} ({Path(workdir).name})"
        rows = []
        for nfe in nfe_for.get(name, nfes):
            mean, _, secs = draws(method, ho, args.nfe_samples, nfe, args.seed)
            s = score(mean, ho["gt"], ho["ratio"], ho["max_dn"], 0)
            rows.append({"nfe": nfe, **{k: s[k] for k in HEAD}, "seconds": secs})
            print(f"{label} NFE {nfe}: " + ", ".join(f"{k} {s[k]:.4f}" for k in HEAD) + f" ({secs:.1f} s)", file=sys.stderr, flush=True)
        curves[label] = rows
        samples = uq_samples.get(name, args.samples)
        if samples < 2:  # no map (e.g. a sampler whose vmapped draws do not fit in memory)
            continue
        steps = int(uq_steps.get(name, 0)) or int(method.tags.get("eval_steps", 0) or 0) or nfes[len(nfes) // 2]
        mean, std, secs = draws(method, ho, samples, steps, args.seed + 1)
        uq[label] = {"steps": steps, "samples": samples, "seconds": secs, **uncertainty(mean, std, ho["gt"]),
                     **{k: v for k, v in score(mean, ho["gt"], ho["ratio"], ho["max_dn"], 0).items() if k in HEAD}}  # fmt: skip
        picture(mean, std, ho["gt"], rgb, out / f"uncertainty_{name}.png", f"{label}: {samples} draws of {steps} steps")
    plot_nfe(curves, best, who, out / "quality_vs_nfe.png")
    lines = ["| method | NFE | Q2n | SAM | ERGAS | s |", "|---|---:|---:|---:|---:|---:|"]
    for label, rows in curves.items():
        lines += [f"| {label} | {r['nfe']} | {r['Q2n']:.4f} | {r['SAM']:.3f} | {r['ERGAS']:.3f} | {r['seconds']:.2f} |" for r in rows]
    lines += [f"| best classical | - | {best['Q2n']:.4f} ({who['Q2n']}) | {best['SAM']:.3f} ({who['SAM']}) | {best['ERGAS']:.3f} ({who['ERGAS']}) | - |", ""]
    lines += ["| method | draws x steps | Q2n of mean | std vs err Pearson | Spearman | band-mean Pearson | Spearman | err, lowest / highest std decile |",
              "|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for label, u in uq.items():
        d = u["error_by_std_decile"]
        lines.append(
            f"| {label} | {u['samples']} x {u['steps']} | {u['Q2n']:.4f} | {u['all']['pearson']:.3f} | {u['all']['spearman']:.3f} | "
            f"{u['band_mean']['pearson']:.3f} | {u['band_mean']['spearman']:.3f} | {d[0]:.4f} / {d[-1]:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "generative_nfe.md").write_text(text, encoding="utf-8")
    (out / "generative_nfe.json").write_text(json.dumps({"nfe": curves, "uncertainty": uq, "best_classical": best, "best_classical_method": who}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
