"""Metric tables: one row per method, written as CSV, JSON and Markdown, shown with rich.

Metric names are the toolbox's (``Q2n``, ``Q_avg``, ``SAM``, ``ERGAS``, ``SCC``, ``PSNR``,
``SSIM`` at reduced resolution; ``D_lambda``, ``D_lambda_K``, ``D_S``, ``QNR``, ``HQNR`` at
full resolution). Values are stored at full float precision in CSV (shortest round-trip
repr) and JSON (NaN/Inf become ``null`` in JSON); Markdown and console show 4 decimals and
mark the best value of each metric (bold) using :data:`HIGHER_IS_BETTER`.

JSON layout::

    {"mode": "rr", "scene": "...", "sensor": "QB", "ratio": 4, "protocol": "toolbox",
     "metrics": ["Q2n", ...], "higher_is_better": {"Q2n": true, ...},
     "results": [{"method": "gsa", "label": "GSA", "metrics": {"Q2n": 0.89, ...},
                  "seconds": 0.12}, ...]}

CSV columns: ``method, label, <metrics...>, seconds, protocol``. The protocol is the
evaluation preset that produced the numbers (:mod:`pansharp_jax.metrics.protocols`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RR_METRICS: tuple[str, ...] = ("Q2n", "Q_avg", "SAM", "ERGAS", "SCC", "PSNR", "SSIM", "CC", "FSDS")
FR_METRICS: tuple[str, ...] = ("D_lambda_K", "D_S", "HQNR", "D_lambda", "QNR")
HIGHER_IS_BETTER: dict[str, bool] = {
    "Q2n": True, "Q_avg": True, "SAM": False, "ERGAS": False, "SCC": True, "PSNR": True, "SSIM": True,
    "CC": True, "FSDS": True, "D_lambda": False, "D_lambda_K": False, "D_S": False, "QNR": True, "HQNR": True,
}  # fmt: skip
MODE_TITLES = {"rr": "reduced resolution (vs GT)", "fr": "full resolution (no reference)"}


@dataclasses.dataclass
class MetricRow:
    """One method's scores.

    Attributes:
      method: registry name (``"mtf_glp_hpm"``).
      label: display name, the toolbox's where it has one (``"MTF-GLP-HPM"``).
      metrics: metric name -> value (unitless indices; SAM in degrees; PSNR in dB).
      seconds: wall time of the fusion (including compilation on first use), or None.
    """

    method: str
    label: str
    metrics: dict[str, float]
    seconds: float | None = None


@dataclasses.dataclass
class MetricTable:
    """A table of :class:`MetricRow` for one scene and one evaluation mode (``rr``/``fr``)."""

    mode: str
    scene: str
    sensor: str
    ratio: int
    rows: list[MetricRow] = dataclasses.field(default_factory=list)
    protocol: str = "toolbox"

    def add(self, method: str, label: str, metrics: Mapping[str, float], seconds: float | None = None) -> None:
        self.rows.append(MetricRow(method, label, {k: float(v) for k, v in metrics.items()}, seconds))

    @property
    def metric_names(self) -> list[str]:
        """Metrics present in any row: the canonical order first, then any others."""
        seen: list[str] = []
        for row in self.rows:
            seen += [k for k in row.metrics if k not in seen]
        canon = [m for m in (*RR_METRICS, *FR_METRICS) if m in seen]
        return canon + [m for m in seen if m not in canon]

    def best(self) -> dict[str, set[str]]:
        """Metric -> the set of methods with the best finite value (ties included).

        Only metrics with a known direction; a metric on which every row ties (with more
        than one row) has no best.
        """
        out: dict[str, set[str]] = {}
        for name in self.metric_names:
            if name not in HIGHER_IS_BETTER:
                continue
            vals = [(r.metrics[name], r.method) for r in self.rows if _finite(r.metrics.get(name))]
            if not vals:
                continue
            top = (max if HIGHER_IS_BETTER[name] else min)(v for v, _ in vals)
            winners = {m for v, m in vals if v == top}
            if len(winners) < len(self.rows) or len(self.rows) == 1:
                out[name] = winners
        return out

    # --- serialisations --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        names = self.metric_names
        return {
            "mode": self.mode,
            "scene": self.scene,
            "sensor": self.sensor,
            "ratio": self.ratio,
            "protocol": self.protocol,
            "metrics": names,
            "higher_is_better": {n: HIGHER_IS_BETTER[n] for n in names if n in HIGHER_IS_BETTER},
            "results": [
                {
                    "method": r.method,
                    "label": r.label,
                    "metrics": {k: _json_num(r.metrics.get(k)) for k in names if k in r.metrics},
                    "seconds": _json_num(r.seconds),
                }
                for r in self.rows
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_csv(self) -> str:
        names = self.metric_names
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["method", "label", *names, "seconds", "protocol"])
        for r in self.rows:
            w.writerow([r.method, r.label, *(_csv_num(r.metrics.get(n)) for n in names), _csv_num(r.seconds), self.protocol])
        return buf.getvalue()

    def to_markdown(self) -> str:
        names = self.metric_names
        best = self.best()
        head = ["Method", *(f"{n} {_arrow(n)}".rstrip() for n in names), "time (s)"]
        lines = [
            f"**{self.scene}**, {MODE_TITLES.get(self.mode, self.mode)}, sensor {self.sensor}, ratio {self.ratio}, protocol {self.protocol}",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        ]
        for r in self.rows:
            cells = [r.label]
            for n in names:
                text = _fmt(r.metrics.get(n))
                cells.append(f"**{text}**" if r.method in best.get(n, ()) else text)
            cells.append(_fmt(r.seconds, 2))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_rich(self) -> Any:
        """A ``rich.table.Table`` (best value per metric in bold green)."""
        from rich.markup import escape
        from rich.table import Table

        names = self.metric_names
        best = self.best()
        t = Table(title=escape(f"{self.scene}: {MODE_TITLES.get(self.mode, self.mode)} ({self.sensor}, ratio {self.ratio}, protocol {self.protocol})"))
        t.add_column("Method", style="bold")
        for n in names:
            t.add_column(f"{n} {_arrow(n)}".rstrip(), justify="right")
        t.add_column("time (s)", justify="right", style="dim")
        for r in self.rows:
            cells = [escape(r.label)]
            for n in names:
                text = _fmt(r.metrics.get(n))
                cells.append(f"[bold green]{text}[/]" if r.method in best.get(n, ()) else text)
            cells.append(_fmt(r.seconds, 2))
            t.add_row(*cells)
        return t

    def write(self, out_dir: str | os.PathLike[str], stem: str = "metrics") -> dict[str, Path]:
        """Write ``<stem>.csv``, ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for ext, text in (("csv", self.to_csv()), ("json", self.to_json()), ("md", self.to_markdown())):
            p = out / f"{stem}.{ext}"
            p.write_text(text, encoding="utf-8")
            paths[ext] = p
        return paths


def print_table(table: MetricTable, console: Any = None) -> None:
    """Print a table with rich (to stdout by default, wide enough not to wrap when piped)."""
    from rich.console import Console

    if console is None:
        console = Console(width=None if _isatty() else 160)
    console.print(table.to_rich())


def metrics_json(metrics: Mapping[str, float], **meta: Any) -> str:
    """JSON for a single evaluation: ``{**meta, "metrics": {name: value}}`` (NaN -> null)."""
    return json.dumps({**meta, "metrics": {k: _json_num(v) for k, v in metrics.items()}}, indent=2, allow_nan=False) + "\n"


def _isatty() -> bool:
    import sys

    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _json_num(v: float | None) -> float | None:
    return float(v) if _finite(v) else None


def _csv_num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.{digits}f}"


def _arrow(name: str) -> str:
    if name not in HIGHER_IS_BETTER:
        return ""
    return "↑" if HIGHER_IS_BETTER[name] else "↓"


__all__: Sequence[str] = [
    "RR_METRICS", "FR_METRICS", "HIGHER_IS_BETTER", "MetricRow", "MetricTable", "print_table", "metrics_json",
]  # fmt: skip
