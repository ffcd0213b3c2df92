"""A linear mosaic: group images weighted by PB^2 / sigma^2 (pure functions on arrays).

Group ``i``'s image is ``I_i = B_i S + n_i`` with ``B_i`` its primary beam (averaged over
the drift) and ``n_i`` noise of rms ``sigma_i``. The minimum-variance estimate of ``S`` is

    S = sum(B_i I_i / sigma_i^2) / sum(B_i^2 / sigma_i^2),
    rms(S) = 1 / sqrt(sum(B_i^2 / sigma_i^2)),

the inverse-variance weighting of the primary-beam-corrected images ``I_i / B_i`` (whose
variance is ``sigma_i^2 / B_i^2``).
"""

from __future__ import annotations

import numpy as np


def accumulate(num: np.ndarray, den: np.ndarray, image: np.ndarray, pb: np.ndarray,
               sigma: float, pb_cut: float) -> None:
    """Add one group's reprojected ``image`` and ``pb`` into the sums (in place); pixels
    where the beam is below ``pb_cut`` or either is blank are left out."""
    ok = np.isfinite(image) & np.isfinite(pb) & (pb >= pb_cut)
    w = np.where(ok, pb / sigma ** 2, 0.0)
    num += np.where(ok, w * np.where(ok, image, 0.0), 0.0)
    den += np.where(ok, w * pb, 0.0)


def finish(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mosaic, its noise map): NaN where no group covers a pixel."""
    with np.errstate(invalid="ignore", divide="ignore"):
        covered = den > 0
        return (np.where(covered, num / den, np.nan),
                np.where(covered, 1.0 / np.sqrt(den), np.nan))
