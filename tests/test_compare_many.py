"""``pansharp compare`` over a folder of scenes: per-scene rows, mean ± std, LaTeX, external products."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from pansharp_jax.cli import main
from pansharp_jax.data.demo import write_demo_scene


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    scenes = root / "scenes"
    write_demo_scene(scenes / "a.npz", "rr", seed=1)
    write_demo_scene(scenes / "b.npz", "rr", seed=2)
    write_demo_scene(scenes / "c.npz", "fr", seed=3)
    products = root / "products"
    products.mkdir()
    assert main(["fuse", "-m", "exp", "-i", str(scenes), "-o", str(products), "--format", ".mat"]) == 0
    (products / "b_exp.mat").unlink()  # one scene without an external product
    out = root / "out"
    rc = main(["compare", "-i", str(scenes), "--methods", "exp,gsa", "--products", f"mine={products}",
               "-o", str(out), "--no-progress", "--zoom", "0"])  # fmt: skip
    assert rc == 0
    return {"out": out, "scenes": scenes, "products": products}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_per_scene_rows_and_external_products(bench: dict[str, Path]) -> None:
    rows = _rows(bench["out"] / "scenes.csv")
    got = {(r["scene"], r["method"]) for r in rows}
    assert got == {("a", "exp"), ("a", "gsa"), ("a", "mine"), ("b", "exp"), ("b", "gsa"),
                   ("c", "exp"), ("c", "gsa"), ("c", "mine")}  # fmt: skip
    assert {r["mode"] for r in rows if r["scene"] == "c"} == {"fr"}
    assert {r["protocol"] for r in rows} == {"toolbox"}
    by = {(r["scene"], r["method"]): r for r in rows}
    for scene, keys in (("a", ("Q2n", "SAM", "ERGAS")), ("c", ("D_lambda", "D_S", "HQNR"))):
        for k in keys:  # the EXP product read back from disk scores as EXP fused in memory
            assert float(by[(scene, "mine")][k]) == pytest.approx(float(by[(scene, "exp")][k]), abs=1e-12)
    for s in "abc":
        assert (bench["out"] / s / "metrics.json").is_file() and (bench["out"] / s / "grid.png").is_file()


def test_summary_is_mean_and_sample_std_over_scenes(bench: dict[str, Path]) -> None:
    rows = _rows(bench["out"] / "scenes.csv")
    summary = {r["method"]: r for r in _rows(bench["out"] / "summary_rr.csv")}
    assert set(summary) == {"exp", "gsa", "mine"}
    assert summary["mine"]["n"] == "1" and summary["gsa"]["n"] == "2"
    for method in ("exp", "gsa"):
        for k in ("Q2n", "SAM", "ERGAS", "PSNR"):
            v = np.array([float(r[k]) for r in rows if r["method"] == method and r["mode"] == "rr"])
            assert float(summary[method][f"{k}_mean"]) == pytest.approx(v.mean(), rel=1e-12)
            assert float(summary[method][f"{k}_std"]) == pytest.approx(v.std(ddof=1), rel=1e-12)
    assert float(summary["mine"]["SAM_std"]) == 0.0
    fr = json.loads((bench["out"] / "summary_fr.json").read_text())
    assert fr["mode"] == "fr" and fr["protocol"] == "toolbox" and fr["scenes"] == ["c"]
    for ext in ("md", "tex", "png"):
        assert (bench["out"] / f"summary_rr.{ext}").stat().st_size > 0


def test_latex_table_is_well_formed(bench: dict[str, Path]) -> None:
    tex = (bench["out"] / "summary_rr.tex").read_text()
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", tex)
    stack: list[str] = []
    for kind, name in envs:
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack and [n for k, n in envs if k == "begin"] == ["table", "tabular"]
    depth = 0
    for ch in tex.replace("\\{", "").replace("\\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    spec = re.search(r"\\begin\{tabular\}\{([lcr|]+)\}", tex).group(1)
    ncols = len(spec.replace("|", ""))
    body = tex.split("\\begin{tabular}", 1)[1].split("\\end{tabular}", 1)[0]
    lines = [ln for ln in body.splitlines() if ln.rstrip().endswith("\\\\")]
    assert len(lines) == 1 + 3  # header + exp, gsa, mine
    for ln in lines:
        assert ln.count(" & ") == ncols - 1
    assert "Q\\_avg" in tex and "$\\pm$" in tex and "\\textbf{" in tex
    assert re.search(r"(?<!\\)_", tex.replace("\\_", "")) is None  # every underscore escaped


def test_compare_errors_are_one_line(tmp_path: Path, bench: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    one = bench["scenes"] / "a.npz"
    assert main(["compare", "-i", str(one), "--products", f"x={bench['products']}", "-o", str(tmp_path / "o1")]) == 2
    assert "one scene takes a product file" in capsys.readouterr().err
    assert main(["compare", "-i", str(one), "-o", str(tmp_path / "o2")]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["compare", "-i", str(one), "--products", "noequals", "-o", str(tmp_path / "o3")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))
