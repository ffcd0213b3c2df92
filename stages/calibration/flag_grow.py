"""Flags spread over the cube ``(n_time, n_bl, n_chan, n_pol)``: (time, channel) cells
flagged on all baselines, whole channels and integrations when mostly flagged, and a
plane of flags or'd into every baseline with the polarisations together. numba kernels
working in place, no I/O."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, parallel=True)
def _cell_counts(flags):  # pragma: no cover
    """Flagged samples per (time, chan) over baselines and polarisations."""
    nt, nb, nc, npol = flags.shape
    out = np.zeros((nt, nc), np.int64)
    for t in numba.prange(nt):
        for b in range(nb):
            for c in range(nc):
                for p in range(npol):
                    if flags[t, b, c, p]:
                        out[t, c] += 1
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def or_cells(flags, cells):  # pragma: no cover
    """flags[t, b, c, :] |= cells[t, c] in place."""
    nt, nb, nc, npol = flags.shape
    for t in numba.prange(nt):
        for c in range(nc):
            if cells[t, c]:
                for b in range(nb):
                    for p in range(npol):
                        flags[t, b, c, p] = True


@numba.njit(cache=True, nogil=True, parallel=True)
def or_plane_joint(flags, plane):  # pragma: no cover
    """flags |= plane[t, c, p] (broadcast over baselines), then polarisations together."""
    nt, nb, nc, npol = flags.shape
    for t in numba.prange(nt):
        for b in range(nb):
            for c in range(nc):
                hit = False
                for p in range(npol):
                    hit = hit or flags[t, b, c, p] or plane[t, c, p]
                if hit:
                    for p in range(npol):
                        flags[t, b, c, p] = True


def _grow_cells(cnt: np.ndarray, per_cell: int, fraction: float,
                axis_fraction: float) -> np.ndarray:
    """(time, chan) cells to flag everywhere, from the flagged counts per cell."""
    nt, nc = cnt.shape
    cell = cnt > fraction * per_cell if fraction < 1.0 else np.zeros(cnt.shape, bool)
    cnt = np.where(cell, per_cell, cnt)
    if axis_fraction < 1.0:
        chan = cnt.sum(axis=0) > axis_fraction * nt * per_cell
        time_ = cnt.sum(axis=1) > axis_fraction * nc * per_cell
        cell = cell | chan[None, :] | time_[:, None]
    return cell


def grow_inplace(flags: np.ndarray, fraction: float, axis_fraction: float = 1.0) -> None:
    """Flag (time, chan) cells on all baselines, in place, when more than ``fraction`` of
    the baselines flagged them, and whole channels or integrations above
    ``axis_fraction``."""
    cell = _grow_cells(_cell_counts(flags), flags.shape[1] * flags.shape[3], fraction,
                       axis_fraction)
    if cell.any():
        or_cells(flags, cell)


__all__ = ["grow_inplace", "or_cells", "or_plane_joint"]
