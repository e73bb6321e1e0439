"""Benchmark tables over many scenes: per-scene rows and the mean +- std table papers print.

:func:`summarise` turns the per-scene :class:`~pansharp_jax.report.tables.MetricTable` of a
``pansharp compare`` run over a folder of scenes into one :class:`SummaryTable` per mode
(``rr`` / ``fr``): for every method, the mean and standard deviation of each metric over
the scenes it was scored on. The standard deviation is MATLAB's ``std`` (normalised by
N - 1, as the toolbox's demo scripts report it); one scene gives a std of 0.

Outputs: CSV (``method, label, n, <metric>_mean, <metric>_std...``), JSON, Markdown
(``mean ± std``, best mean in bold), LaTeX (a ``tabular`` inside a ``table``, booktabs-free
so it compiles with any LaTeX; best mean in ``\\textbf``) and a bar plot with error bars.
Every output names the evaluation protocol.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.report.tables import FR_METRICS, HIGHER_IS_BETTER, MODE_TITLES, RR_METRICS, MetricTable


@dataclasses.dataclass
class SummaryRow:
    """One method over many scenes: metric -> (mean, std), and the number of scenes ``n``."""

    method: str
    label: str
    n: int
    stats: dict[str, tuple[float, float]]


@dataclasses.dataclass
class SummaryTable:
    """Mean +- std of every metric per method over the scenes of one mode."""

    mode: str
    protocol: str
    scenes: list[str]
    metrics: list[str]
    rows: list[SummaryRow]

    def best(self) -> dict[str, str]:
        """Metric -> the method with the best finite mean (no entry when tied or unknown)."""
        out: dict[str, str] = {}
        for m in self.metrics:
            vals = [(r.stats[m][0], r.method) for r in self.rows if m in r.stats and math.isfinite(r.stats[m][0])]
            if m not in HIGHER_IS_BETTER or len(vals) < 2:
                continue
            top = (max if HIGHER_IS_BETTER[m] else min)(v for v, _ in vals)
            winners = [k for v, k in vals if v == top]
            if len(winners) == 1:
                out[m] = winners[0]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "protocol": self.protocol,
            "scenes": self.scenes,
            "metrics": self.metrics,
            "std": "sample (N - 1), as MATLAB's std",
            "results": [
                {"method": r.method, "label": r.label, "n": r.n,
                 "mean": {m: _num(r.stats[m][0]) for m in self.metrics if m in r.stats},
                 "std": {m: _num(r.stats[m][1]) for m in self.metrics if m in r.stats}}
                for r in self.rows
            ],
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "label", "n", *(f"{m}_{s}" for m in self.metrics for s in ("mean", "std")), "protocol"])
        for r in self.rows:
            cells = [repr(float(v)) if m in r.stats else "" for m in self.metrics for v in (r.stats.get(m, (0.0, 0.0)))]
            w.writerow([r.method, r.label, r.n, *cells, self.protocol])
        return buf.getvalue()

    def to_markdown(self) -> str:
        best = self.best()
        head = ["Method", "n", *(f"{m} {_arrow(m)}".rstrip() for m in self.metrics)]
        lines = [
            f"**{len(self.scenes)} scenes**, {MODE_TITLES.get(self.mode, self.mode)}, protocol {self.protocol} (mean ± std)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---", "---:"] + ["---:"] * len(self.metrics)) + "|",
        ]
        for r in self.rows:
            cells = [r.label, str(r.n)]
            for m in self.metrics:
                text = _pm(r.stats.get(m), " ± ")
                cells.append(f"**{text}**" if best.get(m) == r.method else text)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        """A ``table`` environment holding a ``tabular``: one row per method, ``mean $\\pm$ std``."""
        best = self.best()
        cols = "l" + "c" * len(self.metrics)
        head = " & ".join(["Method", *(f"{_tex(m)} {_tex_arrow(m)}".rstrip() for m in self.metrics)])
        lines = [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{_tex(MODE_TITLES.get(self.mode, self.mode))}, {len(self.scenes)} scenes, protocol {_tex(self.protocol)} (mean $\\pm$ std).}}",
            f"\\begin{{tabular}}{{{cols}}}",
            "\\hline",
            head + " \\\\",
            "\\hline",
        ]
        for r in self.rows:
            cells = [_tex(r.label)]
            for m in self.metrics:
                text = _pm(r.stats.get(m), " $\\pm$ ")
                cells.append(f"\\textbf{{{text}}}" if best.get(m) == r.method else text)
            lines.append(" & ".join(cells) + " \\\\")
        lines += ["\\hline", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """A bar chart per metric (mean, std error bars), one bar per method; PNG at ``path``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self.metrics)
        cols = min(n, 4)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
        labels = [r.label for r in self.rows]
        for ax, m in zip(axes.flat, self.metrics):
            mean = [r.stats[m][0] if m in r.stats else np.nan for r in self.rows]
            std = [r.stats[m][1] if m in r.stats else 0.0 for r in self.rows]
            ax.bar(range(len(labels)), mean, yerr=std, capsize=3, color="tab:blue")
            ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{m} {_arrow(m)}".rstrip(), fontsize=9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{len(self.scenes)} scenes, {self.mode}, protocol {self.protocol}: mean ± std", fontsize=10)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def write(self, out_dir: str | os.PathLike[str], stem: str) -> dict[str, Path]:
        """Write ``<stem>.{csv,json,md,tex,png}`` in ``out_dir``; return their paths."""
        out = Path(out_dir)
        paths: dict[str, Path] = {}
        for ext, text in (("csv", self.to_csv()), ("json", self.to_json()), ("md", self.to_markdown()), ("tex", self.to_latex())):
            paths[ext] = out / f"{stem}.{ext}"
            paths[ext].write_text(text, encoding="utf-8")
        paths["png"] = self.plot(out / f"{stem}.png")
        return paths


