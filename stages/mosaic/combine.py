"""A linear mosaic: group images weighted by PB^2 / sigma^2 (pure functions on arrays).

Group ``i``'s image is ``I_i = B_i S + n_i`` with ``B_i`` its primary beam (averaged over
the drift) and ``n_i`` noise of rms ``sigma_i``. The minimum-variance estimate of ``S`` is

    S = sum(B_i I_i / sigma_i^2) / sum(B_i^2 / sigma_i^2),
    rms(S) = 1 / sqrt(sum(B_i^2 / sigma_i^2)),

the inverse-variance weighting of the primary-beam-corrected images ``I_i / B_i`` (whose
variance is ``sigma_i^2 / B_i^2``). Its apparent form, ``S`` times the sensitivity
``s = sigma_0 / rms(S)`` (``sigma_0`` the lowest rms), has uniform noise ``sigma_0`` and
``s`` as its primary beam: it is validated as a group image is.
"""

from __future__ import annotations

import numpy as np


def accumulate(num: np.ndarray, den: np.ndarray, planes: np.ndarray, pb: np.ndarray,
               sigma: float, pb_cut: float) -> None:
    """Add one group's reprojected ``planes`` ((k, ny, nx): image, residual, ...) and
    ``pb`` ((ny, nx)) into the sums ``num`` ((k, ny, nx)) and ``den`` (in place); pixels
    where the beam is below ``pb_cut`` or any plane is blank are left out."""
    ok = pb >= pb_cut  # False where the beam is blank
    for p in planes:
        ok &= np.isfinite(p)
    pbz = np.where(ok, pb, 0.0)
    w = pbz * (1.0 / sigma ** 2)
    for n, p in zip(num, planes):
        n += w * np.where(ok, p, 0.0)
    den += w * pbz


def finish(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mosaic planes, the noise map): NaN where no group covers a pixel."""
    with np.errstate(invalid="ignore", divide="ignore"):
        covered = den > 0
        return (np.where(covered, num / den, np.nan),
                np.where(covered, 1.0 / np.sqrt(den), np.nan))


def apparent(mosaic: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(apparent image, sensitivity, sigma_0): the mosaic times its sensitivity
    ``sigma_0 / noise``, whose noise is ``sigma_0`` everywhere (see the module docstring).
    ``mosaic`` may hold several planes ((k, ny, nx))."""
    sigma0 = float(np.nanmin(noise))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(np.isfinite(noise), sigma0 / noise, np.nan)
    return mosaic * sens, sens, sigma0
