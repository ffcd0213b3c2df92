"""Catalog sources outside the image ("outliers"): predicted with their moving beam and
subtracted from the visibilities, and refined from the data before CLEAN
(``catalogs.refine``: a survey's flux and position errors leave sidelobe stripes)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dsa110_pipeline.catalogs.refine import FitLimits, refine_sources, refined
from dsa110_pipeline.dft import predict_visibilities_drift

from .drift_beam import DriftBeamModel
from .vis_chunk import VisChunk

#: The most channels the outlier fit reads (evenly spread over the band), and the most
#: sources inside the image it fits beside the outliers (nuisances: the brightest, whose
#: sidelobes would bias the outliers')
_OUTLIER_FIT_CHANNELS = 16
_OUTLIER_FIT_INSIDE = 5


def join_sources(*parts: tuple[np.ndarray, np.ndarray] | None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """Concatenate (lmn, flux) source sets along the source axis (None parts skipped)."""
    got = [x for x in parts if x is not None]
    if not got:
        return None
    if len(got) == 1:
        return got[0]
    return (np.ascontiguousarray(np.concatenate([g[0] for g in got], axis=1)),
            np.ascontiguousarray(np.concatenate([g[1] for g in got], axis=1)))


def on_channels(sources: tuple[np.ndarray, np.ndarray], drift: DriftBeamModel,
                freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lmn, flux) of a source set with the flux axis cut to the channels ``freq``."""
    return sources[0], np.ascontiguousarray(sources[1][:, :, np.searchsorted(drift.freqs,
                                                                              freq)])


def subtract_sources(cached: list[tuple[VisChunk, np.ndarray]], drift: DriftBeamModel,
                     sources: tuple[np.ndarray, np.ndarray], nthreads: int) -> None:
    """Subtract sources (lmn, flux over ``drift.freqs``) from the cached chunks' visibilities
    in place, by a direct Fourier sum with their moving beam."""
    for ch, _ in cached:
        lmn, flux = on_channels(sources, drift, ch.freq)
        predict_visibilities_drift(ch.uvw, drift.time_index(ch.time), ch.freq, lmn, -flux,
                                   sign=1, unprojected=False, out=ch.vis, accumulate=True,
                                   nthreads=nthreads)


def refine_outliers(chunks: Iterable[tuple[VisChunk, np.ndarray]], drift: DriftBeamModel,
                    model: tuple[np.ndarray, np.ndarray], *, most: int, min_jy: float,
                    min_snr: float, nthreads: int,
                    owned: list[tuple[VisChunk, np.ndarray]] | None
                    ) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """The outlier model refined from the data (``catalogs.refine``), and how many sources
    changed; with ``owned`` (visibilities from which the old model was subtracted) the
    difference is subtracted from them as well.

    The brightest ``most`` outliers are fitted, those the fit sees at ``min_snr`` changed;
    the catalog sources inside the image above ``min_jy`` are its nuisances. The fit reads
    every row on at most ``_OUTLIER_FIT_CHANNELS`` channels, before any CLEAN
    (components CLEAN put on an outlier's sidelobes would stay in the model). The brightest
    catalog sources inside the image are fitted with it as nuisances.
    """
    lmn, flux = model
    top = np.argsort(-np.abs(flux).mean(axis=(0, 2)), kind="stable")[:most]
    inside = drift.catalog_tracks(inside=True, min_jy=min_jy,
                                  most=_OUTLIER_FIT_INSIDE)
    blocks = []
    for ch, w in chunks:
        if ch.time is None or not np.any(w):
            continue
        q = max(1, -(-len(ch.freq) // _OUTLIER_FIT_CHANNELS))
        blocks.append((ch.uvw, drift.time_index(ch.time), ch.freq[::q],
                       np.array(ch.vis[:, ::q], dtype=np.complex64),
                       np.array(w[:, ::q], dtype=np.float32)))
    if not blocks or any(not np.array_equal(b[2], blocks[0][2]) for b in blocks):
        return model, 0  # no times, or chunks on different channels: left as catalogued
    freq = blocks[0][2]
    fit_lmn, fit_flux = on_channels((lmn[:, top], flux[:, top]), drift, freq)
    subtracted = np.full(top.size, owned is not None)
    if inside is not None:
        in_lmn, in_flux = on_channels(inside, drift, freq)
        fit_lmn = np.concatenate([fit_lmn, in_lmn], axis=1)
        fit_flux = np.concatenate([fit_flux, in_flux], axis=1)
        subtracted = np.concatenate([subtracted, np.zeros(in_lmn.shape[1], bool)])
    tau = drift.times - drift.t_mid
    tau = tau / max(float(np.max(np.abs(tau))), 1e-9)
    fit = refine_sources(np.concatenate([b[0] for b in blocks]),
                         np.concatenate([b[1] for b in blocks]), freq,
                         np.concatenate([b[3] for b in blocks]),
                         np.concatenate([b[4] for b in blocks]),
                         np.ascontiguousarray(fit_lmn), np.ascontiguousarray(fit_flux), tau,
                         FitLimits(min_snr=min_snr), nthreads=nthreads,
                         subtracted=subtracted)
    del blocks
    ok = fit.fitted[:top.size]
    if not ok.any():
        return model, 0
    done = top[ok]
    new_lmn, new_flux = refined(lmn[:, done], flux[:, done], fit.params[:top.size][ok],
                                drift.freqs, fit.ref_freq, tau)
    if owned is not None:  # put the old prediction back and take the new one out
        subtract_sources(owned, drift, (np.concatenate([new_lmn, lmn[:, done]], axis=1),
                                        np.concatenate([new_flux, -flux[:, done]], axis=1)),
                         nthreads)
    lmn, flux = lmn.copy(), flux.copy()
    lmn[:, done], flux[:, done] = new_lmn, new_flux
    return (np.ascontiguousarray(lmn), np.ascontiguousarray(flux)), int(done.size)
