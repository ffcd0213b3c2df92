"""The light-curve stage's figures: the eta-V plane of every source, and each candidate's
light curve (PNG, written whole)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsa110_pipeline.atomic import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def eta_v_plot(path: Path, eta: np.ndarray, v: np.ndarray, candidate: np.ndarray,
               eta_threshold: float | None, v_threshold: float) -> Path:
    plt = _plt()
    ok = np.isfinite(eta) & np.isfinite(v) & (eta > 0) & (v > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.scatter(eta[ok & ~candidate], v[ok & ~candidate], s=6, c="0.5", label="sources")
    ax.scatter(eta[ok & candidate], v[ok & candidate], s=16, c="C3", label="candidates")
    if eta_threshold is not None and ok.any():
        ax.axvline(eta_threshold, c="C3", lw=0.8, ls="--")
    if v_threshold > 0 and ok.any():
        ax.axhline(v_threshold, c="C3", lw=0.8, ls="--")
    if ok.any():  # log axes need positive data (a night may have none yet)
        ax.set(xscale="log", yscale="log")
    else:
        ax.text(0.5, 0.5, "no light curve with 2 or more epochs yet", ha="center",
                transform=ax.transAxes)
    ax.set(xlabel="η (weighted reduced χ²)", ylabel="V (std / mean)", title="variability")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def light_curve_plot(path: Path, name: str, mjd: np.ndarray, flux: np.ndarray,
                     err: np.ndarray) -> Path:
    plt = _plt()
    ok = np.isfinite(flux) & np.isfinite(mjd)
    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    if ok.any():
        t = (mjd[ok] - mjd[ok].min()) * 24.0
        ax.errorbar(t, flux[ok] * 1e3, err[ok] * 1e3, fmt="o", ms=3, lw=0.8)
    ax.set(xlabel="hours", ylabel="mJy", title=name)
    ax.title.set_fontsize(8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