def summarise(tables: Sequence[MetricTable]) -> dict[str, SummaryTable]:
    """Mode -> :class:`SummaryTable` over the per-scene ``tables`` (each one scene, one mode).

    Methods keep the order of their first appearance; a method missing from a scene is
    averaged over the scenes it has (its ``n`` says how many). NaN scores are left out of
    the mean and std of that metric.
    """
    out: dict[str, SummaryTable] = {}
    for mode in dict.fromkeys(t.mode for t in tables):
        group = [t for t in tables if t.mode == mode]
        protocols = sorted({t.protocol for t in group})
        values: dict[str, dict[str, list[float]]] = {}
        labels: dict[str, str] = {}
        counts: dict[str, int] = {}
        seen: list[str] = []
        for t in group:
            for r in t.rows:
                labels.setdefault(r.method, r.label)
                counts[r.method] = counts.get(r.method, 0) + 1
                for k, v in r.metrics.items():
                    values.setdefault(r.method, {}).setdefault(k, []).append(float(v))
                    seen += [k] if k not in seen else []
        canon = [m for m in (*RR_METRICS, *FR_METRICS) if m in seen]
        metrics = canon + [m for m in seen if m not in canon]
        rows = [
            SummaryRow(method, labels[method], counts[method], {k: _mean_std(v) for k, v in values.get(method, {}).items()})
            for method in labels
        ]
        out[mode] = SummaryTable(mode, ",".join(protocols), [t.scene for t in group], metrics, rows)
    return out


def scenes_csv(tables: Sequence[MetricTable]) -> str:
    """Every per-scene row in one CSV: ``scene, mode, method, label, <metrics...>, seconds, protocol``."""
    names: list[str] = []
    for t in tables:
        names += [m for m in t.metric_names if m not in names]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["scene", "mode", "method", "label", *names, "seconds", "protocol"])
    for t in tables:
        for r in t.rows:
            cells = ["" if r.metrics.get(n) is None else repr(float(r.metrics[n])) for n in names]
            w.writerow([t.scene, t.mode, r.method, r.label, *cells, "" if r.seconds is None else repr(float(r.seconds)), t.protocol])
    return buf.getvalue()


def _mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray([x for x in v if math.isfinite(x)], np.float64)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _pm(stat: tuple[float, float] | None, sep: str) -> str:
    if stat is None or not math.isfinite(stat[0]):
        return "-"
    return f"{stat[0]:.4f}{sep}{stat[1]:.4f}"


def _arrow(m: str) -> str:
    return "" if m not in HIGHER_IS_BETTER else ("↑" if HIGHER_IS_BETTER[m] else "↓")


def _tex_arrow(m: str) -> str:
    return "" if m not in HIGHER_IS_BETTER else ("$\\uparrow$" if HIGHER_IS_BETTER[m] else "$\\downarrow$")


_TEX_SPECIAL = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def _tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


__all__ = ["SummaryRow", "SummaryTable", "scenes_csv", "summarise"]
