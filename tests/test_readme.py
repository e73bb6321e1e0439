"""The README's Python snippets run as written (each on its own, from the repository root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _snippets() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for m in re.finditer(r"^( *)```python\n(.*?)^\1```", text, flags=re.S | re.M):
        line = text[: m.start()].count("\n") + 1
        out.append((line, textwrap.dedent(m.group(2))))
    return out


def test_readme_has_snippets() -> None:
    assert len(_snippets()) >= 5


@pytest.mark.parametrize(("line", "code"), _snippets(), ids=[f"line{ln}" for ln, _ in _snippets()])
def test_readme_snippet_runs(line: int, code: str) -> None:
    if not (os.environ.get("PANSHARP_DATA") and os.environ.get("PANSHARP_WEIGHTS")):
        pytest.skip("README snippets read scenes and weights: set PANSHARP_DATA and PANSHARP_WEIGHTS")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"README snippet at line {line} failed:\n{res.stderr[-3000:]}"
