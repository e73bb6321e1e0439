"""The process-level XLA settings of pansharp_jax.runtime."""

from __future__ import annotations

import os
import subprocess
import sys

from pansharp_jax.runtime import LOW_MEMORY_CPU_FLAG, use_low_memory_cpu_scheduler


def test_flag_is_added_once_and_a_user_setting_wins() -> None:
    env: dict[str, str] = {}
    assert use_low_memory_cpu_scheduler(env) is True
    assert env["XLA_FLAGS"] == LOW_MEMORY_CPU_FLAG
    assert use_low_memory_cpu_scheduler(env) is False and env["XLA_FLAGS"] == LOW_MEMORY_CPU_FLAG
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert use_low_memory_cpu_scheduler(env) is True
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2", LOW_MEMORY_CPU_FLAG]
    mine = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    assert use_low_memory_cpu_scheduler(mine) is False
    assert mine["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


def test_xla_accepts_the_flag_and_late_calls_warn() -> None:
    # a fresh process: XLA aborts on an unknown flag, so starting the backend proves it is known;
    # once the backend runs, the helper says it came too late and leaves XLA_FLAGS alone
    code = (
        "import warnings, os, jax, jax.numpy as jnp\n"
        "from pansharp_jax.runtime import use_low_memory_cpu_scheduler\n"
        "assert use_low_memory_cpu_scheduler()\n"
        "print(float(jnp.ones(3).sum()))\n"
        "flags = os.environ['XLA_FLAGS']\n"
        "os.environ['XLA_FLAGS'] = ''\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    assert use_low_memory_cpu_scheduler() is False\n"
        "assert any('too late' in str(x.message) or 'already started' in str(x.message) for x in w), w\n"
        "assert os.environ['XLA_FLAGS'] == ''\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["3.0", "ok"]


def test_compilation_cache_directory_choice_and_off_switch(tmp_path) -> None:
    from pansharp_jax.runtime import COMPILATION_CACHE_ENV, default_compilation_cache_dir

    assert default_compilation_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "pansharp_jax" / "xla")
    code = (
        "import os, sys, jax\n"
        "from pansharp_jax.runtime import enable_compilation_cache\n"
        "print(enable_compilation_cache())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"))
    for value, expected in (("off", "None"), ("0", "None"), (str(tmp_path / "mine"), str(tmp_path / "mine")),
                            ("", str(tmp_path / "xdg" / "pansharp_jax" / "xla"))):  # fmt: skip
        env[COMPILATION_CACHE_ENV] = value
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.split()[-1] == expected
        assert expected == "None" or os.path.isdir(expected)


def test_a_second_process_loads_the_program_from_the_cache(tmp_path) -> None:
    # the first process compiles and stores; the second finds it (JAX's own hit/miss events)
    code = (
        "import jax, jax.numpy as jnp\n"
        "from jax import monitoring\n"
        "from pansharp_jax.runtime import enable_compilation_cache\n"
        "events = []\n"
        "monitoring.register_event_listener(lambda name, **kw: events.append(name))\n"
        "enable_compilation_cache()\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n"
        "f = jax.jit(lambda x: jnp.sin(x) @ x.T + 3.0)\n"
        "f(jnp.ones((7, 7))).block_until_ready()\n"
        "print('hit' if any('cache_hits' in e for e in events) else 'miss')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", PANSHARP_COMPILATION_CACHE=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120) for _ in range(2)]
    for res in runs:
        assert res.returncode == 0, res.stderr[-2000:]
    assert [r.stdout.split()[-1] for r in runs] == ["miss", "hit"]
    assert any((tmp_path / "cache").iterdir())


def test_fast_compile_flag_once_env_switch_and_a_user_level_wins() -> None:
    from pansharp_jax.runtime import FAST_COMPILE_FLAG, fast_compile_requested, use_fast_compile

    env: dict[str, str] = {"XLA_FLAGS": LOW_MEMORY_CPU_FLAG}
    assert use_fast_compile(env) is True and env["XLA_FLAGS"].split() == [LOW_MEMORY_CPU_FLAG, FAST_COMPILE_FLAG]
    assert use_fast_compile(env) is False and env["XLA_FLAGS"].split() == [LOW_MEMORY_CPU_FLAG, FAST_COMPILE_FLAG]
    mine = {"XLA_FLAGS": "--xla_backend_optimization_level=2"}
    assert use_fast_compile(mine) is False and mine["XLA_FLAGS"] == "--xla_backend_optimization_level=2"
    for value, want in (("1", True), ("on", True), (" Yes ", True), ("0", False), ("", False), ("off", False)):
        assert fast_compile_requested({"PANSHARP_FAST_COMPILE": value}) is want, value
    assert fast_compile_requested({}) is False


def test_fast_compile_computes_the_same_numbers_and_the_entry_point_applies_it() -> None:
    # two fresh processes (XLA reads its flags once): a conv, a matmul and a reduction in float32
    code = (
        "import os, jax, jax.numpy as jnp, numpy as np\n"
        "from pansharp_jax.runtime import configure_entry_point\n"
        "configure_entry_point()\n"
        "x = jax.random.normal(jax.random.key(0), (2, 32, 32, 8))\n"
        "w = jax.random.normal(jax.random.key(1), (3, 3, 8, 16))\n"
        "y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
        "z = jnp.tanh(y.reshape(-1, 16) @ w.reshape(72, 16).T[:16]).sum(0)\n"
        "print('level0' if 'optimization_level=0' in os.environ.get('XLA_FLAGS', '') else 'default')\n"
        "print(' '.join(repr(float(v)) for v in z))\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PANSHARP_FAST_COMPILE")}
    base.update(JAX_PLATFORMS="cpu", PANSHARP_COMPILATION_CACHE="off")
    out = {}
    for switch in ("0", "1"):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, "PANSHARP_FAST_COMPILE": switch}, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        mode, values = res.stdout.splitlines()[-2:]
        out[mode] = [float(v) for v in values.split()]
    assert set(out) == {"level0", "default"}
    import numpy as np

    np.testing.assert_allclose(out["level0"], out["default"], rtol=1e-5, atol=1e-4)
