"""CrossDiff tables from finished runs: reduced resolution on a scene's held-out quarter, full
resolution (QNR / HQNR) on the whole scene, and the cross-sensor table.

Runs are ``pansharp train`` workdirs given as ``LABEL=WORKDIR`` (any registered model: CrossDiff
heads, FusionNet, SSDiff, SBM ...); each is restored at its best checkpoint by its validation
metric (else the latest) and applied whole, with the fixed noise key of its ``__call__``
(generative methods: their deterministic output). Classical methods (``classical.METHODS``)
run on the same inputs through the method API.

* ``--reduced LABEL=WORKDIR`` (repeatable): runs trained on the same scene (WV2 by default);
  table 1 scores them at reduced resolution on the scene's held-out quarter (as
  ``experiments/real_scene_wv2.py``: the quarter cut off, Wald-reduced on its own, GT = its MS,
  ``evaluate_reduced`` with border cut 0, outputs not clipped); table 2 scores them at full
  resolution on the whole scene (``evaluate_full``: D_lambda, D_S, QNR, D_lambda_K, HQNR;
  products clipped to [0, 1] as ``pansharp compare``).
* ``--cross LABEL=WORKDIR`` (repeatable): CrossDiff heads whose encoders come from another
  sensor's pretext run, from the same sensor's, or from none (``:head,scratch``); each is
  scored on the held-out quarter of its own training scene (read from the run's config),
  grouped by that scene, with the best classical value of the scene beside it.
* ``--quick``: four classical methods (EXP, GSA, BT-H, MTF-GLP-FS) and the full-resolution
  table on the central 512 x 512 PAN pixels only.
* ``--fr-crop SIDE``: the full-resolution table on the central SIDE x SIDE PAN pixels (every
  classical method; for methods too slow for the whole scene on a CPU, e.g. SSDiff's tiled
  10-step sampler); ``--no-reduced``: the full-resolution table only (the reduced-resolution
  rows of ``--reduced`` runs are those of ``experiments/real_scene_wv2.py``).

Writes ``<out>/crossdiff_tables.md`` and ``.json`` and prints the Markdown::

    python experiments/crossdiff_tables.py --out runs/crossdiff_tables \\
        --reduced CrossDiff=runs/crossdiff_wv2_head --reduced FusionNet=runs/fusionnet_wv2_real \\
        --cross "WV2 <- WV2=runs/crossdiff_wv2_head" --cross "WV2 <- GeoEye1=runs/crossdiff_wv2_enc_geoeye1"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_scene_wv2 import heldout_inputs, score  # noqa: E402

from pansharp_jax import classical  # noqa: E402
from pansharp_jax.data.io import load_scene  # noqa: E402
from pansharp_jax.methods import from_params, resolve  # noqa: E402
from pansharp_jax.metrics.full import evaluate_full  # noqa: E402

RR_KEYS = ("Q2n", "SAM", "ERGAS", "SCC", "Q_avg", "PSNR")
FR_KEYS = ("D_lambda", "D_S", "QNR", "D_lambda_K", "HQNR")
QUICK = ("exp", "gsa", "bt_h", "mtf_glp_fs")
HIGHER = {"Q2n", "SCC", "Q_avg", "PSNR", "QNR", "HQNR"}


def parse_runs(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=WORKDIR`` items -> [(label, path)]."""
    out = []
    for it in items:
        label, sep, path = it.partition("=")
        if not sep:
            raise SystemExit(f"expected LABEL=WORKDIR, got {it!r}")
        out.append((label.strip(), Path(path.strip())))
    return out


def load_run(workdir: Path) -> tuple[Any, ml_collections.ConfigDict, str]:
    """(Method, the run's whole config, a note 'best/latest step N') of a workdir."""
    from pansharp_jax.train.restore import _tuples, restore_params

    r = restore_params(workdir)
    cfg = ml_collections.ConfigDict(_tuples(r.config))
    return from_params(str(r.model_config.name), r.params, r.model_config), cfg, f"{r.which} step {r.step}"


def fmt(rows: list[tuple[str, dict[str, float]]], keys: tuple[str, ...]) -> str:
    """A Markdown table, best value per column in bold."""
    best = {}
    for k in keys:
        vals = [s[k] for _, s in rows if np.isfinite(s.get(k, np.nan))]
        best[k] = (max(vals) if k in HIGHER else min(vals)) if vals else None
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, s in rows:
        cells = []
        for k in keys:
            v = s.get(k, float("nan"))
            txt = f"{v:.4f}"
            cells.append(f"**{txt}**" if best[k] is not None and v == best[k] else txt)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def classical_names(quick: bool) -> tuple[str, ...]:
    return QUICK if quick else tuple(classical.METHODS)


def reduced_rows(runs: list[tuple[str, Any]], inp: dict[str, Any], quick: bool) -> list[tuple[str, dict[str, float]]]:
    """Scores on a held-out quarter (``heldout_inputs``) of the learned methods and the classical ones."""
    r, max_dn, gt = inp["ratio"], inp["max_dn"], inp["gt"]
    rows = []
    for label, method in runs:
        fused = method.fuse_arrays(inp["lrms"], inp["pan"], ratio=r, clip=False)
        rows.append((label, score(fused, gt, r, max_dn, 0)))
    for name in classical_names(quick):
        m = resolve(name)
        rows.append((m.label, score(m.fuse_arrays(inp["lrms"], inp["pan"], sensor=inp["sensor"], ratio=r, clip=False), gt, r, max_dn, 0)))
    return rows


