"""What tonight's sky does that the survey catalog does not say: the injected variable
sources (flares, dips and steps, each at its transit) and the sources left out of the
survey (new sources to find). Pure functions of a random generator and the sky."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import coordinates as coords
from .. import instrument as ins
from ..catalogs import SourceCatalog
from .config import SimulationConfig


def unsurveyed(rng: np.random.Generator, flux_jy: np.ndarray, cfg: SimulationConfig,
               exclude: set[int]) -> np.ndarray:
    """Mask of the sources the survey catalog holds: all but ``cfg.n_unsurveyed`` chosen
    among those of at least ``cfg.unsurveyed_min_flux_jy`` not in ``exclude``."""
    keep = np.ones(len(flux_jy), bool)
    if cfg.n_unsurveyed:
        pool = [i for i in np.flatnonzero(np.asarray(flux_jy) >= cfg.unsurveyed_min_flux_jy)
                if i not in exclude]
        keep[rng.choice(pool, min(cfg.n_unsurveyed, len(pool)), replace=False)] = False
    return keep


def transit_groups(sky: SourceCatalog, cfg: SimulationConfig, jd0: float,
                    file_dur: float, location: Any) -> np.ndarray | None:
    """Per source, the group during which it transits within
    ``cfg.variable_max_offset_deg`` of the pointing declination, else -1 (None: not
    asked)."""
    if cfg.variable_max_offset_deg is None or cfg.n_variables <= 0 or not len(sky):
        return None
    jd = jd0 + (np.arange(cfg.n_groups) + 0.5) * file_dur / 86400.0
    lst = coords.local_sidereal_time(jd, location)
    ha = np.angle(np.exp(1j * (lst[:, None] - np.asarray(sky.ra)[None, :])))  # (ng, nsrc)
    tg = np.argmin(np.abs(ha), axis=0)
    half_group = 0.5 * file_dur * ins.SIDEREAL_RATE  # HA swept in half a group (rad)
    near = np.abs(np.asarray(sky.dec) - math.radians(cfg.dec_deg)) <= math.radians(
        cfg.variable_max_offset_deg)
    inside = np.abs(ha[tg, np.arange(len(sky))]) <= half_group
    return np.where(near & inside, tg, -1)


def variability(rng: np.random.Generator, flux_ref: np.ndarray, cfg: SimulationConfig,
                exclude: set[int], transit_group: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per group and source, the flux factor of the injected variables (``n_groups``,
    ``nsrc``; 1 for steady sources), and each source's kind ("" steady, "flare", "dip",
    "step"). A flare or dip lasts ``variable_duration_groups`` groups, starting at a random
    group with a steady group on either side where the night allows; a step starts at a
    random group after the first. With ``transit_group`` (per source, its transit group or
    -1), only transiting sources are chosen and, within a night, each change starts the
    group after its transit (where the night allows)."""
    n, ng = len(flux_ref), (cfg.variable_nights or cfg.n_groups)
    factor = np.ones((ng, n))
    kind = np.full(n, "", dtype=object)
    pool = [i for i in np.flatnonzero(flux_ref >= cfg.variable_min_flux_jy)
            if i not in exclude and (transit_group is None or transit_group[i] >= 0)]
    if cfg.n_variables <= 0 or not pool or ng < 2:
        return np.ones((cfg.n_groups, n)), kind.astype(str)
    chosen = rng.choice(pool, min(cfg.n_variables, len(pool)), replace=False)
    # within a night each change starts the group after the transit: the transit group
    # sees the source steady whichever three groups its image holds it in (at the transit
    # group itself, a source first seen there showed no change: 20 of 60 in the survey
    # suite); between nights: any night
    at = None if cfg.variable_nights or transit_group is None else transit_group + 1
    d = max(1, min(cfg.variable_duration_groups, ng - 2 if ng > 2 else 1))
    for j, i in enumerate(chosen):
        k = ("flare", "dip", "step")[j % 3]
        a = cfg.variable_amplitudes[(j // 3) % len(cfg.variable_amplitudes)]
        if k == "step":
            g0 = int(rng.integers(1, ng)) if at is None else min(max(int(at[i]), 1), ng - 1)
            factor[g0:, i] = 1.0 + a
        else:
            lo, hi = (1, ng - d) if ng - d > 1 else (0, ng - d + 1)
            g0 = int(rng.integers(lo, max(hi, lo + 1))) if at is None else \
                min(max(int(at[i]), lo), max(hi - 1, lo))
            factor[g0:g0 + d, i] = 1.0 + a if k == "flare" else max(1.0 - a, 0.05)
        kind[i] = k
    if cfg.variable_nights:  # tonight's factors, for every group of the night
        factor = np.repeat(factor[cfg.variable_night][None, :], cfg.n_groups, axis=0)
    return factor, kind.astype(str)
