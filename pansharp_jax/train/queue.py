"""Train several configs one after the other in subprocesses, recording each run in a JSON summary.

Used by the experiment scripts that give many models a short run each
(``experiments/self_trained_wv3.py``, ``experiments/cave_table.py``): one failing or slow model
is recorded and stopped, the others still run, and :func:`finished` lets a rerun skip the runs
already done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def train_command(config: str | Path, workdir: str | Path, overrides: Sequence[str]) -> list[str]:
    """``python -m pansharp_jax.cli train --config CONFIG --workdir W OVERRIDES...`` with this interpreter."""
    return [sys.executable, "-m", "pansharp_jax.cli", "train", "--config", str(config), "--workdir", str(workdir),
            *overrides]  # fmt: skip


def run_recorded(name: str, cmd: Sequence[str], summary_path: Path, timeout: float, **record: Any) -> bool:
    """Run ``cmd``; store ``{ok, seconds, tail, **record}`` under ``name`` in ``summary_path`` (JSON).

    ``timeout`` in seconds: the run is stopped and recorded as failed past it. Returns ``ok``.
    Progress lines go to stderr.
    """
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    print(f"{name}: running ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
        ok, tail = done.returncode == 0, (done.stdout + done.stderr).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        ok, tail = False, [f"stopped after {timeout:.0f} s"]
    summary[name] = {**record, "ok": ok, "seconds": round(time.perf_counter() - t0, 1), "tail": tail}
    print(f"{name}: {'ok' if ok else 'FAILED'} in {summary[name]['seconds']} s; {' / '.join(tail)[-300:]}",
          file=sys.stderr, flush=True)  # fmt: skip
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2))
    return ok


def finished(summary_path: Path, name: str, **record: Any) -> bool:
    """Whether ``summary_path`` records ``name`` as a successful run with these ``record`` values."""
    if not summary_path.is_file():
        return False
    entry = json.loads(summary_path.read_text()).get(name, {})
    return bool(entry.get("ok")) and all(entry.get(k) == v for k, v in record.items())
