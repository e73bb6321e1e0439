"""``pansharp analyze`` end to end (in process), and the frequency-analysis notebook.

The demo scene (written to tmp_path) is analysed with EXP, a linear method: its product is
the 23-tap interpolation of the LRMS, so its non-linear part must vanish and its MS path
must keep constants (DC gain 1 after dividing by ratio**2). FSDS values in the report
are checked against a plain NumPy port of the authors' formula.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from pansharp_jax.cli import main
from pansharp_jax.data.demo import write_demo_scene

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "frequency_analysis.ipynb"
KERNEL_NAME = "pansharp-jax-test-frequency"
FIGS = ("impulse_responses.png", "spectra.png", "radial_profiles.png")


def fsds_reference(pred: np.ndarray, target: np.ndarray) -> float:
    """FSDS of one band (H, W) from the paper's recipe, NumPy only."""

    def halves(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (x - x.mean()) / x.std()
        if x.shape[0] % 2:
            x = np.vstack([x, np.zeros((1, x.shape[1]))])
        f = np.fft.rfft2(x)
        n = f.shape[0] // 2
        return f[:n].cumsum(0).cumsum(1), f[n:][::-1].cumsum(0).cumsum(1)

    (p1, p2), (t1, t2) = halves(pred), halves(target)
    err = (np.abs(p1 - t1) ** 2).sum() + (np.abs(p2 - t2) ** 2).sum()
    return float(-10 * np.log10(err / ((np.abs(t1) ** 2).sum() + (np.abs(t2) ** 2).sum())))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scenes")
    return {"rr": write_demo_scene(d / "demo_rr.npz", "rr"), "fr": write_demo_scene(d / "demo_fr.npz", "fr")}


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_analyze_exp_writes_figures_and_an_exact_report(capsys, scenes, tmp_path):
    out = tmp_path / "exp"
    rc, stdout, err = run(capsys, "analyze", "-m", "exp", "-i", scenes["rr"], "-o", out, "--crop", 192, "--pan-phases", "one")
    assert rc == 0, err
    assert "EXP" in stdout and "report.json" in stdout
    for name in (*FIGS, "fsds_bands.png"):
        img = mpimg.imread(out / name)
        assert img.shape[0] > 200 and img.shape[1] > 400, name
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["method"] == "exp" and rep["shape"] == [192, 192] and rep["bands"] == 4
    h = rep["hyra"]
    assert h["linearization"] == "derivative" and h["size"] == 65
    assert h["hf_share_nonlinear"] < 1e-6  # EXP is linear
    assert h["ms_dc_gain"] == pytest.approx(1.0, abs=1e-6)  # interpolation keeps constants
    assert h["pan_gain_hf_mean"] == pytest.approx(0.0, abs=1e-9)  # EXP ignores the PAN
    # FSDS per band against an independent port, on EXP's product (the 23-tap upsampling)
    from pansharp_jax.analysis import crop_scene
    from pansharp_jax.data.io import load_scene
    from pansharp_jax.methods import resolve

    scene = crop_scene(load_scene(scenes["rr"]), 192)
    product = resolve("exp").fuse(scene)
    expected = [fsds_reference(product[..., b], scene.gt[..., b]) for b in range(4)]
    np.testing.assert_allclose(rep["fsds"]["per_band"], expected, atol=1e-8)
    assert rep["fsds"]["mean"] == pytest.approx(np.mean(expected), abs=1e-8)
    assert set(rep["metrics"]) >= {"Q2n", "SAM", "ERGAS"}


def test_analyze_without_gt_has_no_fsds(capsys, scenes, tmp_path):
    out = tmp_path / "fr"
    rc, _, err = run(capsys, "analyze", "-m", "exp", "-i", scenes["fr"], "-o", out, "--crop", 128, "--size", 33, "--pan-phases", "one")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "fsds" not in rep and not (out / "fsds_bands.png").exists()
    assert sorted(rep["figures"]) == sorted(FIGS)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("-m", "exp", "--crop", "8"), "crop must be at least 16"),
        (("-m", "exp", "--size", "32"), "--size must be an odd number"),
        (("-m", "no_such_method"), "unknown method"),
        (("-m", "gsa", "--crop", "128", "--size", "33", "--pan-phases", "one"), "--background scene"),
        (("-m", "exp", "--what", "stages"), "invalid choice"),
    ],
)
def test_analyze_errors_are_one_line_exit_2(capsys, scenes, tmp_path, extra, needle):
    out = tmp_path / "never"
    rc, _, err = run(capsys, "analyze", "-i", scenes["rr"], "-o", out, *extra)
    assert rc == 2
    assert err.startswith("pansharp: error:") and needle in err and err.count("\n") == 1, err
    assert not out.exists()  # nothing left behind


def test_notebook_is_committed_clean_with_one_parameters_cell():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"code cells {dirty} of {NOTEBOOK.name} have outputs: clear them before committing"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for name in ("CROP", "METHODS", "SIZE", "SR_STEPS"):
        assert name in "".join(tagged[0]["source"])


@pytest.mark.slow
def test_frequency_notebook_executes(tmp_path, monkeypatch):
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[test]')")
    import nbformat
    from nbclient import NotebookClient

    spec = tmp_path / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "pansharp_jax tests", "language": "python"}), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("PANSHARP_DATA", raising=False)  # the embedded demo scene: no data needed
    monkeypatch.delenv("PANSHARP_WEIGHTS", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    tiny = 'CROP = 96\nSIZE = 33\nMETHODS = ["exp", "gsa"]\nSR_STEPS = 5\nSR_FEATURES = 8\n'
    injected = nbformat.v4.new_code_cell(tiny)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=300, startup_timeout=120, allow_errors=False, resources={"metadata": {"path": str(work)}})
    client.execute()
    table = next(c for c in nb.cells if "metric-table" in c.metadata.get("tags", []))
    text = "\n".join(o.get("text", "") + "".join(v for v in o.get("data", {}).values() if isinstance(v, str)) for o in table.outputs)
    for word in ("EXP", "GSA", "FSDS", "NL HF share"):
        assert word in text, text
    out = work / "pansharp_frequency"
    for name in ("comparison.png", "sr_sinc.png"):
        assert (out / name).stat().st_size > 0
