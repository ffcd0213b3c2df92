"""Flags per antenna: dead antennas (too little unflagged cross-correlation data) flagged
whole, and the flag summary of a cube (overall, per antenna, per channel). Pure
numpy/numba, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def _good_counts(flags):  # pragma: no cover
    """Unflagged samples per baseline (n_bl,) and per (baseline, channel) summed over
    time and polarisation (n_bl, n_chan)."""
    nt, nb, nc, npol = flags.shape
    per_bc = np.zeros((nb, nc), np.int64)
    for b in numba.prange(nb):
        for t in range(nt):
            for c in range(nc):
                for p in range(npol):
                    if not flags[t, b, c, p]:
                        per_bc[b, c] += 1
    return per_bc


def flag_dead_antennas(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                       *, min_good_fraction: float = 0.05,
                       inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flag every baseline of antennas with less than ``min_good_fraction`` unflagged
    cross-correlation data. Returns (new flags, or ``flags`` updated with ``inplace``;
    boolean mask of dead antennas)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    frac = antenna_good_fraction(flags, ant1, ant2, n_ant)
    present = np.zeros(n_ant, dtype=bool)
    cross = ant1 != ant2
    present[ant1[cross]] = True
    present[ant2[cross]] = True
    dead = present & (frac < min_good_fraction)
    out = flags if inplace else flags.copy()
    if dead.any():
        bl = dead[ant1] | dead[ant2]
        out[:, bl] = True
    return out, dead


def _antenna_fraction(per_bl_good: np.ndarray, per_bl_total: float, ant1: np.ndarray,
                      ant2: np.ndarray, n_ant: int) -> np.ndarray:
    cross = ant1 != ant2
    good_bl = per_bl_good[cross].astype(float)
    total_bl = np.full(good_bl.shape, float(per_bl_total))
    good = np.bincount(ant1[cross], good_bl, n_ant) + np.bincount(ant2[cross], good_bl, n_ant)
    total = np.bincount(ant1[cross], total_bl, n_ant) + np.bincount(ant2[cross], total_bl,
                                                                     n_ant)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, good / total, 0.0)


def antenna_good_fraction(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
                          n_ant: int) -> np.ndarray:
    """Fraction of unflagged cross-correlation samples per antenna (0 for absent antennas)."""
    per_bl = _good_counts(np.asarray(flags, bool)).sum(axis=1)
    total = flags.shape[0] * flags.shape[2] * flags.shape[3]
    return _antenna_fraction(per_bl, total, np.asarray(ant1), np.asarray(ant2), n_ant)


@dataclass(frozen=True)
class FlagSummary:
    """Flag fractions: overall, per antenna (cross-correlations) and per channel."""

    total: float
    per_antenna: np.ndarray
    per_channel: np.ndarray
    dead_antennas: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {"flagged_fraction": self.total,
                "per_antenna": [round(float(v), 4) for v in self.per_antenna],
                "per_channel": [round(float(v), 4) for v in self.per_channel],
                "dead_antennas": list(self.dead_antennas)}


def flag_summary(flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray, n_ant: int,
                 dead: np.ndarray | None = None) -> FlagSummary:
    """Flag fractions of a cube (cross-correlations only)."""
    ant1 = np.asarray(ant1)
    ant2 = np.asarray(ant2)
    cross = ant1 != ant2
    nt, _, nc, npol = flags.shape
    per_bc = _good_counts(np.asarray(flags, bool))
    per_ant = 1.0 - _antenna_fraction(per_bc.sum(axis=1), nt * nc * npol, ant1, ant2, n_ant)
    dead_idx = tuple(int(i) for i in np.flatnonzero(dead)) if dead is not None else ()
    n_x = int(cross.sum())
    if n_x == 0 or nt * nc * npol == 0:
        return FlagSummary(total=1.0, per_antenna=per_ant, per_channel=np.ones(0),
                           dead_antennas=dead_idx)
    good_c = per_bc[cross].sum(axis=0)
    return FlagSummary(total=1.0 - float(good_c.sum()) / (n_x * nt * nc * npol),
                       per_antenna=per_ant, per_channel=1.0 - good_c / (n_x * nt * npol),
                       dead_antennas=dead_idx)


__all__ = ["flag_dead_antennas", "antenna_good_fraction", "FlagSummary", "flag_summary"]
