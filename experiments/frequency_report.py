"""Frequency report: FSDS, the toolbox scores and HyRA for every method with released weights.

On a reduced-resolution scene (default ``rr/wv3_cdif.mat`` under ``$PANSHARP_DATA``, WV3,
256 x 256 PAN), for every classical method and every learned model whose released weights
for the scene's sensor are in ``$PANSHARP_WEIGHTS`` (and importable by ``resolve``):

* the product (clipped to [0, 1], as ``pansharp compare`` scores it): Q2n, SAM, ERGAS
  (``metrics.evaluate_reduced``, toolbox conventions: 21-pixel border cut, 32-pixel
  blocks) and FSDS (``metrics.fsds_scores``: mean over bands of the per-band FSDS, dB,
  whole image);
* HyRA (:func:`pansharp_jax.analysis.hyra`, exact derivatives) with the impulses on the
  scene itself (``background="scene"``, the only one every method has): the non-linear
  share of the energy above the MS Nyquist frequency, the linear part's MS gain at the MS
  Nyquist and its PAN gain above it; for learned models also on a flat background;
* rank correlations (Spearman, Kendall) of FSDS with Q2n and with ERGAS over the methods,
  and the pairs of methods FSDS orders differently;
* project-trained checkpoints (``--ckpt NAME=WORKDIR``, repeatable; e.g. from
  ``experiments/self_trained_wv3.py``): the same analysis, labelled "(ours, <training
  sensor>)"; a checkpoint of another 8-band sensor (the ``*_wv2_real`` configs) is used on
  WV3 as it is (cross-sensor, noted); ``--previous`` merges an earlier report's rows;
* the sinc phenomenon: a small x4 SR network (:mod:`pansharp_jax.analysis.sr`) trained
  on the PAN of ``rr/wv3_cdif.mat`` and ``fr/wv2_pnn.mat``, its impulse response on a
  zero image (the paper's) and on a grey one (the PAN mean), against ``sinc(x/4)``.

Writes to ``--out``: ``frequency_report.md``, ``frequency_report.json``,
``profiles_learned.png``, ``profiles_classical.png``, ``fsds_vs_scores.png``,
``sr_sinc_grey.png``, ``sr_sinc_zero.png``. Usage::

    python experiments/frequency_report.py --out reports/frequency
    python experiments/frequency_report.py --out reports/quick --methods exp,gsa,fusionnet --sr-steps 0
    python experiments/frequency_report.py --out reports/ours --methods none --sr-steps 0 \
        --ckpt fusionnet=runs/fusionnet_wv2_real --ckpt unfolding=runs/unfolding
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pansharp_jax import classical, metrics
from pansharp_jax.analysis import hyra, plots, sr, sr_impulse_response
from pansharp_jax.analysis.report import json_ready, write_json
from pansharp_jax.data.io import load_scene
from pansharp_jax.errors import InputError
from pansharp_jax.methods import resolve

# Released weights per learned model: path under $PANSHARP_WEIGHTS, {S} = the sensor folder.
RELEASED = {
    "pnn": "pnn/{S}/pnn.pth",
    "pannet": "pannet/{S}/pannet.pth",
    "dicnn": "dicnn/{S}/dicnn1.pth",
    "msdcnn": "msdcnn/{S}/msdcnn.pth",
    "drpnn": "drpnn/{S}/drpnn.pth",
    "fusionnet": "fusionnet/{S}/fusionnet.pth",
    "cannet": "cannet/cannet_{s}.pth",
    "fusionmamba": "fusionmamba/420.pth",  # WV3 only (README)
}
ONLY_WV3 = {"fusionmamba"}
LIN = {"derivative": "d", "difference": "fd"}
SR_IMAGES = ("rr/wv3_cdif.mat", "fr/wv2_pnn.mat")


def released_weights(name: str, sensor: str) -> Path | None:
    """The released weights of ``name`` for ``sensor`` under $PANSHARP_WEIGHTS, or None."""
    root = os.environ.get("PANSHARP_WEIGHTS")
    if not root or (name in ONLY_WV3 and sensor != "WV3"):
        return None
    path = Path(root) / RELEASED[name].format(S=sensor, s=sensor.lower())
    return path if path.is_file() else None


def timed_fusion(method: Any, scene: Any) -> tuple[np.ndarray, float]:
    """(raw unclipped product (H, W, C) on [0, 1], seconds of one fusion after the compiling one)."""
    method.fuse(scene, clip=False)  # compiles
    t0 = time.perf_counter()
    raw = method.fuse(scene, clip=False)
    return raw, time.perf_counter() - t0


def analyse(
    method: Any, scene: Any, learned: bool, size: int, batch: int = 8, linearization: str = "auto",
    fused: tuple[np.ndarray, float] | None = None,
) -> dict[str, Any]:
    """Scores and HyRA summaries of one method (see module docstring); ``batch``: impulse
    responses measured per call (memory grows with it); ``linearization``: as :func:`hyra`;
    ``fused``: :func:`timed_fusion` of this method and scene when already at hand."""
    row: dict[str, Any] = {"method": method.name, "label": method.label, "kind": "learned" if learned else "classical"}
    raw, row["fuse_seconds"] = fused if fused is not None else timed_fusion(method, scene)
    product = np.clip(raw, 0.0, 1.0)
    scores = metrics.evaluate_reduced(product, scene.gt, ratio=scene.ratio, max_dn=scene.max_dn)
    row.update({k: scores[k] for k in ("Q2n", "SAM", "ERGAS")})
    row["FSDS"] = metrics.fsds_scores(product, scene.gt)["FSDS"]
    row["FSDS_all_bands"] = metrics.fsds(product, scene.gt)
    t0 = time.perf_counter()
    res = hyra(method, scene, size=size, background="scene", output=raw, batch=batch, linearization=linearization)
    row["hyra_scene"] = res.summary
    row["result"] = res
    if learned:
        try:
            row["hyra_flat"] = hyra(method, scene, size=size, background="flat", output=raw, batch=batch, linearization=linearization).summary
        except InputError as e:
            row["hyra_flat"] = {"error": str(e)}
    row["hyra_seconds"] = time.perf_counter() - t0
    return row


def rank_agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spearman / Kendall of FSDS (higher better) with Q2n (higher better) and with -ERGAS,
    and the pairs of methods that FSDS orders unlike Q2n / ERGAS."""
    labels = [r["label"] for r in rows]
    fs = np.array([r["FSDS"] for r in rows])
    out: dict[str, Any] = {"n": len(rows)}
    for other, sign in (("Q2n", 1.0), ("ERGAS", -1.0)):
        v = sign * np.array([r[other] for r in rows])
        rho, p_rho = stats.spearmanr(fs, v)
        tau, p_tau = stats.kendalltau(fs, v)
        discordant = [
            f"{labels[i]} vs {labels[j]}"
            for i, j in itertools.combinations(range(len(rows)), 2)
            if (fs[i] - fs[j]) * (v[i] - v[j]) < 0
        ]
        out[other] = {"spearman": float(rho), "spearman_p": float(p_rho), "kendall": float(tau), "kendall_p": float(p_tau), "discordant_pairs": discordant}
    out["order_FSDS"] = [labels[i] for i in np.argsort(-fs)]
    out["order_Q2n"] = [labels[i] for i in np.argsort([-r["Q2n"] for r in rows])]
    out["order_ERGAS"] = [labels[i] for i in np.argsort([r["ERGAS"] for r in rows])]
    return out


