"""Run logging: Weights & Biases (optional) and a console progress bar (always).

W&B mode: ``disabled`` when W&B is off (the default: only ``--wandb``, i.e.
``train(..., wandb=True)``, turns it on; ``config.logging.enabled`` does not); otherwise
``$WANDB_MODE`` if set, else ``online`` when an API key is configured (``WANDB_API_KEY`` or
a ``.netrc`` entry for the W&B host) and ``offline`` (files under ``<workdir>/wandb``, upload
later with ``wandb sync``) when not. Only process 0 logs.

Logged: training scalars (loss, grad/param norms, learning rate, steps/s), validation
metrics (``val/<name>``), and every evaluation an image panel of fused samples (true-colour
LMS | fused | GT | PAN, each stretched by the GT's 1-99 % percentiles).
"""

from __future__ import annotations

import netrc
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def wandb_mode(enabled: bool) -> str:
    """'disabled', or the W&B mode to use when enabled (see module docstring)."""
    if not enabled:
        return "disabled"
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return env
    return "online" if _has_api_key() else "offline"


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        hosts = netrc.netrc(path).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in h for h in hosts)


def _stretch(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def image_panel(
    lms: np.ndarray, fused: np.ndarray, gt: np.ndarray, pan: np.ndarray, rgb: tuple[int, int, int]
) -> np.ndarray:
    """Rows of ``[LMS | fused | GT | PAN]`` for a few samples, uint8 (rows*H, 4*W, 3).

    All NHWC on [0, 1]; ``rgb`` are the band indices shown as red, green, blue.
    """
    rgb_idx = [min(int(i), fused.shape[-1] - 1) for i in rgb]
    rows = []
    for i in range(fused.shape[0]):
        ref = gt[i][..., rgb_idx]
        lo = np.percentile(ref, 1, axis=(0, 1))
        hi = np.percentile(ref, 99, axis=(0, 1))
        tiles = [_stretch(a[i][..., rgb_idx], lo, hi) for a in (lms, fused, gt)]
        p = pan[i][..., :1]
        plo, phi = np.percentile(p, 1), np.percentile(p, 99)
        tiles.append(np.repeat(_stretch(p, plo, phi), 3, axis=-1))
        rows.append(np.concatenate(tiles, axis=1))
    return (np.concatenate(rows, axis=0) * 255.0 + 0.5).astype(np.uint8)


class RunLogger:
    """W&B + console logging for one run.

    Args:
      config: the run config (a plain dict is logged to W&B).
      workdir: run folder (W&B files go to ``<workdir>/wandb``).
      use_wandb: turn W&B on (mode from :func:`wandb_mode`).
      total_steps, start_step: for the progress bar.
      project, group, tags, name, entity: W&B run fields.
      is_main: only the main process logs.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        workdir: str | os.PathLike[str],
        *,
        use_wandb: bool,
        total_steps: int,
        start_step: int = 0,
        project: str = "pansharp_jax",
        group: str = "",
        tags: tuple[str, ...] = (),
        name: str = "",
        entity: str = "",
        is_main: bool = True,
        console: bool = True,
    ) -> None:
        self.is_main = is_main
        self.run: Any = None
        self.mode = wandb_mode(use_wandb and is_main)
        if self.mode != "disabled":
            import wandb

            wdir = Path(workdir) / "wandb"
            wdir.mkdir(parents=True, exist_ok=True)
            run_id_file = Path(workdir) / "wandb_run_id"
            run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
            self.run = wandb.init(
                project=project or None,
                group=group or None,
                tags=list(tags) or None,
                name=name or None,
                entity=entity or None,
                config=dict(config),
                dir=str(workdir),
                mode=self.mode,  # type: ignore[arg-type]
                id=run_id,
                resume="allow",
            )
            run_id_file.write_text(self.run.id)
        self._progress: Any = None
        self._task: Any = None
        self._last = (time.perf_counter(), start_step)
        self.steps_per_sec = 0.0
        if console and is_main:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.2f} step/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("train", total=total_steps, completed=start_step, rate=0.0, info="")

    def advance(self, step: int, info: str = "") -> None:
        """Move the progress bar to ``step`` (after the update that produced ``step``)."""
        now = time.perf_counter()
        t0, s0 = self._last
        if now - t0 >= 1.0 or self.steps_per_sec == 0.0:
            if step > s0 and now > t0:
                self.steps_per_sec = (step - s0) / (now - t0)
            self._last = (now, step)
        if self._progress is not None:
            self._progress.update(self._task, completed=step, rate=self.steps_per_sec, info=info)

    def log_scalars(self, step: int, scalars: Mapping[str, float], prefix: str = "train/") -> None:
        if self.run is not None:
            self.run.log({f"{prefix}{k}": float(v) for k, v in scalars.items()}, step=int(step))

    def log_eval(self, step: int, metrics: Mapping[str, float], panel: np.ndarray | None = None) -> None:
        """Validation metrics (and the image panel) of the evaluation at ``step``."""
        if self.run is not None:
            import wandb

            data: dict[str, Any] = {f"val/{k}": float(v) for k, v in metrics.items()}
            if panel is not None:
                data["val/samples"] = wandb.Image(panel, caption="LMS | fused | GT | PAN")
            self.run.log(data, step=int(step))
        if self._progress is not None:
            text = "  ".join(f"{k} {float(v):.4g}" for k, v in metrics.items())
            self._progress.console.print(f"step {step}: {text}")

    def print(self, text: str) -> None:
        """One plain line above the progress bar (console logging only; no markup, not wrapped)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.run is not None:
            self.run.finish()
            self.run = None
