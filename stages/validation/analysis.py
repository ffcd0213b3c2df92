"""Validation of one image against a reference catalog, from arrays already in memory.

:func:`analyse` wires the kernels (cross-match, metrics, verdict) and returns everything
the report needs; it reads and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsa110_pipeline.catalogs import SourceCatalog

from .config import ValidationConfig
from .crossmatch import Match, crossmatch
from .finder import FinderResult
from .image_io import SkyImage
from .metrics import (
    astrometric_offsets,
    beam_summary,
    binned_fraction,
    dynamic_range,
    flux_scale,
    fraction_above,
    image_noise,
)
from .metrics.completeness import log_edges
from .metrics.noise_peaks import gaussian_noise_peaks
from .metrics.reliability import (
    SNR_LEVELS,
    Peaks,
    artefact_metrics,
    local_peaks,
    peak_window,
    sign_reliability,
)
from .verdict import VerdictResult, decide, poisson_tail

ARCSEC = np.degrees(1.0) * 3600.0
DETECTION_SNR = 5.0


@dataclass(eq=False)
class Analysis:
    """Everything measured on one image: sources, matches, metrics and the verdict."""

    finder: FinderResult
    reference: SourceCatalog  # reference sources inside the validated area
    ref_flux: np.ndarray  # intrinsic flux at the image frequency (Jy)
    ref_x: np.ndarray
    ref_y: np.ndarray
    ref_pb: np.ndarray
    ref_snr: np.ndarray  # expected apparent S/N
    src_pb: np.ndarray
    src_flux_pbcor: np.ndarray  # measured, PB-corrected (flux_measure)
    match: Match
    metrics: dict[str, Any]
    verdict: VerdictResult
    noise_sample: np.ndarray
    theoretical_rms: float | None
    curves: dict[str, Any] = field(default_factory=dict)
    #: local maxima of the S/N map of +image and of −image (at or above 5σ)
    pos_peaks: Peaks | None = None
    neg_peaks: Peaks | None = None


def _sample(arr: np.ndarray, x: np.ndarray, y: np.ndarray, fill: float = np.nan) -> np.ndarray:
    ny, nx = arr.shape
    xi = np.round(np.asarray(x, float))
    yi = np.round(np.asarray(y, float))
    ok = np.isfinite(xi) & np.isfinite(yi) & (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
    out = np.full(xi.shape, fill, float)
    out[ok] = arr[yi[ok].astype(int), xi[ok].astype(int)]
    return out


def _f(v: float) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def analyse(image: SkyImage, pb: np.ndarray | None, found: FinderResult,
            reference: SourceCatalog, cfg: ValidationConfig,
            theoretical_rms: float | None, residual: np.ndarray | None = None) -> Analysis:
    """Cross-match ``found`` with ``reference`` and compute all metrics and the verdict.

    ``pb`` is the primary beam on the image grid (None = flat); fluxes are PB-corrected
    with it. ``residual`` (same grid), when given, is used for the image noise.
    """
    data = image.data
    pbm = np.ones(data.shape, np.float32) if pb is None else np.asarray(pb, np.float32)
    if pbm.shape != data.shape:
        raise ValueError(f"primary beam {pbm.shape} and image {data.shape} differ in shape")
    valid = np.isfinite(data) & np.isfinite(pbm) & (pbm >= cfg.pb_cut)
    if image.beam is None:
        raise ValueError("analyse needs an image with a beam")
    bmaj = image.beam.bmaj
    src = found.sources
    src_pb = _sample(pbm, src.x, src.y)
    keep = np.isfinite(src_pb) & (src_pb >= cfg.pb_cut)
    src = src.select(keep)
    src_pb = src_pb[keep]
    found = FinderResult(src, found.mean, found.rms, found.method)
    resolved = (src.int_jy - src.peak_jy) > 3.0 * np.hypot(src.int_err_jy, src.peak_err_jy)
    if cfg.flux_measure == "integrated":
        measured = src.int_jy
    elif cfg.flux_measure == "peak":
        measured = src.peak_jy
    else:
        measured = np.where(resolved, src.int_jy, src.peak_jy)
    src_flux_pbcor = measured / src_pb
    src_snr = src.snr

    # reference sources inside the validated area
    freq = image.freq_hz or 1.4e9
    if len(reference):
        rx, ry = image.world2pix(reference.ra, reference.dec)
        rpb = _sample(np.where(valid, pbm, np.nan), rx, ry)
        inside = np.isfinite(rpb)
        ref = reference.select(inside)
        rx, ry, rpb = rx[inside], ry[inside], rpb[inside]
        ref_flux = (np.asarray(ref.flux_at(float(freq)), float).reshape(len(ref))
                    if len(ref) else np.zeros(0))
        ref_rms = _sample(found.rms, rx, ry)
        with np.errstate(divide="ignore", invalid="ignore"):
            ref_snr = np.where(ref_rms > 0, ref_flux * rpb / ref_rms, 0.0)
    else:
        ref = reference
        rx = ry = rpb = ref_flux = ref_snr = np.zeros(0)

    radius = cfg.match_radius_beams * bmaj
    match = crossmatch(src.ra, src.dec, ref.ra, ref.dec, radius)
    det_matched = np.zeros(len(src), bool)
    det_matched[match.det] = True
    ref_matched = np.zeros(len(ref), bool)
    ref_matched[match.ref] = True

    # flux scale
    fsel = src_snr[match.det] >= cfg.flux_snr_min
    fs = flux_scale(src_flux_pbcor[match.det][fsel], ref_flux[match.ref][fsel],
                    n_boot=cfg.n_bootstrap, seed=cfg.seed)
    # astrometry
    asel = src_snr[match.det] >= cfg.astrometry_snr_min
    ast = astrometric_offsets(match.dra[asel], match.ddec[asel])
    # completeness / reliability
    comp, n_comp = fraction_above(ref_snr, ref_matched, cfg.completeness_snr)
    comp5, n5 = fraction_above(ref_snr, ref_matched, DETECTION_SNR)
    comp10, n10 = fraction_above(ref_snr, ref_matched, 10.0)
    flux_floor = float(ref_flux.min()) if len(ref_flux) else np.inf
    rel_sel = (src_snr >= DETECTION_SNR) & (src_flux_pbcor >= flux_floor)
    rel, n_rel = fraction_above(np.where(rel_sel, 1.0, 0.0), det_matched, 0.5)
    rel_all, n_rel_all = fraction_above(src_snr, det_matched, DETECTION_SNR)
    snr_edges = log_edges(ref_snr, per_decade=4, floor=DETECTION_SNR)
    comp_curve = binned_fraction(ref_snr, ref_matched, snr_edges)
    det5 = ref_snr >= DETECTION_SNR
    flux_edges = log_edges(ref_flux[det5], per_decade=3)
    comp_flux = binned_fraction(ref_flux[det5], ref_matched[det5], flux_edges)
    # reliability against the survey: detections it would list, and whether it does
    listable = (src_snr >= DETECTION_SNR) & (len(ref) > 0) & (cfg.reference_complete_jy > 0) \
        & (src_flux_pbcor * (1.0 - 2.0 / np.maximum(src_snr, DETECTION_SNR))
           >= cfg.reference_complete_jy)
    n_listable = int(listable.sum())
    n_unlisted = int((listable & ~det_matched).sum())
    survey_rel = 1.0 - n_unlisted / n_listable if n_listable else None
    rel_edges = log_edges(src_flux_pbcor[rel_sel], per_decade=3)
    rel_flux = binned_fraction(src_flux_pbcor[rel_sel], det_matched[rel_sel], rel_edges)

    # noise
    noise_src = residual if residual is not None else data
    noise_pix = np.asarray(noise_src, np.float32)[valid]
    ns = image_noise(noise_pix)
    ratio = ns.rms / theoretical_rms if theoretical_rms and theoretical_rms > 0 else None
    rng = np.random.default_rng(cfg.seed)
    sample = noise_pix if noise_pix.size <= 200_000 else rng.choice(noise_pix, 200_000, False)
    dr = dynamic_range(np.where(valid, data, np.nan), ns.rms)
    sx, sy = image.pixel_scale
    beam = beam_summary(image.beam.bmaj, image.beam.bmin, image.beam.bpa, float(np.sqrt(sx * sy)))

    # reliability from the image's sign, and the artefacts around the brightest sources
    bmaj_px = float(image.beam_pixels()[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_map = (data - found.mean) / found.rms
    pos = local_peaks(snr_map, valid, DETECTION_SNR, bmaj_px)
    neg = local_peaks(-snr_map, valid, DETECTION_SNR, bmaj_px)
    del snr_map
    sign = sign_reliability(pos, neg)
    bmaj_b, bmin_b, bpa_b = image.beam_pixels()
    noise5 = gaussian_noise_peaks(float(valid.sum()), bmaj_b, bmin_b, bpa_b, DETECTION_SNR,
                                  peak_window(bmaj_px), seed=cfg.seed)
    art = artefact_metrics(data, valid, pos, data[pos.y.astype(int), pos.x.astype(int)],
                           bmaj_px)
    rel5 = sign.estimate(DETECTION_SNR)
    known = [v for v in (rel5, survey_rel) if v is not None]

    verdict = decide(flux_ratio=fs.median, n_flux=fs.n,
                     astrometric_rms_arcsec=ast.rms * ARCSEC if ast.n else None,
                     n_astrometry=ast.n, completeness=comp, n_completeness=n_comp,
                     noise_ratio=ratio, thresholds=cfg.thresholds, reliability=rel5,
                     n_peaks=sign.n_pos[0], n_neg_peaks=sign.n_neg[0],
                     artefact_ratio=art.worst_annulus_ratio, noise_peaks=noise5,
                     survey_reliability=survey_rel, n_survey=n_listable,
                     n_unlisted=n_unlisted)
    metrics: dict[str, Any] = {
        "finder": found.method,
        "n_sources": len(src),
        "n_sources_above_5sigma": int((src_snr >= DETECTION_SNR).sum()),
        "n_sources_resolved": int(resolved.sum()),
        "n_sources_by_fit": {str(k): int(v) for k, v in
                             zip(*np.unique(src.fit, return_counts=True))},
        "n_reference_in_field": len(ref),
        "n_matched": len(match),
        "match_radius_arcsec": radius * ARCSEC,
        "image_freq_hz": float(freq),
        "flux_scale": {"median_ratio": _f(fs.median), "ci95_low": _f(fs.ci_low),
                       "ci95_high": _f(fs.ci_high), "n": fs.n, "measure": cfg.flux_measure,
                       "snr_min": cfg.flux_snr_min},
        "astrometry": {"median_dra_arcsec": _f(ast.median_dra * ARCSEC),
                       "median_ddec_arcsec": _f(ast.median_ddec * ARCSEC),
                       "rms_dra_arcsec": _f(ast.rms_dra * ARCSEC),
                       "rms_ddec_arcsec": _f(ast.rms_ddec * ARCSEC),
                       "rms_arcsec": _f(ast.rms * ARCSEC), "n": ast.n,
                       "snr_min": cfg.astrometry_snr_min},
        "completeness": {"value": _f(comp), "snr_min": cfg.completeness_snr, "n": n_comp,
                         "above_5sigma": _f(comp5), "n_above_5sigma": n5,
                         "above_10sigma": _f(comp10), "n_above_10sigma": n10,
                         "by_expected_snr": _curve(comp_curve),
                         "by_flux_jy": _curve(comp_flux)},
        "reliability": {"above_5sigma_and_reference_limit": _f(rel), "n": n_rel,
                        "above_5sigma": _f(rel_all), "n_above_5sigma": n_rel_all,
                        "reference_flux_floor_jy": _f(flux_floor),
                        "by_flux_jy": _curve(rel_flux),
                        "survey": {"value": _f(survey_rel), "n": n_listable,
                                   "n_unlisted": n_unlisted,
                                   "complete_jy": cfg.reference_complete_jy}},
        #: the stage's reliability estimate at 5σ: the lower of the sign's and the survey's
        "reliability_estimate": _f(min(known)) if known else None,
        "noise": {"image_rms_jy": _f(ns.rms), "median_jy": _f(ns.median),
                  "theoretical_rms_jy": _f(theoretical_rms) if theoretical_rms else None,
                  "ratio": _f(ratio) if ratio is not None else None,
                  "n_pixels": ns.n_pixels, "from": "residual" if residual is not None
                  else "image"},
        "sign_reliability": {
            "estimate": {f"{t:g}sigma": sign.estimate(t) for t in SNR_LEVELS},
            "neg_over_pos": {f"{t:g}sigma": sign.neg_over_pos(t) for t in SNR_LEVELS},
            "n_pos": {f"{t:g}sigma": n for t, n in zip(SNR_LEVELS, sign.n_pos)},
            "n_neg": {f"{t:g}sigma": n for t, n in zip(SNR_LEVELS, sign.n_neg)},
            "noise_peaks": {"5sigma": _f(noise5)},
            "p_noise": {"5sigma": _f(poisson_tail(sign.n_neg[0], noise5))},
            "peaks": {"x": pos.x.tolist(), "y": pos.y.tolist(),
                      "snr": [round(v, 2) for v in pos.snr.tolist()]},
            "neg_peaks": {"x": neg.x.tolist(), "y": neg.y.tolist(),
                          "snr": [round(v, 2) for v in neg.snr.tolist()]}},
        "artefacts": {"annulus_rms_ratio": [_f(v) for v in art.annulus_ratio],
                      "worst_annulus_rms_ratio": art.worst_annulus_ratio,
                      "bright_peak_jy": [_f(v) for v in art.peak_jy],
                      "far_rms_jy": _f(art.far_rms_jy),
                      "most_negative_over_peak": _f(art.neg_to_peak)},
        "dynamic_range": _f(dr),
        "peak_jy": _f(float(np.nanmax(np.where(valid, data, np.nan)))) if valid.any() else None,
        "beam": beam,
        "pb_cut": cfg.pb_cut,
        "verdict": verdict.verdict.value,
    }
    return Analysis(finder=found, reference=ref, ref_flux=ref_flux, ref_x=rx, ref_y=ry,
                    ref_pb=rpb, ref_snr=ref_snr, src_pb=src_pb, src_flux_pbcor=src_flux_pbcor,
                    match=match, metrics=metrics, verdict=verdict, noise_sample=sample,
                    theoretical_rms=theoretical_rms,
                    curves={"completeness_snr": comp_curve, "completeness_flux": comp_flux,
                            "reliability_flux": rel_flux}, pos_peaks=pos, neg_peaks=neg)


def _curve(b: Any) -> dict[str, list]:
    return {"edges": [float(e) for e in b.edges], "total": [int(t) for t in b.total],
            "matched": [int(t) for t in b.flagged],
            "fraction": [None if not np.isfinite(f) else float(f) for f in b.fraction]}


__all__ = ["Analysis", "analyse", "ARCSEC", "DETECTION_SNR"]
