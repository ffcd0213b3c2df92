"""Report figures (matplotlib, Agg backend), each returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .analysis import ARCSEC, Analysis

#: Figure resolution (dots per inch) of the report's PNGs.
DPI = 80


def _figure(w: float, h: float) -> Any:
    """A bare Agg figure (no pyplot state, no layout engine: fixed margins are much
    cheaper than constrained layout, which measures every label several times)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _axes(fig: Any, *where: int) -> Any:
    """A subplot with at most ~6 major ticks per axis (every tick is several artists)."""
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot(*where)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    return ax


def _fig(w: float = 7.0, h: float = 4.5) -> tuple[Any, Any]:
    fig = _figure(w, h)
    fig.subplots_adjust(left=0.8 / w, right=1 - 0.2 / w, bottom=0.6 / h, top=1 - 0.4 / h)
    return fig, _axes(fig, 1, 1, 1)


def _log(ax: Any, axis: str = "x") -> None:
    """Log scale with plain-number major labels and no minor ticks (mathtext labels and
    minor ticks are most of the drawing time of a small log plot)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    getattr(ax, f"set_{axis}scale")("log")
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    a.set_minor_locator(NullLocator())


def _title(ax: Any, text: str) -> None:
    """Axes title at a fixed height (automatic placement measures the tick labels)."""
    ax.set_title(text, y=1.0, pad=6)


def _png(fig: Any) -> bytes:
    """The figure as a palette PNG: rendered by Agg, reduced to ≤ 256 colours (fast octree)
    and written with light zlib compression; a third of the size of matplotlib's RGBA PNG
    and several times faster to encode."""
    from PIL import Image

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    img = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
    img = img.quantize(256, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    img.save(buf, format="png", compress_level=3)
    return buf.getvalue()


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean of ``f``×``f`` blocks, ignoring NaNs (a block with none finite gives NaN)."""
    if f == 1:
        return a
    blocks = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f)
    bad = np.isnan(blocks)
    if not bad.any():
        return blocks.mean(axis=(1, 3))
    n = (~bad).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bad, 0.0, blocks).sum(axis=(1, 3)) / n


