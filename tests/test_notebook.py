"""The quickstart notebook runs end to end (tiny parameters, CPU) and is committed clean.

The notebook is executed with nbclient in a temporary working directory, on a kernel that
runs this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``, so neither a
system-wide ``python3`` kernel nor the network is involved). The cell tagged ``parameters``
is followed by an injected cell that shrinks the training, as papermill does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
KERNEL_NAME = "pansharp-jax-test"
TINY_PARAMETERS = "TRAIN_STEPS = 3\nCHANNELS = 4\nRES_BLOCKS = 1\nBATCH_SIZE = 8\n"
METHOD_LABELS = ("GSA", "MTF-GLP-FS", "FusionNet")


def _cells() -> list[dict]:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def test_notebook_is_committed_without_outputs():
    cells = _cells()
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"code cells {dirty} of {NOTEBOOK.name} have outputs: clear them before committing"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    for name in ("TRAIN_STEPS", "CHANNELS", "RES_BLOCKS"):
        assert name in "".join(tagged[0]["source"]), f"the parameters cell does not set {name}"


def _kernelspec(root: Path) -> None:
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "pansharp_jax tests",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )


def _outputs_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        for value in out.get("data", {}).values():
            if isinstance(value, str):
                parts.append(value)
    return "\n".join(parts)


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")
    import nbformat
    from nbclient import NotebookClient

    jupyter_dir = tmp_path / "jupyter"
    _kernelspec(jupyter_dir)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    workdir = tmp_path / "work"
    workdir.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(TINY_PARAMETERS)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)

    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=300,
        startup_timeout=120,
        allow_errors=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on the first error

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    table = next(c for c in nb.cells if "metric-table" in c.metadata.get("tags", []))
    text = _outputs_text(table)
    for label in METHOD_LABELS:
        assert label in text, f"{label} missing from the metric table output:\n{text}"
    for metric in ("Q2n", "SAM", "ERGAS"):
        assert metric in text
    out = workdir / "pansharp_quickstart"
    assert (out / "grid.png").stat().st_size > 0
    rows = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["results"]
    assert [r["label"] for r in rows] == list(METHOD_LABELS)