def full_rows(
    runs: list[tuple[str, Any]], scene_path: str, sensor: str, quick: bool, crop: int = 0
) -> tuple[list[tuple[str, dict[str, float]]], str]:
    """Full-resolution scores on the whole scene (``crop`` > 0, or 512 with ``quick``: its
    central ``crop`` x ``crop`` PAN pixels; a multiple of 32 x ratio)."""
    scene = load_scene(scene_path, sensor=sensor)
    lrms, pan, r = np.asarray(scene.lrms), np.asarray(scene.pan), int(scene.ratio)
    where = f"whole scene, PAN {pan.shape[0]}x{pan.shape[1]}"
    crop = crop or (512 if quick else 0)
    if crop:
        h, w = lrms.shape[:2]
        q = crop // r
        r0, c0 = (h - q) // 2, (w - q) // 2
        lrms, pan = lrms[r0 : r0 + q, c0 : c0 + q], pan[r0 * r : (r0 + q) * r, c0 * r : (c0 + q) * r]
        where = f"central {pan.shape[0]}x{pan.shape[1]} PAN pixels"
    rows = []
    methods = list(runs) + [(resolve(n).label, resolve(n)) for n in classical_names(quick)]
    for label, m in methods:
        fused = m.fuse_arrays(lrms, pan, sensor=scene.sensor, ratio=r, clip=True)
        s = evaluate_full(fused, lrms, pan, sensor=scene.sensor, ratio=r, max_dn=scene.max_dn)
        rows.append((label, {k: float(v) for k, v in s.items()}))
    return rows, where


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reduced", action="append", default=[], metavar="LABEL=WORKDIR", help="runs on the scene of table 1/2")
    p.add_argument("--cross", action="append", default=[], metavar="LABEL=WORKDIR", help="heads for the cross-sensor table")
    p.add_argument("--scene", default="fr/wv2_pnn.mat", help="scene of tables 1/2 (relative: under $PANSHARP_DATA)")
    p.add_argument("--sensor", default="WV2")
    p.add_argument("--fr-crop", type=int, default=0, help="full resolution on the central SIDE x SIDE PAN pixels (0: whole scene)")
    p.add_argument("--no-reduced", action="store_true", help="only the full-resolution table for --reduced runs")
    p.add_argument("--quick", action="store_true", help="4 classical methods; full resolution on a 512 x 512 crop")
    p.add_argument("--no-full", action="store_true", help="skip the full-resolution table")
    p.add_argument("--out", default="runs/crossdiff_tables")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    md: list[str] = []
    report: dict[str, Any] = {}
    runs = [(label, *load_run(path)) for label, path in parse_runs(args.reduced)]
    if runs:
        cfg = runs[0][2]
        cfg.data.scene, cfg.data.sensor = args.scene, args.sensor
        inp = heldout_inputs(cfg)
        labelled = [(f"{label} ({note})", m) for label, m, _, note in runs]
        if not args.no_reduced:
            rows = reduced_rows(labelled, inp, args.quick)
            box = inp["box"]
            md.append(f"## Reduced resolution: held-out quarter of `{args.scene}` (MS rows {box.r0}:{box.r1}, cols "
                      f"{box.c0}:{box.c1}; Wald-reduced; border cut 0)\n\n{fmt(rows, RR_KEYS)}")  # fmt: skip
            report["reduced"] = dict(rows)
        if not args.no_full:
            frows, where = full_rows(labelled, args.scene, args.sensor, args.quick, args.fr_crop)
            md.append(f"\n## Full resolution: `{args.scene}`, {where} (products clipped to [0, 1])\n\n{fmt(frows, FR_KEYS)}")
            report["full"] = {"where": where, "scores": dict(frows)}
    cross = [(label, *load_run(path)) for label, path in parse_runs(args.cross)]
    if cross:
        by_scene: dict[str, list[tuple[str, Any, Any, str]]] = {}
        for label, m, cfg, note in cross:
            by_scene.setdefault(f"{cfg.data.scene}|{cfg.data.sensor}", []).append((label, m, cfg, note))
        report["cross"] = {}
        for key, items in by_scene.items():
            inp = heldout_inputs(items[0][2])
            rows = reduced_rows([(f"{label} ({note})", m) for label, m, _, note in items], inp, args.quick)
            learned, classic = rows[: len(items)], rows[len(items) :]
            best = {k: (max if k in HIGHER else min)(s[k] for _, s in classic) for k in RR_KEYS}
            scene = key.split("|")[0]
            md.append(f"\n## Cross-sensor: heads trained and tested on `{scene}` (held-out quarter, reduced resolution)\n\n"
                      f"{fmt(learned + [('best classical (per column)', best)], RR_KEYS)}")  # fmt: skip
            report["cross"][scene] = {"scores": dict(learned), "best_classical": best}
    text = "".join(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "crossdiff_tables.md").write_text(text)
    (out / "crossdiff_tables.json").write_text(json.dumps(report, indent=1, default=float))
    print(text)
    print(f"took {time.perf_counter() - t0:.0f} s; wrote {out / 'crossdiff_tables.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
