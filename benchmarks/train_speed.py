"""Training speed of the CNN baselines: JAX/Flax (this package) beside the same networks in PyTorch.

For each model at its published size (``registry.default_config``), ``--bands`` bands, batch
``--batch`` of ``--size`` x ``--size`` PAN patches (MS ``size / 4``), this times one training
update: forward, MSE loss against a target, backward and the Adam update.

* JAX: the trainer's own jitted step (``pansharp_jax.train.step.make_train_step``: loss,
  gradients, Adam via ``TrainState.apply_gradients``, grad/param norms), state donated, on
  whatever device JAX uses (printed). Compilation is timed separately and excluded.
* PyTorch (when ``torch`` can be imported; otherwise a skip line): the same architectures
  written out below in plain ``torch.nn`` (NCHW), ``torch.optim.Adam``, ``MSELoss``, on the
  CPU. Parameter counts are checked against the Flax modules.

The two frameworks' steps are timed alternately (one JAX update, one PyTorch update, ...),
so that changes in the load of a shared machine affect both alike. Both sides see the same
random inputs (``lrms``, ``pan``, ``lms`` = ``interp23tap(lrms)``, ``gt``); the LMS is
precomputed, PanNet's high-pass filters and PNN's padding run inside
the step on both sides, as they do inside the Flax modules. Every figure is the median over
``--steps`` timed updates after ``--warmup`` untimed ones.

``--device gpu`` runs the PyTorch side on CUDA (when ``torch.cuda.is_available()``; JAX uses
its default device, a GPU when the CUDA plugin is installed). ``--precision bf16`` times JAX's
mixed-precision step (``pansharp_jax.train.precision``: bf16 compute, float32 master params
and Adam state) and PyTorch under ``torch.autocast(bfloat16)`` with ``channels_last`` tensors
and weights; ``--precision both`` gives the fp32 and the bf16 columns side by side. On the CPU
the default (fp32, PyTorch on the CPU) is the table as before.

Usage::

    python benchmarks/train_speed.py
    python benchmarks/train_speed.py --device gpu --precision both --batch 256
    python benchmarks/train_speed.py --models fusionnet,pnn --steps 20 --batch 32 --threads 2
    python benchmarks/train_speed.py --no-torch

``--threads N`` pins the process to N CPUs before JAX starts (XLA's CPU thread pool follows
the affinity mask) and calls ``torch.set_num_threads(N)``; 0 leaves both at their defaults.
Timings on a shared machine vary with its load: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

ALL_MODELS = ("pnn", "pannet", "dicnn", "msdcnn", "drpnn", "fusionnet", "lagnet")


# ----------------------------------------------------------------------------- PyTorch side


def torch_networks(torch: Any) -> dict[str, Callable[[int], Any]]:
    """name -> (bands -> torch.nn.Module) for the seven baselines at their published sizes.

    Each module's ``forward(lrms, pan, lms)`` takes NCHW float32 tensors and returns the
    fused NCHW image, with the layer structure of the Flax modules in
    ``pansharp_jax.models.cnn_baselines`` (same parameter counts).
    """
    nn, F = torch.nn, torch.nn.functional

    def same(cin: int, cout: int, k: int) -> Any:
        return nn.Conv2d(cin, cout, k, padding=k // 2)

    def highpass(x: Any, size: int = 5) -> Any:
        """x minus its size x size box mean, mirror (reflect-101) borders, per channel."""
        r = size // 2
        return x - F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), size, stride=1)

    class TwoConvResidual(nn.Module):
        def __init__(self, ch: int) -> None:
            super().__init__()
            self.a, self.b = same(ch, ch, 3), same(ch, ch, 3)

        def forward(self, x: Any) -> Any:
            return x + self.b(F.relu(self.a(x)))

    class Pnn(nn.Module):
        def __init__(self, bands: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(bands + 1, 64, 9), nn.ReLU(), nn.Conv2d(64, 32, 5), nn.ReLU(), nn.Conv2d(32, bands, 5)
            )

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = F.pad(torch.cat([lms, pan], 1), (8, 8, 8, 8), mode="replicate")
            return self.body(x)

    class PanNetT(nn.Module):
        def __init__(self, bands: int, ratio: int = 4) -> None:
            super().__init__()
            self.up = nn.ConvTranspose2d(bands, bands, 2 * ratio, stride=ratio, padding=ratio // 2)
            self.head = same(bands + 1, 32, 3)
            self.blocks = nn.Sequential(*(TwoConvResidual(32) for _ in range(4)))
            self.tail = same(32, bands, 3)

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = torch.cat([self.up(highpass(lrms)), highpass(pan)], 1)
            return lms + self.tail(self.blocks(F.relu(self.head(x))))

    class DiCnn(nn.Module):
        def __init__(self, bands: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                same(bands + 1, 64, 3), nn.ReLU(), same(64, 64, 3), nn.ReLU(), same(64, bands, 3)
            )

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            return lms + self.body(torch.cat([lms, pan], 1))

    class MultiScale(nn.Module):
        """Three parallel 3/5/7 convs of width/3 each, concatenated, plus the input, ReLU."""

        def __init__(self, width: int) -> None:
            super().__init__()
            self.branches = nn.ModuleList(same(width, width // 3, k) for k in (3, 5, 7))

        def forward(self, x: Any) -> Any:
            return F.relu(torch.cat([b(x) for b in self.branches], 1) + x)

    class MsdCnn(nn.Module):
        def __init__(self, bands: int) -> None:
            super().__init__()
            self.deep = nn.Sequential(
                same(bands + 1, 60, 7), nn.ReLU(), MultiScale(60), same(60, 30, 3), nn.ReLU(), MultiScale(30),
                same(30, bands, 5),
            )  # fmt: skip
            self.shallow = nn.Sequential(
                same(bands + 1, 64, 9), nn.ReLU(), nn.Conv2d(64, 32, 1), nn.ReLU(), same(32, bands, 5)
            )

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = torch.cat([lms, pan], 1)
            return F.relu(self.deep(x) + self.shallow(x))

    class DrpNn(nn.Module):
        def __init__(self, bands: int, ch: int = 32, blocks: int = 8, k: int = 7) -> None:
            super().__init__()
            layers: list[Any] = [same(bands + 1, ch, k), nn.ReLU()]
            for _ in range(blocks):
                layers += [same(ch, ch, k), nn.ReLU()]
            layers.append(same(ch, bands + 1, k))
            self.body = nn.Sequential(*layers)
            self.out = same(bands + 1, bands, k)

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = torch.cat([lms, pan], 1)
            return self.out(x + self.body(x))

    class FusionNetT(nn.Module):
        def __init__(self, bands: int) -> None:
            super().__init__()
            self.head = same(bands, 32, 3)
            self.blocks = nn.Sequential(*(TwoConvResidual(32) for _ in range(4)))
            self.tail = same(32, bands, 3)

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = pan.expand_as(lms) - lms
            return lms + self.tail(self.blocks(F.relu(self.head(x))))

    class LocalAdaptiveConv(nn.Module):
        """LAGConv: per-pixel k*k sigmoid weights (shared over channels) on the unfolded patch,
        a shared kernel without bias, plus a per-image bias from the global mean."""

        def __init__(self, cin: int, cout: int, k: int = 3) -> None:
            super().__init__()
            kk = k * k
            self.k, self.cout = k, cout
            self.weights = nn.Sequential(
                same(cin, kk, k), nn.ReLU(), nn.Conv2d(kk, kk, 1), nn.ReLU(), nn.Conv2d(kk, kk, 1), nn.Sigmoid()
            )
            self.glob = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(), nn.Conv2d(cout, cout, 1))
            self.kernel = nn.Parameter(torch.empty(cout, cin * kk))
            nn.init.uniform_(self.kernel, -1 / math.sqrt(cin * kk), 1 / math.sqrt(cin * kk))

        def forward(self, x: Any) -> Any:
            n, c, h, w = x.shape
            kk = self.k * self.k
            a = self.weights(x).reshape(n, 1, kk, h * w)
            cols = F.unfold(x, self.k, padding=self.k // 2).reshape(n, c, kk, h * w) * a
            y = torch.matmul(self.kernel, cols.reshape(n, c * kk, h * w)).reshape(n, self.cout, h, w)
            return y + self.glob(x.mean((2, 3), keepdim=True))

    class LagNetT(nn.Module):
        def __init__(self, bands: int, ch: int = 32, blocks: int = 5) -> None:
            super().__init__()
            self.head = LocalAdaptiveConv(bands + 1, ch)
            self.blocks = nn.ModuleList(
                nn.ModuleList([LocalAdaptiveConv(ch, ch), LocalAdaptiveConv(ch, ch)]) for _ in range(blocks)
            )
            self.tail = LocalAdaptiveConv(ch, bands)

        def forward(self, lrms: Any, pan: Any, lms: Any) -> Any:
            x = F.relu(self.head(torch.cat([pan, lms], 1)))
            for first, second in self.blocks:
                x = x + second(F.relu(first(x)))
            return lms + self.tail(x)

    return {
        "pnn": Pnn, "pannet": PanNetT, "dicnn": DiCnn, "msdcnn": MsdCnn,
        "drpnn": DrpNn, "fusionnet": FusionNetT, "lagnet": LagNetT,
    }  # fmt: skip


def torch_step(
    torch: Any, name: str, arrays: dict[str, Any], lr: float, *, device: str = "cpu", bf16: bool = False
) -> tuple[Callable[[], None], int]:
    """(one Adam update of the PyTorch network ``name`` on NHWC NumPy ``arrays``, its parameter count).

    ``device``: ``"cpu"`` or ``"cuda"``. ``bf16``: forward and loss under
    ``torch.autocast(dtype=torch.bfloat16)``, weights and inputs in ``channels_last`` (the
    usual fast recipe on NVIDIA GPUs); the weights and Adam state stay float32.
    """
    torch.manual_seed(0)
    bands = arrays["lms"].shape[-1]
    net = torch_networks(torch)[name](bands).train().to(device)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    net = net.to(memory_format=layout)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    t = {k: torch.from_numpy(v.transpose(0, 3, 1, 2).copy()).to(device).contiguous(memory_format=layout)
         for k, v in arrays.items()}  # fmt: skip
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(t["lrms"], t["pan"], t["lms"]).float(), t["gt"])
        loss.backward()
        opt.step()
        sync()

    return step, sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- JAX side


def jax_step(name: str, arrays: dict[str, Any], lr: float, precision: str = "fp32") -> tuple[Callable[[], None], int, float]:
    """(one update with the trainer's jitted step for ``name``, parameter count, compile seconds).

    ``precision``: ``"fp32"`` or ``"bf16"`` (the trainer's mixed-precision policy)."""
    import jax
    import optax

    from pansharp_jax.models import registry
    from pansharp_jax.train import parallel
    from pansharp_jax.train.precision import get_policy
    from pansharp_jax.train.state import TrainState
    from pansharp_jax.train.step import make_train_step

    cfg = registry.default_config(name)
    cfg.bands = int(arrays["lms"].shape[-1])
    model = registry.build_model(cfg)
    mesh = parallel.make_mesh()
    ex = {k: v[:1] for k, v in arrays.items()}
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ex["lrms"], ex["pan"], ex["lms"])["params"]
    n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
    state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(lr), rng=jax.random.PRNGKey(1))
    box = {"state": state}
    batch = parallel.shard_batch(dict(arrays), mesh)
    key = jax.random.PRNGKey(2)

    t0 = time.perf_counter()
    compiled = make_train_step(mesh, loss="l2", policy=get_policy(precision)).lower(box["state"], batch, key).compile()
    compile_s = time.perf_counter() - t0

    def step() -> None:
        box["state"], metrics = compiled(box["state"], batch, key)  # the state is donated
        jax.block_until_ready((box["state"].params, metrics))

    return step, n_params, compile_s