def sinc_experiment(out: Path, steps: int, seed: int = 0) -> dict[str, Any]:
    """Train the SR net on real PAN bands; measure and plot its impulse responses."""
    images = []
    for name in SR_IMAGES:
        try:
            images.append(load_scene(name).pan[..., 0])
        except InputError as e:
            print(f"  SR: skipping {name}: {e}", file=sys.stderr)
    if not images:
        return {"skipped": "no PAN image found under $PANSHARP_DATA"}
    t0 = time.perf_counter()
    trained = sr.train_sr(images, ratio=4, steps=steps, seed=seed)
    seconds = time.perf_counter() - t0
    apply = trained.apply_fn()
    grey = float(np.mean([im.mean() for im in images]))
    result: dict[str, Any] = {
        "images": list(SR_IMAGES), "steps": steps, "train_seconds": seconds,
        "loss_first_20": float(np.mean(trained.losses[:20])), "loss_last_50": float(np.mean(trained.losses[-50:])),
        "sinc_min_lobe": float(np.sinc(np.linspace(4, 8, 4001) / 4).min()),
        "keys_min_lobe": float(sr.keys_cubic(np.linspace(1, 2, 4001)).min()),
    }  # fmt: skip
    for tag, background, amplitude in (("zero", 0.0, 1.0), ("grey", grey, 0.1)):
        resp, (_, cx) = sr_impulse_response(apply, ratio=4, lr_size=33, amplitude=amplitude, background=background)
        profile = resp.sum(axis=0)
        profile = profile * 4 / profile.sum()
        x = np.arange(resp.shape[1]) - cx
        result[tag] = {
            "background": background, "amplitude": amplitude, "dc_gain": float(resp.sum()),
            "profile_min": float(profile.min()), "profile_min_at": float(x[int(np.argmin(profile))]),
            "profile_rms_vs_sinc": float(np.sqrt(np.mean((profile - np.sinc(x / 4)) ** 2))),
            "profile_rms_vs_keys": float(np.sqrt(np.mean((profile - sr.keys_cubic(x / 4)) ** 2))),
        }  # fmt: skip
        plots.plot_sr_impulse(
            resp, cx, 4, out / f"sr_sinc_{tag}.png", reference={"bicubic (Keys a=-0.5)": sr.keys_cubic(x / 4)},
            title=f"x4 SR net ({steps} steps), impulse {amplitude:g} on a {tag} image ({background:.3f})",
        )  # fmt: skip
    return result


