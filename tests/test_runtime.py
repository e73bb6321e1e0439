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
