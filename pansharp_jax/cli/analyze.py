"""``pansharp analyze``: analyses of one method on one scene (figures and ``report.json``).

::

    pansharp analyze --method fusionnet --weights fusionnet/WV3/fusionnet.pth \\
        --input rr/wv3_cdif.mat --out analysis/fusionnet --crop 128

``--what frequency`` (the default, the only analysis so far; ``stages`` for deep-unfolding
models is planned) runs HyRA (:mod:`pansharp_jax.analysis.hyra`): impulse responses of the
MS and PAN inputs, the split of the product into a linear and a non-linear part, their
spectra and the non-linear share of the energy above the MS Nyquist frequency; with a GT,
the FSDS per band and the toolbox's reduced-resolution scores. Writes
``impulse_responses.png``, ``spectra.png``, ``radial_profiles.png``, ``fsds_bands.png``
(GT only) and ``report.json`` (:mod:`pansharp_jax.analysis.report`).
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from pansharp_jax.cli._common import console, input_args, load, model_args, output_dir, say_method_fit, say_origin
from pansharp_jax.errors import InputError

WHAT = ("frequency",)


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``analyze`` on the sub-command parser ``sub``."""
    from pansharp_jax.analysis.hyra import BACKGROUNDS, LINEARIZATIONS, PAN_PHASES

    p = sub.add_parser(
        "analyze", parents=parents, help="frequency analysis of a method (HyRA, FSDS)",
        description="Analyse one method on one scene: impulse responses, linear / non-linear split, spectra, FSDS.",
    )  # fmt: skip
    p.add_argument("--method", "-m", required=True, metavar="NAME", help="method name (classical, or learned with --weights / --ckpt)")
    input_args(p)
    model_args(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder (PNG figures and report.json)")
    p.add_argument("--what", choices=WHAT, default="frequency", help="the analysis (default frequency: HyRA and FSDS)")
    p.add_argument("--crop", type=int, metavar="N", help="analyse the centre N x N PAN pixels only (faster)")
    g = p.add_argument_group("frequency analysis")
    g.add_argument("--size", type=int, metavar="K", help="impulse-response window in PAN pixels, odd (default 16*ratio+1)")
    g.add_argument("--background", choices=BACKGROUNDS, default="flat", help="where the impulses sit: flat (scene means, default), zero, or scene (the local behaviour on this scene; needed by methods using image statistics)")
    g.add_argument("--linearization", choices=LINEARIZATIONS, default="auto", help="derivative (exact Jacobian), difference (finite impulse, the paper's) or auto (derivative when possible)")
    g.add_argument("--amplitude", type=float, default=0.1, help="impulse height on the [0, 1] scale for --linearization difference (default 0.1)")
    g.add_argument("--pan-phases", choices=PAN_PHASES, default="all", help="PAN kernels per phase of the LR grid: all (ratio^2, default) or one")
    p.add_argument("--no-clip", action="store_true", help="score the raw product (default: clipped to [0, 1])")
    p.set_defaults(func=cmd_analyze)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Run the analysis (see module docstring)."""
    from pansharp_jax.analysis.report import crop_scene, frequency_report
    from pansharp_jax.methods import resolve

    if args.size is not None and (args.size < 3 or args.size % 2 == 0):
        raise InputError(f"--size must be an odd number >= 3, got {args.size}")
    if args.crop is not None and args.crop <= 0:
        raise InputError(f"--crop must be a positive number of PAN pixels, got {args.crop}")
    method = resolve(args.method, weights=args.weights, ckpt=args.ckpt)
    scene = crop_scene(load(args), args.crop)
    say_origin(method)
    method.check(scene.nbands, scene.ratio, f"scene {scene.name}")
    say_method_fit(method, scene.sensor.name, scene.ratio)
    out, created = output_dir(args.out)
    try:
        report, _ = frequency_report(
            method, scene, out, size=args.size, linearization=args.linearization, amplitude=args.amplitude,
            background=args.background, pan_phases=args.pan_phases, clip=not args.no_clip,
        )  # fmt: skip
    except BaseException:
        if created:  # no half-written analysis folder left behind after an error
            shutil.rmtree(out, ignore_errors=True)
        raise
    _print_summary(report)
    console().print(f"wrote {', '.join(report['figures'])}, report.json in {out}", markup=False)
    return 0


def _print_summary(report: dict[str, Any]) -> None:
    from rich.table import Table

    h = report["hyra"]
    t = Table(title=f"{report['label']} on {report['scene']}: frequency analysis ({h['linearization']}, {h['background']} background)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    share = h["hf_share_nonlinear"]
    rows = [
        ("non-linear share of HF energy (> MS Nyquist)", "n/a" if share is None else f"{share:.4f}"),
        ("HF energy: product / linear / non-linear", " / ".join(f"{h['hf_energy'][k]:.4g}" for k in ("output", "linear", "nonlinear"))),
        ("MS path gain at MS Nyquist (/ ratio^2)", f"{h['ms_gain_at_ms_nyquist']:.4f}"),
        ("PAN path mean gain above MS Nyquist", f"{h['pan_gain_hf_mean']:.4f}"),
    ]
    if h.get("hf_output_to_gt") is not None:
        rows.append(("HF energy product / GT", f"{h['hf_output_to_gt']:.4f}"))
    if "fsds" in report:
        fs = report["fsds"]
        rows.append(("FSDS mean over bands (dB)", "inf" if fs["mean"] is None else f"{fs['mean']:.3f}"))
        m = report["metrics"]
        rows.append(("Q2n / SAM / ERGAS", f"{m['Q2n']:.4f} / {m['SAM']:.4f} / {m['ERGAS']:.4f}"))
    for k, v in rows:
        t.add_row(k, v)
    console().print(t)