def fmt(v: Any, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(scene: Any, rows: list[dict[str, Any]], ranks: dict[str, Any], notes: list[str], sinc: dict[str, Any]) -> str:
    lines = [
        f"# Frequency report: {scene.name} ({scene.sensor.name}, {scene.pan.shape[0]}x{scene.pan.shape[1]} PAN, ratio {scene.ratio})",
        "",
        "Products clipped to [0, 1]. Q2n, SAM (deg), ERGAS: toolbox conventions (border cut 21). FSDS: mean over",
        "bands of the per-band FSDS in dB (whole image; higher is better). NL HF share: share of the energy above",
        "the MS Nyquist (1/8 cycle/pixel) carried by the non-linear part, E(N) / (E(L) + E(N)), HyRA with exact",
        "derivatives, impulses on the scene (`scene`) or on a flat image (`flat`). MS gain @ Nyq: the linear MS",
        "path's |H| / 16 on the ring at 1/8; PAN HF gain: the PAN path's mean |H| above 1/8. HF out/GT: HF energy",
        "of the product over that of the GT. lin.: `d` exact derivatives, `fd` finite differences with impulses",
        "of 0.1 (models whose layers forward-mode autodiff cannot go through). fuse s: one fusion, compiled.",
        "",
        "| method | kind | Q2n | SAM | ERGAS | FSDS (dB) | NL HF share (scene) | NL HF share (flat) | HF out/GT | MS gain @ Nyq | PAN HF gain | lin. | fuse s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hs = r["hyra_scene"]
        hf = r.get("hyra_flat", {}).get("hf_share_nonlinear") if r["kind"] == "learned" else None
        lines.append(
            f"| {r['label']} | {r['kind']} | {fmt(r['Q2n'])} | {fmt(r['SAM'])} | {fmt(r['ERGAS'])} | {fmt(r['FSDS'], 2)} | "
            f"{fmt(hs['hf_share_nonlinear'], 3)} | {fmt(hf, 3)} | {fmt(hs['hf_output_to_gt'], 3)} | "
            f"{fmt(hs['ms_gain_at_ms_nyquist'], 3)} | {fmt(hs['pan_gain_hf_mean'], 3)} | {LIN[hs['linearization']]} | {fmt(r['fuse_seconds'], 1)} |"
        )
    lines += ["", "## Does FSDS order the methods like Q2n / ERGAS?", ""]
    for group, rk in ranks.items():
        lines.append(f"**{group}** ({rk['n']} methods)")
        lines.append("")
        for other in ("Q2n", "ERGAS"):
            o = rk[other]
            lines.append(
                f"- FSDS vs {other}: Spearman {o['spearman']:.3f} (p {o['spearman_p']:.2g}), Kendall {o['kendall']:.3f}; "
                f"{len(o['discordant_pairs'])} discordant pairs" + (f": {', '.join(o['discordant_pairs'][:12])}" if o["discordant_pairs"] else "")
            )
        lines.append(f"- order by FSDS: {', '.join(rk['order_FSDS'])}")
        lines.append(f"- order by Q2n: {', '.join(rk['order_Q2n'])}")
        lines.append(f"- order by ERGAS: {', '.join(rk['order_ERGAS'])}")
        lines.append("")
    if sinc and "zero" in sinc:
        lines += [
            "## The sinc phenomenon (x4 SR net on PAN patches)", "",
            f"{sinc['steps']} steps ({sinc['train_seconds']:.0f} s), L1 loss {sinc['loss_first_20']:.4f} -> {sinc['loss_last_50']:.4f}. "
            f"1-D profile (sum over rows, DC gain 4): most negative lobe, ideal sinc(x/4) {sinc['sinc_min_lobe']:.3f}, Keys bicubic {sinc['keys_min_lobe']:.3f}.", "",
            "| impulse | most negative lobe | at x | RMS vs sinc | RMS vs Keys | 2-D DC gain |", "|---|---|---|---|---|---|",
        ]  # fmt: skip
        for tag in ("zero", "grey"):
            s = sinc[tag]
            lines.append(
                f"| {s['amplitude']:g} on {tag} ({s['background']:.3f}) | {s['profile_min']:.3f} | {s['profile_min_at']:.1f} | "
                f"{s['profile_rms_vs_sinc']:.3f} | {s['profile_rms_vs_keys']:.3f} | {s['dc_gain']:.2f} |"
            )
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created)")
    ap.add_argument("--scene", default="rr/wv3_cdif.mat", help="reduced-resolution scene with GT (default rr/wv3_cdif.mat)")
    ap.add_argument("--methods", help="comma-separated subset (default: every classical method and every model with weights)")
    ap.add_argument("--size", type=int, default=65, help="impulse-response window (default 65)")
    ap.add_argument("--sr-steps", type=int, default=1500, help="SR net training steps (0: skip the sinc experiment)")
    ap.add_argument("--ckpt", action="append", default=[], metavar="NAME=WORKDIR",
                    help="a project-trained checkpoint of registry model NAME (repeatable); analysed as '<label> (ours, <sensor>)'")
    ap.add_argument("--previous", help="an earlier frequency_report.json of the same scene: its rows join the tables, "
                    "rank correlations and scatter (not the profile plots); methods analysed now replace theirs")
    ap.add_argument("--batch", type=int, default=8,
                    help="impulse responses per call (default 8; 1 for models whose vmapped derivatives do not fit in memory)")
    ap.add_argument("--linearization", default="auto", choices=("auto", "derivative", "difference"),
                    help="impulse responses by forward-mode derivatives or finite differences (auto: derivatives where "
                         "the method is jittable; 'difference' for models whose derivative compiles too slowly, e.g. "
                         "FusionMamba with its associative scan)")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="skip a model whose analysis would take longer (estimated from one fusion)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = load_scene(args.scene)
    if scene.gt is None:
        raise SystemExit(f"{args.scene} has no GT: the report needs a reduced-resolution scene")
    wanted = [m.strip() for m in args.methods.split(",")] if args.methods else None
    notes: list[str] = []
    candidates: list[tuple[str, Path | None, Path | None]] = [(k, None, None) for k in classical.METHODS]
    for name in RELEASED:
        w = released_weights(name, scene.sensor.name)
        if w is None:
            notes.append(f"{name}: no released weights for {scene.sensor.name} under $PANSHARP_WEIGHTS")
            continue
        candidates.append((name, w, None))
    own = [parse_ckpt(item) for item in args.ckpt]
    rows = []
    for name, w, ckpt in candidates + [(n, None, c) for n, c in own]:
        if wanted is not None and name not in wanted and ckpt is None:
            continue
        try:
            if ckpt is None:
                method = resolve(name, weights=None if w is None else str(w))
            else:
                method = resolve(name, ckpt=str(ckpt))
                method = dataclasses.replace(method, label=f"{method.label} (ours, {method.trained_sensor or ckpt.name})")
                if method.trained_sensor and method.trained_sensor != scene.sensor.name:
                    notes.append(f"{method.label}: trained on {method.trained_sensor} ({ckpt.name}), used on {scene.sensor.name} as it is")
            method.check(scene.nbands, scene.ratio, f"scene {scene.name}")
            fused = timed_fusion(method, scene)
            once = fused[1]
            # finite differences (the worst case): 1 + C + P fusions on the scene and on the flat canvas
            canvas = -(-2 * args.size // (8 * scene.ratio)) * 8 * scene.ratio
            learned = w is not None or ckpt is not None
            estimate = once * (1 + scene.nbands + scene.ratio**2) * (1 + (canvas / scene.pan.shape[0]) ** 2 * learned)
            if estimate > args.max_seconds:
                notes.append(f"{method.label}: skipped, one fusion takes {once:.0f} s (analysis about {estimate:.0f} s > {args.max_seconds:.0f} s)")
                continue
            print(f"{method.label} ...", file=sys.stderr, flush=True)
            rows.append(analyse(method, scene, learned, args.size, args.batch, args.linearization, fused))
        except InputError as e:
            notes.append(f"{name}: {e}")
    if args.previous:
        rows = merge_previous(rows, Path(args.previous), scene.name, notes)
    learned = [r for r in rows if r["kind"] == "learned"]
    ranks = {"all methods": rank_agreement(rows)} if len(rows) >= 3 else {}
    if len(learned) >= 3:
        ranks["learned models"] = rank_agreement(learned)
    if any("result" in r for r in learned):
        plots.plot_method_comparison({r["label"]: r["result"] for r in learned if "result" in r}, out / "profiles_learned.png", title=f"learned models on {scene.name}")
    classic = [r for r in rows if r["kind"] == "classical"]
    if any("result" in r for r in classic):
        plots.plot_method_comparison({r["label"]: r["result"] for r in classic if "result" in r}, out / "profiles_classical.png", title=f"classical methods on {scene.name}")
    if rows:
        scatter(rows, out / "fsds_vs_scores.png")
    sinc = sinc_experiment(out, args.sr_steps) if args.sr_steps > 0 else {}
    text = markdown(scene, rows, ranks, notes, sinc)
    (out / "frequency_report.md").write_text(text, encoding="utf-8")
    payload = {"scene": scene.name, "sensor": scene.sensor.name, "rows": [{k: v for k, v in r.items() if k != "result"} for r in rows],
               "rank_agreement": ranks, "sinc": sinc, "notes": notes}  # fmt: skip
    write_json(out / "frequency_report.json", json_ready(payload))
    print(text)
    return 0


def merge_previous(rows: list[dict[str, Any]], path: Path, scene: str, notes: list[str]) -> list[dict[str, Any]]:
    """``rows`` after the rows of an earlier report (same scene) whose labels are not in ``rows``."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"--previous {path}: not a readable frequency_report.json ({e})") from e
    if old.get("scene") != scene:
        raise SystemExit(f"--previous {path} is a report of {old.get('scene')!r}, not of {scene!r}")
    now = {r["label"] for r in rows}
    kept = [r for r in old.get("rows", []) if r.get("label") not in now]
    notes.append(f"{len(kept)} rows taken from the earlier report {path.name} (not re-analysed; not in the profile plots)")
    return kept + rows


def parse_ckpt(item: str) -> tuple[str, Path]:
    """``NAME=WORKDIR`` -> (registry name, workdir); SystemExit naming the problem otherwise."""
    name, sep, path = item.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise SystemExit(f"--ckpt {item!r}: expected NAME=WORKDIR, e.g. fusionnet=runs/fusionnet_wv2_real")
    if not Path(path).is_dir():
        raise SystemExit(f"--ckpt {item!r}: {path} is not a training workdir")
    return name.strip(), Path(path)


def scatter(rows: list[dict[str, Any]], path: Path) -> Path:
    """FSDS against Q2n and against ERGAS, one point per method (learned in orange)."""
    fig = plots.new_figure(1100, 450)
    axes = fig.subplots(1, 2)
    for ax, other in zip(axes, ("Q2n", "ERGAS"), strict=True):
        for r in rows:
            c = "tab:orange" if r["kind"] == "learned" else "tab:blue"
            ax.scatter(r[other], r["FSDS"], color=c, s=18)
            ax.annotate(r["label"], (r[other], r["FSDS"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set_xlabel(other + (" (higher is better)" if other == "Q2n" else " (lower is better)"))
        ax.set_ylabel("FSDS (dB, mean over bands)")
    fig.suptitle("FSDS against the toolbox scores (orange: learned, blue: classical)", fontsize=11)
    return plots.save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