def timed(step: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- main


def make_arrays(batch: int, size: int, bands: int, ratio: int = 4) -> dict[str, Any]:
    """Random NHWC float32 inputs on [0, 1]: lrms, pan, lms = interp23tap(lrms), gt."""
    import jax.numpy as jnp
    import numpy as np

    from pansharp_jax.data import wald

    rng = np.random.default_rng(0)
    lrms = rng.uniform(0.05, 0.6, (batch, size // ratio, size // ratio, bands)).astype(np.float32)
    pan = rng.uniform(0.05, 0.6, (batch, size, size, 1)).astype(np.float32)
    lms = np.asarray(wald.interp23tap(jnp.asarray(lrms), ratio), np.float32)
    gt = np.clip(lms + rng.normal(0.0, 0.02, lms.shape), 0.0, 1.0).astype(np.float32)
    return {"lrms": lrms, "pan": pan, "lms": lms, "gt": gt}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(ALL_MODELS), help="comma-separated (default: all seven)")
    p.add_argument("--steps", type=int, default=10, help="timed updates per model and framework (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed updates after compilation")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64, help="PAN patch side (MS side = size / 4)")
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both frameworks (0: defaults)")
    p.add_argument("--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="gpu: PyTorch on CUDA (JAX: its default device)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "both"),
                   help="bf16: JAX mixed precision and PyTorch autocast bf16 + channels_last; both: two column groups")
    args = p.parse_args(argv)
    args.models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in ALL_MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ALL_MODELS)}")
    if args.size % 4 or args.size < 24:
        p.error("--size must be a multiple of 4 and at least 24")
    if args.steps < 1 or args.batch < 1:
        p.error("--steps and --batch must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pansharp_jax.runtime import use_low_memory_cpu_scheduler

    use_low_memory_cpu_scheduler()  # before the first JAX computation (see pansharp_jax.runtime)
    if args.threads > 0 and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.threads]
        os.sched_setaffinity(0, cpus)  # before JAX creates its CPU client and thread pool

    import jax

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and args.threads > 0:
        torch.set_num_threads(args.threads)

    dev = jax.devices()[0]
    print(f"JAX {jax.__version__}: device {dev.platform} ({getattr(dev, 'device_kind', dev)}), "
          f"{jax.device_count()} device(s)")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if torch is None:
        print("PyTorch: skipped (torch is not importable)")
    elif args.no_torch:
        print("PyTorch: skipped (--no-torch)")
    else:
        print(f"PyTorch {torch.__version__}: {torch.get_num_threads()} CPU thread(s)")
    print(f"CPUs usable: {cpus}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"batch {args.batch}, PAN {args.size}x{args.size}, MS {args.size // 4}x{args.size // 4}, "
          f"{args.bands} bands, MSE + Adam(lr={args.lr:g}); median of {args.steps} steps after {args.warmup} warm-up\n",
          flush=True)

    arrays = make_arrays(args.batch, args.size, args.bands)
    use_torch = torch is not None and not args.no_torch
    tdev = "cpu"
    if use_torch and args.device == "gpu":
        if torch.cuda.is_available():
            tdev = "cuda"
            print(f"PyTorch device: {torch.cuda.get_device_name(0)}")
        else:
            print("PyTorch: CUDA is not available, its side runs on the CPU")
    precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
    header, rule = "| model | params |", "|---|---:|"
    for prec in precisions:
        header += f" JAX {prec} compile s | JAX {prec} ms/step | JAX {prec} img/s |"
        rule += "---:|---:|---:|"
        if use_torch:
            torch_label = "PyTorch fp32" if prec == "fp32" else "PyTorch bf16+CL"
            header += f" {torch_label} ms/step | {torch_label} img/s | {torch_label} / JAX {prec} |"
            rule += "---:|---:|---:|"
    rows = [header, rule]
    print(header + "\n" + rule, flush=True)
    for name in args.models:
        row = f"| {name} |"
        for prec in precisions:
            jstep, j_params, compile_s = jax_step(name, arrays, args.lr, prec)
            tstep = None
            if use_torch:
                tstep, t_params = torch_step(torch, name, arrays, args.lr, device=tdev, bf16=prec == "bf16")
                if t_params != j_params:
                    print(f"warning: {name}: PyTorch has {t_params:,} parameters, Flax {j_params:,}", file=sys.stderr)
            for _ in range(args.warmup):
                jstep()
                if tstep is not None:
                    tstep()
            # alternate the two frameworks step by step, so that a change in the machine's load
            # during the measurement hits both alike
            jt, tt = [], []
            for _ in range(args.steps):
                jt.append(timed(jstep))
                if tstep is not None:
                    tt.append(timed(tstep))
            j = statistics.median(jt)
            if prec == precisions[0]:
                row += f" {j_params:,} |"
            row += f" {compile_s:.1f} | {j * 1e3:.2f} | {args.batch / j:.1f} |"
            if tstep is not None:
                t = statistics.median(tt)
                row += f" {t * 1e3:.2f} | {args.batch / t:.1f} | {t / j:.2f}x |"
        rows.append(row)
        print(row, flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if use_torch:
        print("PyTorch / JAX = PyTorch time per step / JAX time per step (> 1: JAX is faster).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
