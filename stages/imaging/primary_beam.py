"""Primary-beam model on the image grid and primary-beam correction.

The beam is the Airy power pattern of a uniformly illuminated dish
(:func:`dsa110_pipeline.instrument.airy_beam`) averaged over frequency with the weight each
channel carries in the image. It depends only on the distance from the pointing centre, so it
is evaluated on a fine radial grid and interpolated, which keeps the cost O(npix^2) for any
number of channels.
"""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.instrument import DISH_DIAMETER, SIDEREAL_RATE, airy_beam

from .gridding import pixel_lm


def radial_profile(theta: np.ndarray, freqs: np.ndarray, freq_weights: np.ndarray | None = None,
                   diameter: float = DISH_DIAMETER) -> np.ndarray:
    """Frequency-weighted mean Airy power beam at angles ``theta`` (rad)."""
    freqs = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    w = np.ones_like(freqs) if freq_weights is None else np.asarray(freq_weights, np.float64)
    if w.shape != freqs.shape:
        raise ValueError(f"freq_weights shape {w.shape} differs from freqs {freqs.shape}")
    if w.sum() <= 0:
        raise ValueError("frequency weights sum to zero")
    prof = np.zeros(np.shape(theta))
    for f, wf in zip(freqs, w):
        if wf > 0:
            prof += wf * airy_beam(theta, f, diameter)
    return prof / w.sum()


def drift_pointings(t_start: float, t_end: float, dec: float, n: int = 9) -> np.ndarray:
    """(n, 2) beam-centre offsets (l, m) from the phase centre during a meridian drift scan.

    The dish points at the meridian at declination ``dec`` and the data are phased to the
    meridian at the mid-time, so the beam centre moves east at the sidereal rate:
    ``l = cos(dec) sin(da)``, ``m = sin(dec) cos(dec) (1 - cos(da))`` with
    ``da = omega (t - t_mid)``. Times in seconds.
    """
    t = np.linspace(t_start, t_end, max(int(n), 1))
    da = SIDEREAL_RATE * (t - 0.5 * (t_start + t_end))
    return np.column_stack([np.cos(dec) * np.sin(da),
                            np.sin(dec) * np.cos(dec) * (1 - np.cos(da))])


def pb_image(npix_y: int, npix_x: int, cell: float, freqs: np.ndarray,
             freq_weights: np.ndarray | None = None, *, diameter: float = DISH_DIAMETER,
             pointing_lm: tuple[float, float] | np.ndarray = (0.0, 0.0),
             oversample: int = 8) -> np.ndarray:
    """Primary beam (peak 1 when pointed at the phase centre) on an image grid, float32.

    Pixel (ny//2, nx//2) is the phase centre; the image is in FITS orientation.
    ``pointing_lm`` is the beam centre's (l, m) offset from the phase centre, or an (n, 2)
    array of such offsets over which the beam is averaged (a drift scan, see
    :func:`drift_pointings`).
    """
    pts = np.atleast_2d(np.asarray(pointing_lm, dtype=np.float64))
    if pts.shape[1] != 2:
        raise ValueError(f"pointing_lm must be (l, m) or an (n, 2) array, got {pts.shape}")
    l, m = pixel_lm(npix_y, npix_x, cell)  # noqa: E741
    step = cell / oversample
    out = np.zeros((npix_y, npix_x))
    grid = prof = None
    for lp, mp in pts:
        r = np.sqrt((l - lp) ** 2 + (m - mp) ** 2)
        theta = np.arcsin(np.minimum(r, 1.0))
        if grid is None or theta.max() > grid[-1]:
            grid = np.arange(0.0, theta.max() + 2 * step, step)
            prof = radial_profile(grid, freqs, freq_weights, diameter)
        out += np.interp(theta, grid, prof)
    return (out / len(pts)).astype(np.float32)


def pb_correct(image: np.ndarray, pb: np.ndarray, cut: float = 0.1) -> np.ndarray:
    """``image / pb`` where ``pb >= cut``, NaN elsewhere (float32)."""
    if not 0 < cut <= 1:
        raise ValueError(f"PB cut must be in (0, 1], got {cut}")
    if image.shape != pb.shape:
        raise ValueError(f"image {image.shape} and primary beam {pb.shape} differ in shape")
    out = np.full(image.shape, np.nan, dtype=np.float32)
    ok = pb >= cut
    out[ok] = image[ok] / pb[ok]
    return out
