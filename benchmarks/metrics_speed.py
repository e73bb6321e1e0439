"""Speed of the toolbox-exact metrics (and of the classical methods) against the MATLAB toolbox.

Usage::

    python benchmarks/metrics_speed.py [--runs 7]
    PANSHARP_DATA=../shared/data python benchmarks/metrics_speed.py   # also a real WV2 scene

Times are medians over ``--runs`` calls after a warm-up call (compilation excluded), on
the CPU unless ``--device`` says otherwise. The toolbox figures are the project's
reference timings of the MATLAB toolbox run in GNU Octave on the same 2-core machine:
one ``indexes_evaluation`` on a 256x256x8 scene 0.80 s (Q2n alone 0.60 s), HQNR on a
1280x1280x8 scene 24 s, QNR 32 s. The goal is a speed-up of at least 50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLBOX_S = {"indexes_evaluation": 0.80, "q2n": 0.60, "HQNR": 24.0, "QNR": 32.0}
GOAL = 50.0


def _median_s(fn: Callable[[], Any], runs: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(label: str, seconds: float, toolbox: float | None = None) -> None:
    if toolbox is None:
        print(f"  {label:<52s} {seconds * 1e3:9.1f} ms")
        return
    speedup = toolbox / seconds
    flag = "ok" if speedup >= GOAL else f"below the {GOAL:.0f}x goal"
    print(f"  {label:<52s} {seconds * 1e3:9.1f} ms   toolbox {toolbox:6.2f} s   x{speedup:7.1f}  {flag}")


def bench_reduced(runs: int) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pansharp_jax import metrics
    from pansharp_jax.metrics import reduced

    rng = np.random.default_rng(0)
    gt = rng.random((256, 256, 8))
    fused = np.clip(gt + rng.normal(0, 0.03, gt.shape), 0, 1)
    print("reduced resolution, 256x256x8 (synthetic), cut 21:")
    seconds = _median_s(lambda: metrics.evaluate_reduced(fused, gt), runs)
    _row("evaluate_reduced (Q2n Q_avg SAM ERGAS SCC PSNR SSIM)", seconds, TOOLBOX_S["indexes_evaluation"])
    with jax.enable_x64(True):
        g = reduced.cut_border(jnp.asarray(gt * 2047.0), 21)
        f = reduced.cut_border(jnp.asarray(fused * 2047.0), 21)
        def toolbox_set() -> tuple[jax.Array, ...]:
            # exactly what indexes_evaluation returns: Q2n, Q_avg, SAM, ERGAS, SCC
            return reduced.q2n_index(g, f), reduced.q_avg(g, f), reduced.sam(g, f), reduced.ergas(g, f, 4), reduced.scc(g, f)

        _row("the toolbox's five (Q2n Q_avg SAM ERGAS SCC), on DN", _median_s(toolbox_set, runs), TOOLBOX_S["indexes_evaluation"])
        _row("Q2n alone", _median_s(lambda: reduced.q2n_index(g, f), runs), TOOLBOX_S["q2n"])
        _row("Q_avg alone", _median_s(lambda: reduced.q_avg(g, f), runs))
        _row("SSIM alone", _median_s(lambda: reduced.ssim(g / 2047.0, f / 2047.0), runs))


def _full_scene(data: Path | None) -> list[tuple[str, Any, Any, Any, str]]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pansharp_jax.data import wald

    rng = np.random.default_rng(1)
    lrms = rng.random((320, 320, 8))
    pan = rng.random((1280, 1280, 1))
    scenes = [("synthetic 1280x1280x8", lrms, pan, "WV2")]
    if data is not None and (data / "fr" / "wv2_pnn.mat").is_file():
        import scipy.io as sio

        mat = sio.loadmat(data / "fr" / "wv2_pnn.mat")
        scenes.append(("fr/wv2_pnn 1280x1280x8", mat["I_MS"] / 2047.0, mat["I_PAN"][..., None] / 2047.0, "WV2"))
    out = []
    for name, lr, p, sensor in scenes:
        with jax.enable_x64(True):
            exp = np.asarray(wald.interp23tap(jnp.asarray(lr, jnp.float64), 4))
        fused = exp + rng.normal(0, 0.01, exp.shape)
        out.append((name, fused, lr, p, sensor))
    return out


def bench_full(runs: int, data: Path | None) -> None:
    import jax
    import jax.numpy as jnp

    from pansharp_jax import metrics
    from pansharp_jax.data.sensors import get_sensor
    from pansharp_jax.metrics import full

    for name, fused, lrms, pan, sensor in _full_scene(data):
        print(f"full resolution, {name} (fused = EXP + noise), sensor {sensor}:")
        gains = get_sensor(sensor).gains(fused.shape[-1])
        with jax.enable_x64(True):
            f = jnp.asarray(fused * 2047.0)
            lr = jnp.asarray(lrms * 2047.0)
            p = jnp.asarray(pan * 2047.0)
            up = jax.jit(lambda x: full.upsample(x, 4))
            ms_up = up(lr)

            def hqnr() -> Any:
                return full.hqnr_from_upsampled(f, ms_up, p, gains, 4, 32)["HQNR"]

            def qnr() -> Any:
                return (1.0 - full.d_lambda(f, ms_up, 32)) * (1.0 - full.d_s(f, ms_up, p, 4, 32))

            _row("HQNR, I_MS given (as the toolbox's call)", _median_s(hqnr, runs), TOOLBOX_S["HQNR"])
            _row("QNR, I_MS given (as the toolbox's call)", _median_s(qnr, runs), TOOLBOX_S["QNR"])
            _row("  + interp23tap(lrms) (outside the toolbox call)", _median_s(lambda: up(lr), runs))
        _row(
            "evaluate_full (I_MS + all five indices)",
            _median_s(lambda: metrics.evaluate_full(fused, lrms, pan, sensor=sensor), runs),
            TOOLBOX_S["HQNR"] + TOOLBOX_S["QNR"],
        )


def bench_methods(runs: int) -> None:
    import numpy as np

    from pansharp_jax.classical import METHODS
    from pansharp_jax.methods import resolve

    rng = np.random.default_rng(2)
    lrms = rng.random((64, 64, 8))
    pan = rng.random((256, 256, 1))
    print("classical methods, 256x256x8 (synthetic), sensor WV3:")
    for name in METHODS:
        method = resolve(name)  # the method API (float64, toolbox-exact), raw outputs
        try:
            seconds = _median_s(lambda m=method: m.fuse_arrays(lrms, pan, sensor="WV3", ratio=4, clip=False), runs)
        except Exception as err:  # report and go on with the others
            print(f"  {name:<52s} failed: {type(err).__name__}: {err}")
            continue
        _row(name, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed calls per measurement (median)")
    parser.add_argument("--device", default="cpu", help="JAX platform to time on (default cpu)")
    parser.add_argument("--no-methods", action="store_true", help="skip the classical methods")
    args = parser.parse_args(argv)
    os.environ["JAX_PLATFORMS"] = args.device
    import jax

    data = Path(os.environ["PANSHARP_DATA"]) if os.environ.get("PANSHARP_DATA") else None
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores; median of {args.runs} runs")
    bench_reduced(args.runs)
    bench_full(args.runs, data)
    if not args.no_methods:
        bench_methods(args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
