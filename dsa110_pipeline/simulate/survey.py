"""What a night would have from a survey (NVSS) of the simulated sky, instead of the truth.

A real night knows its sky only through a survey catalog: NVSS at 1.4 GHz (45″ beam),
complete above about 2.5 mJy, with flux errors of about 3 % ⊕ 0.45 mJy and position errors
of about 1″ for bright sources growing to about 7″ near the limit, no spectral indices, and
sources closer than the survey beam blended into one entry. :func:`survey_view` turns the
simulator's sky into such a catalog, so that the pipeline is never handed the truth.
Pure functions on arrays; the file is written by :func:`write_survey_catalog`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..catalogs import SURVEY_CATALOG, SourceCatalog
from ..instrument import ARCSEC


@dataclass(frozen=True)
class SurveyModel:
    """The survey's character (NVSS defaults)."""

    freq_hz: float = 1.4e9
    beam_arcsec: float = 45.0
    #: Entries below this catalog flux are absent (NVSS: complete above ~2.5 mJy).
    flux_limit_jy: float = 2.5e-3
    #: Flux error: ``flux_frac`` of the flux in quadrature with ``flux_floor_jy``.
    flux_frac: float = 0.03
    flux_floor_jy: float = 0.45e-3
    #: Position error per axis (″): ``pos_floor_arcsec`` in quadrature with
    #: ``pos_snr_arcsec`` / SNR, SNR = flux / ``flux_floor_jy`` (1″ bright, ~7″ radial at
    #: the limit).
    pos_floor_arcsec: float = 1.0
    pos_snr_arcsec: float = 25.0


def blend(ra: np.ndarray, dec: np.ndarray, flux: np.ndarray, radius: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge sources closer than ``radius`` (rad) into one, friends of friends: fluxes
    add, positions are flux-weighted. Returns (ra, dec, flux, group index of each input)."""
    n = ra.size
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if n > 1:
        xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
        order = np.argsort(dec)
        chord = 2 * np.sin(radius / 2)
        for a_pos, a in enumerate(order):
            for b in order[a_pos + 1:]:
                if dec[b] - dec[a] > radius:
                    break
                if np.linalg.norm(xyz[a] - xyz[b]) <= chord:
                    ra_, rb_ = root(a), root(b)
                    if ra_ != rb_:
                        parent[max(ra_, rb_)] = min(ra_, rb_)
    roots = np.array([root(i) for i in range(n)], dtype=int)
    uniq, group = np.unique(roots, return_inverse=True)
    w = np.bincount(group, weights=flux, minlength=uniq.size)
    # flux-weighted mean position on the unit sphere
    x = np.bincount(group, flux * np.cos(dec) * np.cos(ra), uniq.size)
    y = np.bincount(group, flux * np.cos(dec) * np.sin(ra), uniq.size)
    z = np.bincount(group, flux * np.sin(dec), uniq.size)
    ra_b = np.mod(np.arctan2(y, x), 2 * np.pi)
    dec_b = np.arctan2(z, np.hypot(x, y))
    return ra_b, dec_b, w, group


def survey_view(sky: SourceCatalog, rng: np.random.Generator,
                model: SurveyModel = SurveyModel()) -> SourceCatalog:
    """The survey catalog of ``sky``: blended at the survey beam, fluxes at the survey
    frequency with errors, positions with SNR-dependent errors, faint entries dropped, and
    no spectral indices (the default index stands in for them, as for NVSS)."""
    s = np.asarray(sky.flux_at(model.freq_hz), dtype=float).reshape(-1)
    ra, dec, flux, _ = blend(np.asarray(sky.ra, float), np.asarray(sky.dec, float), s,
                             model.beam_arcsec * ARCSEC)
    n = flux.size
    err = np.hypot(model.flux_frac * flux, model.flux_floor_jy)
    measured = flux + err * rng.standard_normal(n)
    snr = np.maximum(flux / model.flux_floor_jy, 1e-3)
    sig = np.hypot(model.pos_floor_arcsec, model.pos_snr_arcsec / snr) * ARCSEC
    dec_m = dec + sig * rng.standard_normal(n)
    ra_m = np.mod(ra + sig * rng.standard_normal(n) / np.maximum(np.cos(dec), 1e-6),
                  2 * np.pi)
    keep = measured >= model.flux_limit_jy
    names = np.array([_survey_name(a, d) for a, d in zip(ra_m[keep], dec_m[keep])], dtype=str)
    return SourceCatalog.from_arrays(ra_m[keep], dec_m[keep], measured[keep], name=names,
                                     ref_freq_hz=model.freq_hz, pos_err=sig[keep],
                                     source="survey view")


def _survey_name(ra: float, dec: float) -> str:
    h = math.degrees(ra) / 15.0
    d = math.degrees(dec)
    sign = "+" if d >= 0 else "-"
    d = abs(d)
    return (f"SURV J{int(h):02d}{int(h * 60) % 60:02d}{(h * 3600) % 60:04.1f}"
            f"{sign}{int(d):02d}{int(d * 60) % 60:02d}{(d * 3600) % 60:02.0f}")


def write_survey_catalog(cat: SourceCatalog, path: Path,
                         model: SurveyModel = SurveyModel()) -> Path:
    """Write ``cat`` as an NVSS-like CSV (name, ra_deg, dec_deg, flux_jy, flux_err_jy,
    pos_err_arcsec: the position's 1-sigma error per axis, as NVSS lists); no
    spectral-index column, as NVSS has none."""
    err = np.hypot(model.flux_frac * cat.flux_jy, model.flux_floor_jy)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "ra_deg", "dec_deg", "flux_jy", "flux_err_jy", "pos_err_arcsec"])
        for k in np.argsort(-cat.flux_jy, kind="stable"):
            w.writerow([cat.name[k], f"{math.degrees(cat.ra[k]):.6f}",
                        f"{math.degrees(cat.dec[k]):.6f}", f"{cat.flux_jy[k]:.6g}",
                        f"{err[k]:.3g}", f"{cat.pos_err[k] / ARCSEC:.2f}"])
    return path


__all__ = ["SURVEY_CATALOG", "SurveyModel", "blend", "survey_view", "write_survey_catalog"]
