"""Shared builder for ``train_memory.py`` and ``compile_time.py``: the trainer's jitted train step
of a registry model, lowered on abstract inputs and compiled (no data, no parameters allocated).

:func:`compile_train_step` builds ``registry.default_config(name)`` (``bands`` set to 8 except for
the MHIF models, which keep their own bands, guide and ratio), an abstract
:class:`~pansharp_jax.train.state.TrainState` via ``jax.eval_shape`` (Adam, as the default
trainer config), an abstract batch of ``size`` x ``size`` guide patches, and lowers and compiles
:func:`pansharp_jax.train.step.make_train_step` (L1 loss; ``own_objective`` for models with a
``training_loss``, as the trainer does). XLA's ``memory_analysis()`` of the compiled executable
gives the planned temporaries, arguments and outputs in bytes.

:func:`top_buffers` reads XLA's buffer assignment (dumped with ``--xla_dump_to``, see
:func:`enable_buffer_dump`) and lists the largest temporary buffers with the JAX operation that
made each (``op_name`` metadata of the optimised HLO), so the cause of the memory is visible.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import time
from typing import Any

# models whose inputs are an LR hyperspectral image and an RGB HR-MSI guide (their own shapes)
MHIF_MODELS = ("infn", "feinfn")
GIB = float(1 << 30)


@dataclasses.dataclass
class StepReport:
    """One compiled train step: sizes in bytes; lower + compile time in seconds, wall clock and
    this process's CPU time (all threads; on a shared machine the wall clock grows with the load)."""

    model: str
    batch: int
    size: int
    bands: int
    temp: int
    argument: int
    output: int
    compile_s: float
    compile_cpu_s: float = 0.0
    compiled: Any = None
    make_inputs: Any = None  # () -> (state, batch, key): concrete arguments of ``compiled``

    @property
    def per_sample_gib(self) -> float:
        """Planned temporaries per sample, GiB."""
        return self.temp / GIB / self.batch


def enable_buffer_dump(directory: str) -> None:
    """Ask XLA to write each compiled module's buffer assignment under ``directory``.

    Must run before JAX starts its backends (XLA reads ``XLA_FLAGS`` once).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_dump_to={directory} --xla_dump_hlo_as_text".strip()


def model_config(name: str, bands: int = 8, overrides: dict[str, Any] | None = None) -> Any:
    """``registry.default_config(name)`` with ``bands`` (kept for MHIF models) and ``overrides``."""
    from pansharp_jax.models import registry

    cfg = registry.default_config(name)
    if name not in MHIF_MODELS:
        cfg.bands = bands
    for key, value in (overrides or {}).items():
        cfg[key] = value
    return cfg


def abstract_inputs(cfg: Any, batch: int, size: int) -> dict[str, Any]:
    """ShapeDtypeStructs of a training batch: lrms (b, size/r, size/r, C), pan (b, size, size, guide), lms, gt."""
    import jax
    import jax.numpy as jnp

    ratio = int(cfg.get("ratio", 4))
    if size % ratio:
        raise ValueError(f"size {size} must be a multiple of the ratio {ratio}")
    c, g = int(cfg.bands), int(cfg.get("guide_bands", 1))
    f32 = jnp.float32
    hr = jax.ShapeDtypeStruct((batch, size, size, c), f32)
    return {
        "lrms": jax.ShapeDtypeStruct((batch, size // ratio, size // ratio, c), f32),
        "pan": jax.ShapeDtypeStruct((batch, size, size, g), f32),
        "lms": hr,
        "gt": hr,
    }


def compile_train_step(
    name: str, batch: int, *, size: int = 64, bands: int = 8, overrides: dict[str, Any] | None = None
) -> StepReport:
    """Lower and compile ``name``'s train step at ``batch`` x ``size`` x ``size``; see the module docstring."""
    import jax
    import optax

    from pansharp_jax.models import registry
    from pansharp_jax.train import parallel
    from pansharp_jax.train.loop import model_hooks
    from pansharp_jax.train.state import TrainState
    from pansharp_jax.train.step import make_train_step

    cfg = model_config(name, bands, overrides)
    model = registry.build_model(cfg)
    own_objective, _ = model_hooks(model)
    data = abstract_inputs(cfg, batch, size)
    one = {k: jax.ShapeDtypeStruct((1,) + v.shape[1:], v.dtype) for k, v in data.items()}

    def create(key: jax.Array, ex: dict[str, jax.Array]) -> TrainState:
        init_key, run_key = jax.random.split(key)
        params = model.init({"params": init_key}, ex["lrms"], ex["pan"], ex["lms"], train=False)["params"]
        return TrainState.create(apply_fn=model.apply, params=params, tx=optax.adam(1e-4), rng=run_key)

    key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32)
    state = jax.eval_shape(create, key, one)
    mesh = parallel.make_mesh()
    step = make_train_step(mesh, loss="l1", own_objective=own_objective)
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = step.lower(state, data, key).compile()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    mem = compiled.memory_analysis()

    def make_inputs() -> tuple[Any, dict[str, Any], jax.Array]:
        rng = jax.random.key_data(jax.random.key(0))
        one_real = {k: jax.numpy.full(v.shape, 0.5, v.dtype) for k, v in one.items()}
        real_state = jax.jit(create)(rng, one_real)
        batch_real = {k: jax.random.uniform(jax.random.key(i + 1), v.shape, v.dtype) for i, (k, v) in enumerate(data.items())}
        return real_state, batch_real, rng

    return StepReport(
        name, batch, size, int(cfg.bands), int(mem.temp_size_in_bytes), int(mem.argument_size_in_bytes),
        int(mem.output_size_in_bytes), seconds, cpu_seconds, compiled, make_inputs,
    )  # fmt: skip


