"""One scene, several methods, every evaluation preset: how far the conventions move the numbers.

Each method fuses the scene once (through the method API); the same product is then scored
under every preset of :mod:`pansharp_jax.metrics.protocols`. Prints a Markdown table (one
row per method and preset) and writes it with a JSON copy to ``--out``.

Usage (``$PANSHARP_DATA`` / ``$PANSHARP_WEIGHTS`` hold the shared scenes and weights)::

    python experiments/protocol_table.py --input rr/wv3_cdif.mat --methods exp,gsa,bt_h,mtf_glp_fs,fusionnet \\
        --weights fusionnet=fusionnet/WV3/fusionnet.pth --out runs/protocols
    python experiments/protocol_table.py --input fr/ikonos_pnn.mat --methods exp,gsa,mtf_glp_fs --out runs/protocols_fr
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", default="rr/wv3_cdif.mat", help="scene (relative paths also under $PANSHARP_DATA)")
    p.add_argument("--methods", default="exp,gsa,bt_h,mtf_glp_fs", help="comma-separated method names")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=FILE", help="released weights of learned methods")
    p.add_argument("--protocols", default="", help="comma-separated presets (default: all)")
    p.add_argument("--out", default="runs/protocols", help="output folder (protocols.md, protocols.json)")
    args = p.parse_args(argv)

    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation
    from pansharp_jax.data.io import find_input, load_scene
    from pansharp_jax.methods import resolve_many
    from pansharp_jax.metrics.protocols import evaluate_full_protocol, evaluate_reduced_protocol, get_protocol, protocol_names

    scene = load_scene(find_input(args.input))
    mode = "rr" if scene.has_gt else "fr"
    names = [n.strip() for n in args.protocols.split(",") if n.strip()] or protocol_names()
    protocols = [get_protocol(n) for n in names]
    rows: list[dict] = []
    for method in resolve_many(args.methods, weights=args.weights):
        fused = method.fuse(scene)
        for proto in protocols:
            if mode == "rr":
                scores = evaluate_reduced_protocol(fused, scene.gt, ratio=scene.ratio, max_dn=scene.max_dn, protocol=proto)
            else:
                scores = evaluate_full_protocol(
                    fused, scene.lrms, scene.pan, sensor=scene.sensor, ratio=scene.ratio, max_dn=scene.max_dn, protocol=proto
                )
            rows.append({"method": method.label, "protocol": proto.name, "metrics": scores})
        print(f"{method.label}: scored under {len(protocols)} presets", file=sys.stderr)

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["metrics"] if k not in keys]
    lines = [
        f"**{scene.name}** ({scene.sensor.name}, {'reduced' if mode == 'rr' else 'full'} resolution): the same products under every preset",
        "",
        "| Method | Protocol | " + " | ".join(keys) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for r in rows:
        cells = [f"{r['metrics'][k]:.4f}" if k in r["metrics"] else "-" for k in keys]
        lines.append(f"| {r['method']} | {r['protocol']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "protocols.md").write_text(text, encoding="utf-8")
    doc = {"scene": scene.name, "mode": mode, "protocols": {pr.name: pr.describe() for pr in protocols}, "rows": rows}
    (out / "protocols.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
