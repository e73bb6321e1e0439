"""Figures of the frequency analysis (PNG, matplotlib's Agg canvas, no pyplot state).

Every function takes measured results (:mod:`~pansharp_jax.analysis.hyra`) and a path,
writes one PNG at 100 dpi and returns the path. Frequencies are in cycles per HR (PAN)
pixel; a dashed line or circle marks the MS Nyquist frequency ``1 / (2 * ratio)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pansharp_jax.analysis.hyra import HyraResult, hann_spectrum, radial_profile

__all__ = [
    "new_figure",
    "save_figure",
    "plot_fsds_bands",
    "plot_impulse_responses",
    "plot_method_comparison",
    "plot_radial_profiles",
    "plot_spectra",
    "plot_sr_impulse",
]

DPI = 100


def new_figure(width_px: int, height_px: int) -> Any:
    """A matplotlib Figure of ``width_px`` x ``height_px`` pixels at 100 dpi on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG (white background, parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _support(k: np.ndarray, floor: int) -> int:
    """Radius (from the centre) holding every value above 1e-3 of the peak, + 2, >= floor."""
    rad = k.shape[0] // 2
    big = np.argwhere(np.abs(k) > 1e-3 * (float(np.abs(k).max()) or 1.0))
    need = int(np.abs(big - rad).max()) + 2 if big.size else floor
    return min(rad, max(floor, need))


def _kernel_image(ax: Any, fig: Any, k: np.ndarray, title: str, floor: int | None = None) -> None:
    rad = k.shape[0] // 2
    if floor is not None:  # zoom on the support
        s = _support(k, floor)
        k, rad = k[rad - s : rad + s + 1, rad - s : rad + s + 1], s
    v = float(np.abs(k).max()) or 1.0
    im = ax.imshow(k, cmap="RdBu_r", vmin=-v, vmax=v, extent=(-rad - 0.5, rad + 0.5, rad + 0.5, -rad - 0.5), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("HR pixels from the impulse", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)


def plot_impulse_responses(result: HyraResult, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Impulse responses: MS (mean over bands of each band's response to its own input
    band) and PAN (mean over phases and bands) as images and centre-row profiles, the MS
    cross-band DC gains (kernel sums / ratio**2, input band x output band) and the PAN
    kernel's sum per output band."""
    resp = result.responses
    r, rad = resp.ratio, resp.radius
    c = min(resp.ms.shape[0], resp.ms.shape[3])
    ms = np.mean([resp.ms[i, :, :, i] for i in range(c)], axis=0)
    pan = resp.pan_kernel().mean(axis=-1)
    x = np.arange(-rad, rad + 1)
    fig = new_figure(1350, 800)
    axes = fig.subplots(2, 3)
    _kernel_image(axes[0, 0], fig, ms, "MS impulse response (own band, mean)", floor=2 * r)
    _kernel_image(axes[0, 1], fig, pan, "PAN impulse response (mean)", floor=2 * r)
    gains = resp.ms.sum(axis=(1, 2)) / r**2
    v = float(np.abs(gains).max()) or 1.0
    im = axes[0, 2].imshow(gains, cmap="RdBu_r", vmin=-v, vmax=v)
    axes[0, 2].set_title("MS DC gain / ratio$^2$ (input band x output band)", fontsize=10)
    axes[0, 2].set_xlabel("output band", fontsize=8)
    axes[0, 2].set_ylabel("input band", fontsize=8)
    fig.colorbar(im, ax=axes[0, 2], shrink=0.8)
    for ax, k, what in ((axes[1, 0], ms, "MS"), (axes[1, 1], pan, "PAN")):
        s = _support(k, 2 * r)
        ax.set_xlim(-s - 0.5, s + 0.5)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.plot(x, k[rad], ".-", label="centre row", lw=1)
        ax.plot(x, k[:, rad], ".-", label="centre column", lw=1, alpha=0.7)
        for e in (-r / 2, r / 2):
            ax.axvline(e, color="0.8", lw=0.6, ls=":")
        ax.set_title(f"{what} response profiles", fontsize=10)
        ax.set_xlabel("HR pixels from the impulse", fontsize=8)
        ax.legend(fontsize=8)
    sums = resp.pan_kernel().sum(axis=(0, 1))
    axes[1, 2].bar(np.arange(sums.size), sums, color="tab:gray")
    axes[1, 2].axhline(0, color="k", lw=0.6)
    axes[1, 2].set_title("PAN kernel sum per output band (DC gain)", fontsize=10)
    axes[1, 2].set_xlabel("output band", fontsize=8)
    how = f"{resp.linearization}" + (f", amplitude {resp.amplitude:g}" if resp.linearization == "difference" else "")
    fig.suptitle(title or f"{result.label}: impulse responses ({how}, {resp.background} background)", fontsize=12)
    return save_figure(fig, path)


def _log_spectrum(x: np.ndarray) -> np.ndarray:
    """log10(1 + band-mean |F|) of (H, W, C), centred (fftshift)."""
    return np.fft.fftshift(np.log10(1.0 + np.abs(hann_spectrum(x)).mean(axis=-1)))


def plot_spectra(result: HyraResult, path: str | os.PathLike[str], *, gt: np.ndarray | None = None, title: str = "") -> Path:
    """2-D log spectra ``log10(1 + |F|)`` (band mean, interior, Hann window, centred) of
    the linear part, the non-linear part, the product [and the GT], on one colour scale;
    the circle is the MS Nyquist frequency."""
    dec = result.decomposition
    r = result.responses.ratio
    panels = {"linear part": dec.linear, "non-linear part": dec.nonlinear, "product (output)": dec.output}
    if gt is not None:
        panels["GT"] = gt
    specs = {k: _log_spectrum(dec.interior(v)) for k, v in panels.items()}
    vmax = max(float(s.max()) for s in specs.values())
    fig = new_figure(360 * len(specs) + 80, 420)
    axes = np.atleast_1d(fig.subplots(1, len(specs)))
    from matplotlib.patches import Circle

    for ax, (label, s) in zip(axes, specs.items(), strict=True):
        n1, n2 = s.shape
        im = ax.imshow(s, cmap="magma", vmin=0, vmax=vmax, extent=(-0.5, 0.5 - 1 / n2, 0.5 - 1 / n1, -0.5))
        ax.add_patch(Circle((0, 0), 1 / (2 * r), fill=False, ec="cyan", lw=0.8, ls="--"))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("cycles / pixel", fontsize=8)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="log10(1 + |F|)")
    fig.suptitle(title or f"{result.label}: spectra (dashed: MS Nyquist 1/{2 * r})", fontsize=12)
    return save_figure(fig, path)


def plot_radial_profiles(result: HyraResult, path: str | os.PathLike[str], *, gt: np.ndarray | None = None, title: str = "") -> Path:
    """Left: radial profiles of the linear part's frequency responses (MS own-band gain /
    ratio**2, PAN gain, band means). Right: radial power spectra (band sum) of the product,
    its linear and non-linear parts [and the GT]."""
    tr, dec = result.transfer, result.decomposition
    r = tr.ratio
    fig = new_figure(1200, 450)
    ax1, ax2 = fig.subplots(1, 2)
    f, ms = radial_profile(np.abs(tr.ms_diagonal()).mean(axis=0) / r**2)
    _, pan = radial_profile(np.abs(tr.pan).mean(axis=0))
    ax1.plot(f, ms, label="MS path |H| / ratio$^2$")
    ax1.plot(f, pan, label="PAN path |H|")
    ax1.axvline(1 / (2 * r), color="0.5", ls="--", lw=0.8, label="MS Nyquist")
    ax1.set_xlabel("radial frequency (cycles / pixel)")
    ax1.set_title("linear part: frequency response", fontsize=10)
    ax1.legend(fontsize=8)
    parts = {"product": dec.output, "linear": dec.linear, "non-linear": dec.nonlinear}
    if gt is not None:
        parts["GT"] = gt
    for label, x in parts.items():
        pw = (np.abs(hann_spectrum(dec.interior(x))) ** 2).sum(axis=-1)
        fr, prof = radial_profile(pw)
        ax2.semilogy(fr[1:], prof[1:], label=label, ls=":" if label == "GT" else "-")
    ax2.axvline(1 / (2 * r), color="0.5", ls="--", lw=0.8)
    ax2.set_xlabel("radial frequency (cycles / pixel)")
    ax2.set_title("radial power spectrum (sum over bands)", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title or f"{result.label}: radial profiles", fontsize=12)
    return save_figure(fig, path)


def plot_fsds_bands(values: Sequence[float], path: str | os.PathLike[str], *, band_names: Sequence[str] | None = None, title: str = "") -> Path:
    """Bar chart of the FSDS (dB) of each band against the GT, with the mean as a line."""
    v = np.asarray(values, np.float64)
    shown = np.where(np.isfinite(v), v, np.nan)
    names = list(band_names) if band_names is not None and len(band_names) == v.size else [str(i) for i in range(v.size)]
    fig = new_figure(max(500, 70 * v.size + 200), 400)
    ax = fig.subplots()
    ax.bar(np.arange(v.size), shown, color="tab:blue")
    ax.axhline(float(np.nanmean(shown)), color="tab:red", ls="--", lw=1, label=f"mean {np.nanmean(shown):.2f} dB")
    ax.set_xticks(np.arange(v.size), names, rotation=30, fontsize=8)
    ax.set_ylabel("FSDS (dB, higher is better)")
    ax.legend(fontsize=8)
    ax.set_title(title or "FSDS per band vs GT", fontsize=11)
    return save_figure(fig, path)


def plot_method_comparison(results: Mapping[str, HyraResult], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Several methods side by side: MS and PAN frequency-response radial profiles and
    the non-linear high-frequency share (label -> :class:`HyraResult`)."""
    fig = new_figure(1500, 450)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    r = 4
    for label, res in results.items():
        tr = res.transfer
        r = tr.ratio
        f, ms = radial_profile(np.abs(tr.ms_diagonal()).mean(axis=0) / r**2)
        _, pan = radial_profile(np.abs(tr.pan).mean(axis=0))
        ax1.plot(f, ms, label=label)
        ax2.plot(f, pan, label=label)
    for ax, what in ((ax1, "MS path |H| / ratio$^2$"), (ax2, "PAN path |H|")):
        ax.axvline(1 / (2 * r), color="0.5", ls="--", lw=0.8)
        ax.set_xlabel("radial frequency (cycles / pixel)")
        ax.set_title(what, fontsize=10)
        ax.legend(fontsize=7)
    labels = list(results)
    shares = [results[k].summary["hf_share_nonlinear"] for k in labels]
    ax3.barh(np.arange(len(labels)), shares, color="tab:orange")
    ax3.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    ax3.invert_yaxis()
    ax3.set_xlim(0, 1)
    ax3.set_xlabel("E_HF(N) / (E_HF(L) + E_HF(N))")
    ax3.set_title("non-linear share of the HF energy", fontsize=10)
    fig.suptitle(title or "frequency responses of the linear parts", fontsize=12)
    return save_figure(fig, path)


def plot_sr_impulse(
    response: np.ndarray,
    centre: float,
    ratio: int,
    path: str | os.PathLike[str],
    *,
    reference: Mapping[str, np.ndarray] | None = None,
    title: str = "",
) -> Path:
    """The sinc phenomenon: an SR network's impulse response (before clamping), and its
    1-D profile (the sum over rows, scaled to a DC gain of ``ratio``) against
    ``sinc(x / ratio)``, the ideal low-pass of the same cutoff, and optional other
    1-D kernels on the same axis (``reference``: label -> values at the same pixels)."""
    from pansharp_jax.analysis.hyra import ideal_lowpass_1d

    n = response.shape[1]
    x = np.arange(n) - centre
    profile = response.sum(axis=0)
    profile = profile * ratio / profile.sum()
    fig = new_figure(1200, 450)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1, 1.6))
    half = min(6 * ratio, n // 2)
    c = int(round(centre))
    win = response[c - half : c + half + 1, c - half : c + half + 1]
    _kernel_image(ax1, fig, win, "impulse response (raw output - output of the background)")
    ax2.axhline(0, color="0.6", lw=0.8)
    xs = np.linspace(x[0], x[-1], 20 * n)
    ax2.plot(xs, ideal_lowpass_1d(xs, ratio), color="0.5", lw=1, label=f"sinc(x / {ratio}) (ideal low-pass)")
    ax2.plot(x, profile, "o-", ms=3, color="tab:red", label="network (sum over rows, DC gain ratio)")
    for label, vals in (reference or {}).items():
        ax2.plot(x, vals, "s--", ms=2, lw=0.8, label=label)
    ax2.set_xlim(-half, half)
    ax2.set_xlabel("HR pixels from the LR sample")
    ax2.set_title(f"1-D profile; most negative lobe {profile.min():.3f}", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title or f"sinc phenomenon: x{ratio} SR network", fontsize=12)
    return save_figure(fig, path)
