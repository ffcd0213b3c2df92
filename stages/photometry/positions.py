"""Positions to measure at: one per source when lists overlap (a pure function)."""

from __future__ import annotations

import numpy as np


def first_of_each(ra: np.ndarray, dec: np.ndarray, radius: float) -> np.ndarray:
    """Mask of the positions (rad) with no earlier position within ``radius`` (rad)."""
    from scipy.spatial import cKDTree

    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    keep = np.ones(ra.size, bool)
    if ra.size < 2:
        return keep
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    pairs = cKDTree(xyz).query_pairs(2 * np.sin(radius / 2), output_type="ndarray")
    keep[pairs[:, 1]] = False  # pairs are (i, j) with i < j: j repeats an earlier one
    return keep