def thumbnail_png(image: np.ndarray, a: Analysis, max_pixels: int = 800,
                  title: str = "") -> bytes:
    """The image (block-averaged to ≤ ``max_pixels``) with matched detections (green
    circles), unmatched detections (red crosses), missed reference sources (orange
    squares) and peaks of the negative image (blue triangles: artefacts) marked."""
    ny, nx = image.shape
    f = max(1, int(np.ceil(max(ny, nx) / max_pixels)))
    cut = np.asarray(image[: ny // f * f, : nx // f * f], np.float32)
    small = _block_mean(cut, f)
    rms = a.metrics["noise"]["image_rms_jy"] or float(np.nanstd(small))
    lo, hi = -3 * rms, max(30 * rms, float(np.nanpercentile(small, 99.9)))
    fig, ax = _fig(7, 7)
    ax.imshow(np.arcsinh(np.clip(small, lo, hi) / (3 * rms)), origin="lower", cmap="gray_r",
              interpolation="nearest")
    src = a.finder.sources
    matched = np.zeros(len(src), bool)
    matched[a.match.det] = True
    ref_matched = np.zeros(len(a.reference), bool)
    ref_matched[a.match.ref] = True
    ax.scatter(src.x[matched] / f, src.y[matched] / f, s=80, facecolors="none",
               edgecolors="tab:green", label=f"matched ({matched.sum()})")
    ax.scatter(src.x[~matched] / f, src.y[~matched] / f, s=40, marker="x", color="tab:red",
               label=f"unmatched detection ({(~matched).sum()})")
    miss = ~ref_matched & (a.ref_snr >= 5)
    ax.scatter(a.ref_x[miss] / f, a.ref_y[miss] / f, s=80, marker="s", facecolors="none",
               edgecolors="tab:orange", label=f"missed reference >5σ ({miss.sum()})")
    if a.neg_peaks is not None:
        ax.scatter(a.neg_peaks.x / f, a.neg_peaks.y / f, s=60, marker="v", facecolors="none",
                   edgecolors="tab:blue", label=f"negative peak ≤−5σ ({a.neg_peaks.x.size})")
    ax.set_xlim(-0.5, small.shape[1] - 0.5)
    ax.set_ylim(-0.5, small.shape[0] - 0.5)
    ax.set_xlabel(f"x (pixels / {f})")
    ax.set_ylabel(f"y (pixels / {f})")
    _title(ax, title or "image")
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig)


def flux_ratio_png(a: Analysis) -> bytes:
    """Measured (PB-corrected) / reference flux against reference flux."""
    fig, ax = _fig()
    ref = a.ref_flux[a.match.ref]
    ratio = a.src_flux_pbcor[a.match.det] / np.where(ref > 0, ref, np.nan)
    snr = a.finder.sources.snr[a.match.det]
    used = snr >= a.metrics["flux_scale"]["snr_min"]
    ax.scatter(ref[used], ratio[used], s=18, label="used")
    ax.scatter(ref[~used], ratio[~used], s=18, facecolors="none", edgecolors="gray",
               label="below S/N cut")
    fs = a.metrics["flux_scale"]
    if fs["median_ratio"] is not None:
        ax.axhline(fs["median_ratio"], color="tab:blue", lw=1,
                   label=f"median {fs['median_ratio']:.3f} "
                         f"[{fs['ci95_low']:.3f}, {fs['ci95_high']:.3f}]")
        ax.axhspan(fs["ci95_low"], fs["ci95_high"], color="tab:blue", alpha=0.15)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    if len(ref):
        _log(ax, "x")
    ax.set_xlabel("reference flux at image frequency (Jy)")
    ax.set_ylabel("measured / reference")
    _title(ax, "flux scale")
    ax.legend(fontsize=8)
    return _png(fig)


def astrometry_png(a: Analysis, bmaj: float, bmin: float, bpa_deg: float) -> bytes:
    """ΔRA·cosδ against ΔDec (arcsec) with the restoring beam's FWHM ellipse drawn."""
    from matplotlib.patches import Ellipse

    fig, ax = _fig(6, 6)
    dra, ddec = a.match.dra * ARCSEC, a.match.ddec * ARCSEC
    ax.scatter(dra, ddec, s=16, label=f"{len(dra)} matches")
    ast = a.metrics["astrometry"]
    if ast["median_dra_arcsec"] is not None:
        ax.plot(ast["median_dra_arcsec"], ast["median_ddec_arcsec"], "r+", ms=14, mew=2,
                label=f"median ({ast['median_dra_arcsec']:.2f}″, "
                      f"{ast['median_ddec_arcsec']:.2f}″), rms {ast['rms_arcsec']:.2f}″")
    # the beam: width along RA, height along Dec, rotated by -BPA (east = +RA offset)
    ax.add_patch(Ellipse((0, 0), bmin * ARCSEC, bmaj * ARCSEC, angle=-bpa_deg, fill=False,
                         color="tab:orange", lw=1.5, label="beam FWHM"))
    lim = max(bmaj * ARCSEC * 0.75, float(np.max(np.abs(np.r_[dra, ddec, 1.0]))) * 1.2)
    ax.set_xlim(lim, -lim)  # east to the left
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_xlabel("ΔRA·cosδ (arcsec)")
    ax.set_ylabel("ΔDec (arcsec)")
    _title(ax, "astrometric offsets (detected − reference)")
    ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def completeness_png(a: Analysis) -> bytes:
    """Completeness against expected S/N, and completeness/reliability against flux."""
    fig = _figure(10, 4)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    ax1, ax2 = _axes(fig, 1, 2, 1), _axes(fig, 1, 2, 2)
    for ax, key, label in ((ax1, "completeness_snr", "expected S/N"),
                           (ax2, "completeness_flux", "reference flux (Jy)")):
        b = a.curves[key]
        centres = np.sqrt(b.edges[:-1] * b.edges[1:])
        ok = b.total > 0
        ax.step(centres[ok], b.fraction[ok], where="mid", label="completeness")
        ax.plot(centres[ok], b.fraction[ok], "o", ms=4)
        for c, t in zip(centres[ok], b.total[ok]):
            ax.annotate(str(int(t)), (c, 0.02), fontsize=7, ha="center")
        _log(ax, "x")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction")
    rel = a.curves["reliability_flux"]
    okr = rel.total > 0
    if okr.any():
        cr = np.sqrt(rel.edges[:-1] * rel.edges[1:])
        ax2.plot(cr[okr], rel.fraction[okr], "s--", ms=4, label="reliability")
    thr = a.metrics["completeness"]["snr_min"]
    ax1.axvline(thr, color="k", ls=":", lw=0.8)
    _title(ax1, "completeness vs expected S/N")
    _title(ax2, "completeness / reliability (>5σ) vs flux")
    ax2.legend(fontsize=8)
    return _png(fig)


def noise_png(a: Analysis) -> bytes:
    """Histogram of pixel values with the measured and theoretical Gaussians."""
    fig, ax = _fig()
    v = a.noise_sample
    rms = a.metrics["noise"]["image_rms_jy"] or float(np.std(v))
    med = a.metrics["noise"]["median_jy"] or 0.0
    rng = (med - 6 * rms, med + 6 * rms)
    h, e = np.histogram(v, bins=120, range=rng)
    c = 0.5 * (e[1:] + e[:-1])
    ax.step(c * 1e3, np.maximum(h, 0.5), where="mid", label="pixels")
    norm = h.sum() * (e[1] - e[0])
    g = norm / (np.sqrt(2 * np.pi) * rms) * np.exp(-0.5 * ((c - med) / rms) ** 2)
    ax.plot(c * 1e3, g, label=f"measured rms {rms * 1e3:.3g} mJy/beam")
    th = a.theoretical_rms
    if th:
        gt = norm / (np.sqrt(2 * np.pi) * th) * np.exp(-0.5 * ((c - med) / th) ** 2)
        ax.plot(c * 1e3, gt, "--", label=f"theoretical {th * 1e3:.3g} mJy/beam")
    _log(ax, "y")
    ax.set_ylim(0.5, max(2.0, h.max() * 2))
    ax.set_xlabel("pixel value (mJy/beam)")
    ax.set_ylabel("count")
    _title(ax, "noise")
    ax.legend(fontsize=8)
    return _png(fig)


__all__ = ["thumbnail_png", "flux_ratio_png", "astrometry_png", "completeness_png",
           "noise_png"]