def time_steps(report: StepReport, steps: int) -> float:
    """Median wall seconds of one call of ``report.compiled`` on random inputs (``steps`` timed
    calls after one untimed; the state is donated, so each call takes the previous one's)."""
    import jax
    import numpy as np

    state, batch, rng = report.make_inputs()
    state, _ = report.compiled(state, batch, rng)
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = report.compiled(state, batch, rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


_VALUE = re.compile(r"value: <\d+ ([^ @>]+)[^>]*> \(size=(\d+),offset=(\d+)\): (\S+)")
_OPNAME = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"")


def _op_names(hlo_text: str) -> dict[str, str]:
    names = {}
    for line in hlo_text.splitlines():
        m = _OPNAME.match(line)
        if m:
            names[m.group(1)] = m.group(2)
    return names


def top_buffers(dump_dir: str, hlo_text: str, k: int) -> list[tuple[int, str, str, str]]:
    """The ``k`` largest values in the temporary allocations of the newest buffer assignment
    dumped under ``dump_dir``: (bytes, HLO value, shape, JAX op_name), largest first."""
    files = sorted(glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt")), key=os.path.getmtime)
    if not files:
        raise FileNotFoundError("no buffer assignment dumped (XLA_FLAGS --xla_dump_to must be set before JAX starts)")
    names = _op_names(hlo_text)
    out, in_temp = [], False
    with open(files[-1]) as f:
        for line in f:
            if line.startswith("allocation "):
                in_temp = "preallocated-temp" in line or ("parameter" not in line and "constant" not in line
                                                         and "output" not in line and "thread-local" not in line)
                continue
            m = _VALUE.search(line)
            if m and in_temp:
                value = m.group(1)
                out.append((int(m.group(2)), value, m.group(4), names.get(value, "")))
    out.sort(key=lambda t: -t[0])
    return out[:k]


_PEAK_ENTRY = re.compile(r"── (.+?) \(\s*[\d.]+%, total: ([\d ]+) bytes")
_MODEL_PREFIX = re.compile(r"^jit\([^)]*\)/(transpose\()?jvp\([^)]*\)\)?/")


def peak_breakdown(dump_dir: str, k: int) -> tuple[int, list[tuple[int, int, str]]]:
    """XLA's live buffers at the planned peak (the dumped live-range report), grouped by the
    JAX operation with the first module path component (e.g. ``stage0`` or ``enc0_1``) dropped,
    so the same op in every layer adds up: (peak bytes, [(bytes, buffers, group)]) largest first.
    Groups starting with ``bwd:`` are buffers of the backward pass; XLA-made copies are ``copy``."""
    files = sorted(glob.glob(os.path.join(dump_dir, "*live-range.txt")), key=os.path.getmtime)
    if not files:
        return 0, []
    text = open(files[-1]).read()
    start = text.find("Stack trace breakdown for peak usage:")
    if start < 0:
        return 0, []
    head = text[start:].splitlines()[0]
    peak = int(re.sub(r"\D", "", head.split(":", 1)[1]) or 0)
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    for m in _PEAK_ENTRY.finditer(text[start:]):
        name, size = m.group(1).strip(), int(m.group(2).replace(" ", ""))
        pm = _MODEL_PREFIX.match(name)
        if pm:
            rest = name[pm.end():]
            rest = rest.split("/", 1)[1] if "/" in rest else rest
            group = ("bwd: " if pm.group(1) else "") + rest
        else:
            group = re.sub(r"\.\d+$", "", name.split("{")[0])
        sizes[group] = sizes.get(group, 0) + size
        counts[group] = counts.get(group, 0) + 1
    rows = sorted(((v, counts[g], g) for g, v in sizes.items()), reverse=True)
    return peak, rows[:k]
