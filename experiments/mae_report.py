"""How well a pre-trained MAE reconstructs held-out real patches: masked error vs the mean-fill baseline.

Restores a ``configs/mae_wv2_real.py`` run (``--ckpt W``), takes the validation patches of its
data block (held-out part of the real scene, Wald-reduced high-resolution MS), hides tokens
with ``--draws`` fixed keys, and reports on the hidden tokens:

* ``masked_mse``: the MAE's mean squared error ([0, 1] scale);
* ``mean_fill_mse``: the error of filling each hidden token with the mean of the visible ones
  (per value position): the trivial baseline;
* their ratio;
* ``neighbour_fill_mse`` (spatial masking): a stronger hand-made baseline, each hidden token
  filled with the mean pattern of the visible tokens shifted to the per-band level of its
  nearest visible neighbours (the visible tokens within the smallest Chebyshev radius, on the
  token grid, that holds any). It measures how much of the hidden content the neighbourhood
  predicts at all.

Writes ``<out>/mae_report.json`` and ``<out>/mae_grid.png``: rows of [GT | masked input | MAE
reconstruction (visible pixels kept) | MAE prediction] in true colour. Usage::

    pansharp train --config configs/mae_wv2_real.py --workdir runs/mae_wv2_real
    python experiments/mae_report.py --ckpt runs/mae_wv2_real --out runs/mae_wv2_real/report
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def neighbour_fill(target: np.ndarray, mask: np.ndarray, grid: tuple[int, int], bands: int) -> np.ndarray:
    """The neighbour-level fill of the module docstring; target (N, L, T) tokens of p*p*bands values
    (spatial masking), mask (N, L) with 1 at hidden tokens -> filled tokens (N, L, T)."""
    n, length, t = target.shape
    vis = 1.0 - mask
    tok = target.reshape(n, grid[0], grid[1], t // bands, bands)
    level = tok.mean(axis=3)  # (N, gh, gw, bands): each token's per-band mean
    v = vis.reshape(n, grid[0], grid[1])
    pattern = (target * vis[..., None]).sum(1) / np.maximum(vis.sum(1), 1.0)[:, None]  # (N, T)
    pattern = pattern.reshape(n, 1, t // bands, bands)
    pattern = pattern - pattern.mean(axis=2, keepdims=True)
    out = np.empty_like(level)
    for i, r, c in np.ndindex(n, *grid):
        for rad in range(1, max(grid)):
            r0, r1, c0, c1 = max(r - rad, 0), r + rad + 1, max(c - rad, 0), c + rad + 1
            w = v[i, r0:r1, c0:c1]
            if w.sum() > 0:
                out[i, r, c] = (level[i, r0:r1, c0:c1] * w[..., None]).sum((0, 1)) / w.sum()
                break
        else:
            out[i, r, c] = level[i].mean((0, 1))
    filled = out.reshape(n, length, 1, bands) + pattern
    return filled.reshape(n, length, t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="the MAE's training workdir")
    p.add_argument("--out", default="", help="output folder (default: <ckpt>/report)")
    p.add_argument("--draws", type=int, default=4, help="mask draws per patch (fixed keys 0..draws-1)")
    p.add_argument("--rows", type=int, default=4, help="patches shown in the grid")
    args = p.parse_args(argv)

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()
    import jax
    import jax.numpy as jnp
    import ml_collections
    from PIL import Image

    from pansharp_jax.data import pipeline
    from pansharp_jax.models.mae import MAE, compose, mae_fields, masked_mse, mean_fill_mse
    from pansharp_jax.train.restore import restore_params
    from pansharp_jax.train.workdir import saved_config

    restored = restore_params(args.ckpt)
    cfg = ml_collections.ConfigDict(saved_config(Path(args.ckpt)))
    _, val, info = pipeline.build_sources(cfg.data)
    if val is None:
        raise SystemExit("the run's data block has no validation part")
    batch = val.get_batch(list(range(len(val))))
    gt = jnp.asarray(batch["gt"], jnp.float32)
    mae = MAE(**dict(mae_fields(ml_collections.ConfigDict(restored.model_config))))
    params = {"params": restored.params["mae"]}
    apply = jax.jit(lambda x, k: mae.apply(params, x, rng=k))
    spatial = restored.model_config["masking"] == "spatial"
    grid = (gt.shape[1] // mae.patch, gt.shape[2] // mae.patch)
    rows = []
    for d in range(args.draws):
        out = apply(gt, jax.random.PRNGKey(d))
        row = [float(masked_mse(out["pred"], out["target"], out["mask"])), float(mean_fill_mse(out["target"], out["mask"]))]
        if spatial:
            tgt, m = np.asarray(out["target"], np.float64), np.asarray(out["mask"], np.float64)
            row.append(float(masked_mse(neighbour_fill(tgt, m, grid, gt.shape[-1]), tgt, m)))
        rows.append(row)
    mse, fill = (float(np.mean([r[i] for r in rows])) for i in (0, 1))
    report = {"ckpt": str(args.ckpt), "step": restored.step, "patches": int(gt.shape[0]), "patch_side": int(gt.shape[1]),
              "masking": restored.model_config["masking"], "mask_ratio": restored.model_config["mask_ratio"],
              "draws": args.draws, "masked_mse": mse, "mean_fill_mse": fill, "ratio": mse / fill}  # fmt: skip
    if spatial:
        report["neighbour_fill_mse"] = float(np.mean([r[2] for r in rows]))
    out_dir = Path(args.out or Path(args.ckpt) / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mae_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    out = apply(gt, jax.random.PRNGKey(0))
    k = min(args.rows, gt.shape[0])
    groups = 2 if restored.model_config["masking"] == "spectral" else 1
    hidden = compose(gt, {**out, "pred": jnp.zeros_like(out["pred"])}, mae.patch, groups)  # hidden tokens blacked out
    rec = compose(gt, out, mae.patch, groups)
    rgb = list(info.rgb)

    def tile(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (np.clip((x[..., rgb] - lo) / (hi - lo + 1e-12), 0, 1) * 255).astype(np.uint8)

    lines = []
    for i in range(k):
        ref = np.asarray(gt[i])[..., rgb]
        lo, hi = np.percentile(ref, 1, axis=(0, 1)), np.percentile(ref, 99, axis=(0, 1))
        cells = [np.asarray(a[i]) for a in (gt, hidden, rec, out["image"])]
        lines.append(np.concatenate([tile(c, lo, hi) for c in cells], axis=1))
    img = np.concatenate(lines, axis=0)
    Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST).save(out_dir / "mae_grid.png")
    print(json.dumps(report, indent=2))
    print(f"wrote {out_dir / 'mae_report.json'} and {out_dir / 'mae_grid.png'} (columns: GT | masked | reconstruction | prediction)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
