"""Process-level XLA settings, applied by the entry points (CLI, trainer, experiments, benchmarks).

XLA reads ``XLA_FLAGS`` once, when JAX starts its backends (the first computation), so these
helpers must run before that; they are not applied on ``import pansharp_jax`` (a library
import should not change the process), only by the commands that run whole jobs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping

LOW_MEMORY_CPU_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
_FLAG_NAME = "xla_cpu_enable_concurrency_optimized_scheduler"


def use_low_memory_cpu_scheduler(environ: MutableMapping[str, str] | None = None) -> bool:
    """Ask XLA's CPU backend to order operations for low memory rather than for concurrency.

    By default XLA's CPU scheduler starts independent operations early so they can run in
    parallel, which keeps many large activations alive at once. On whole scenes and large
    training crops of the state-space models that is most of the memory: LE-Mamba ``tiny``
    on a 640 x 640 PAN plans 3.3 GiB of temporaries with the default and 1.8 GiB with this
    flag; its 128 x 128 training step 1.9 GiB and 0.9 GiB (with ``remat_blocks``). It has
    no effect on GPU or TPU.

    Args:
      environ: the environment to edit (default ``os.environ``).

    Returns:
      True when the flag was added to ``XLA_FLAGS``; False when the user already set it (their
      value wins) or JAX's backends are already running (then a warning says it came too late).
    """
    return _add_xla_flag(_FLAG_NAME, LOW_MEMORY_CPU_FLAG, environ, "use_low_memory_cpu_scheduler")


FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"
FAST_COMPILE_ENV = "PANSHARP_FAST_COMPILE"


def use_fast_compile(environ: MutableMapping[str, str] | None = None) -> bool:
    """Compile with the backend's (LLVM's) code optimisations off: XLA:CPU compiles faster.

    Much of XLA:CPU's compile time is LLVM optimising the generated kernels. Without it the
    numbers stay the same IEEE float arithmetic (no fast-math), only the order of some
    roundings can change. Measured on a 2-core CPU (README, "Compile time"): train steps
    compile in 18-55 % less time (LE-Mamba ``small`` at batch 32, before its scan directions
    were vmapped: 52 CPU s instead of 112-123), and run 1.1-7x slower. So it pays only where compiling dominates: the test suite, smoke
    runs, notebooks on tiny configs; never for real training. The CLI and the trainer apply it
    when ``$PANSHARP_FAST_COMPILE`` is ``1``.

    Args / returns: as :func:`use_low_memory_cpu_scheduler`.
    """
    return _add_xla_flag("xla_backend_optimization_level", FAST_COMPILE_FLAG, environ, "use_fast_compile")


def fast_compile_requested(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether ``$PANSHARP_FAST_COMPILE`` asks for :func:`use_fast_compile` (``1``/``on``/``true``/``yes``)."""
    env = os.environ if environ is None else environ
    return env.get(FAST_COMPILE_ENV, "").strip().lower() in ("1", "on", "true", "yes")


def _add_xla_flag(name: str, flag: str, environ: MutableMapping[str, str] | None, caller: str) -> bool:
    """Append ``flag`` to ``XLA_FLAGS`` unless a value of ``name`` is already there (see callers)."""
    env = os.environ if environ is None else environ
    flags = env.get("XLA_FLAGS", "")
    if name in flags:
        return False
    if environ is None and _backends_running():
        warnings.warn(
            f"{caller}: JAX's backends already started, XLA_FLAGS is no longer read; "
            "call it before the first JAX computation",
            stacklevel=3,
        )
        return False
    env["XLA_FLAGS"] = f"{flags} {flag}".strip()
    return True


def _backends_running() -> bool:
    try:
        from jax._src import xla_bridge  # private, but the only way to ask

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # other JAX versions: assume not started
        return False


COMPILATION_CACHE_ENV = "PANSHARP_COMPILATION_CACHE"
_CACHE_OFF = ("0", "off", "false", "no", "none")


def default_compilation_cache_dir(environ: MutableMapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/pansharp_jax/xla`` (``~/.cache/pansharp_jax/xla`` when unset)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pansharp_jax", "xla")


def enable_compilation_cache(directory: str | None = None, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Switch on JAX's persistent compilation cache, so a second run skips XLA compilation.

    Compiling a train step is most of the start-up time of a short run (tens of seconds to
    minutes for the attention and state-space models on a CPU); with the cache, an identical
    program (same model, shapes, flags, JAX version and device) is loaded from disk instead.
    The entry points call this (``pansharp`` and ``python -m pansharp_jax.train``); a library
    import does not.

    Where: ``directory``, else ``$PANSHARP_COMPILATION_CACHE``, else
    :func:`default_compilation_cache_dir`. ``PANSHARP_COMPILATION_CACHE=0`` (or ``off``)
    turns it off. A cache directory the user already gave JAX (``JAX_COMPILATION_CACHE_DIR``
    or ``jax.config``) wins. Programs that compile in under a second are not stored (JAX's
    ``jax_persistent_cache_min_compile_time_secs``, left at its default).

    Returns:
      The cache directory in use, or None when it is off or the directory cannot be created
      (then a warning says why; running without the cache is always correct).
    """
    import jax

    env = os.environ if environ is None else environ
    given = jax.config.jax_compilation_cache_dir
    if given:
        return str(given)
    value = directory if directory is not None else env.get(COMPILATION_CACHE_ENV, "")
    if value.strip().lower() in _CACHE_OFF:
        return None
    path = value or default_compilation_cache_dir(env)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache off: cannot create {path!r} ({e})", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def configure_entry_point() -> None:
    """The process settings of the commands that run whole jobs (``pansharp``, ``python -m
    pansharp_jax.train``), before their first JAX computation: the low-memory CPU scheduler,
    fast compiles when ``$PANSHARP_FAST_COMPILE`` asks for them, and the persistent
    compilation cache."""
    use_low_memory_cpu_scheduler()
    if fast_compile_requested():
        use_fast_compile()
    enable_compilation_cache()
