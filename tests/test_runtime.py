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
