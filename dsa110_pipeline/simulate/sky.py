"""Sky models for the simulator: random skies from the 1.4 GHz source counts, catalog skies,
and a VLA calibrator placed in the field. Angles in radians, fluxes in Jy, frequencies in Hz.
"""

from __future__ import annotations

import numpy as np

from ..catalogs import SourceCatalog

#: 1.4 GHz integral source counts N(>S) per square degree, a broken power law through two
#: anchors: NVSS (1.8 million sources above 2.5 mJy on 33,800 deg^2: 53 deg^-2) and 3CRR
#: (173 sources above 10.9 Jy at 178 MHz on 4.24 sr, i.e. above ~2.3 Jy at 1.4 GHz:
#: 0.0124 deg^-2). Slope -0.85 at the faint end and Euclidean (-1.5) at the bright end;
#: the break where the two meet is 45 mJy (4.5 deg^-2), so N(>1 Jy) = 0.043 deg^-2.
COUNTS_N0_PER_DEG2 = 53.0
COUNTS_S0_JY = 2.5e-3
COUNTS_SLOPE_FAINT = 0.85
COUNTS_SLOPE_BRIGHT = 1.5
COUNTS_BREAK_JY = 0.045
#: Spectral indices of random sources: normal(mean, sd).
SPECTRAL_INDEX_MEAN, SPECTRAL_INDEX_SD = -0.7, 0.2
REF_FREQ_HZ = 1.4e9


def integral_counts(s_jy: np.ndarray | float) -> np.ndarray:
    """N(>S) per square degree at 1.4 GHz for the broken power law above."""
    s = np.asarray(s_jy, dtype=float)
    n_break = COUNTS_N0_PER_DEG2 * (COUNTS_BREAK_JY / COUNTS_S0_JY) ** -COUNTS_SLOPE_FAINT
    faint = COUNTS_N0_PER_DEG2 * (s / COUNTS_S0_JY) ** -COUNTS_SLOPE_FAINT
    bright = n_break * (s / COUNTS_BREAK_JY) ** -COUNTS_SLOPE_BRIGHT
    return np.where(s < COUNTS_BREAK_JY, faint, bright)


def flux_for_density(n_per_deg2: float) -> float:
    """The flux S (Jy) above which the counts give ``n_per_deg2`` sources per square degree."""
    if n_per_deg2 <= 0:
        raise ValueError("source density must be positive")
    n_break = float(integral_counts(COUNTS_BREAK_JY))
    if n_per_deg2 >= n_break:
        return COUNTS_S0_JY * (n_per_deg2 / COUNTS_N0_PER_DEG2) ** (-1.0 / COUNTS_SLOPE_FAINT)
    return COUNTS_BREAK_JY * (n_per_deg2 / n_break) ** (-1.0 / COUNTS_SLOPE_BRIGHT)


def draw_fluxes(rng: np.random.Generator, n: int, s_min_jy: float) -> np.ndarray:
    """``n`` fluxes (Jy) drawn from the counts above ``s_min_jy`` (inverse transform)."""
    n_min = float(integral_counts(s_min_jy))
    u = rng.uniform(0.0, 1.0, n)
    return np.array([flux_for_density(n_min * (1.0 - x)) if x < 1.0 else 1e3 for x in u])


def box_area_deg2(ra_lo: float, ra_hi: float, dec_lo: float, dec_hi: float) -> float:
    """Solid angle (deg²) of an RA/Dec box (rad)."""
    return float((ra_hi - ra_lo) * (np.sin(dec_hi) - np.sin(dec_lo)) * (180.0 / np.pi) ** 2)


def random_sky(rng: np.random.Generator, n_sources: int, ra_lo: float, ra_hi: float,
               dec_lo: float, dec_hi: float) -> SourceCatalog:
    """``n_sources`` point sources uniform on the sphere inside an RA/Dec box (rad), fluxes
    from the 1.4 GHz counts with the flux floor that gives this many sources in the box.
    Spectral indices are normal(-0.7, 0.2) at 1.4 GHz."""
    if n_sources < 0:
        raise ValueError("n_sources must be >= 0")
    if not (ra_hi > ra_lo and dec_hi > dec_lo):
        raise ValueError("empty sky box")
    area = box_area_deg2(ra_lo, ra_hi, dec_lo, dec_hi)
    s_min = flux_for_density(max(n_sources, 1) / area)
    ra = np.mod(rng.uniform(ra_lo, ra_hi, n_sources), 2 * np.pi)
    dec = np.arcsin(rng.uniform(np.sin(dec_lo), np.sin(dec_hi), n_sources))
    flux = draw_fluxes(rng, n_sources, s_min)
    alpha = rng.normal(SPECTRAL_INDEX_MEAN, SPECTRAL_INDEX_SD, n_sources)
    names = np.array([f"SIM{i:05d}" for i in range(n_sources)])
    return SourceCatalog(name=names, ra=ra, dec=dec, flux_jy=flux, spectral_index=alpha,
                         ref_freq_hz=np.full(n_sources, REF_FREQ_HZ), source="<random sky>")


def angular_distance(ra1: np.ndarray, dec1: np.ndarray, ra2: float, dec2: float) -> np.ndarray:
    """Great-circle distance (rad)."""
    c = (np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(ra1 - ra2))
    return np.arccos(np.clip(c, -1.0, 1.0))


def concatenate(a: SourceCatalog, b: SourceCatalog) -> SourceCatalog:
    """Sources of ``a`` followed by those of ``b``."""
    return SourceCatalog(name=np.concatenate([a.name, b.name]), ra=np.concatenate([a.ra, b.ra]),
                         dec=np.concatenate([a.dec, b.dec]),
                         flux_jy=np.concatenate([a.flux_jy, b.flux_jy]),
                         spectral_index=np.concatenate([a.spectral_index, b.spectral_index]),
                         ref_freq_hz=np.concatenate([a.ref_freq_hz, b.ref_freq_hz]),
                         source=f"{a.source}+{b.source}")


def spectra(cat: SourceCatalog, freqs_hz: np.ndarray,
            overrides: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """Intrinsic flux (Jy) of every source at every frequency: (nsrc, nfreq). ``overrides``
    maps a source index to an exact spectrum (e.g. a flux standard)."""
    s = cat.flux_at(np.asarray(freqs_hz, dtype=float))
    for i, spec in (overrides or {}).items():
        s[i] = spec
    return s
