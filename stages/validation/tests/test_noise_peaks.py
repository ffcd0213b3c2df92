import numpy as np
import pytest
from scipy import fft

from stages.validation.metrics.noise_peaks import gaussian_noise_peaks
from stages.validation.metrics.reliability import local_peaks, peak_window


def _correlated_noise(n: int, fwhm_x: float, fwhm_y: float, rng) -> np.ndarray:
    """Unit-variance Gaussian noise whose autocorrelation is a Gaussian of the given FWHMs
    (pixels; x along columns): white noise convolved with a Gaussian √2 narrower."""
    sx, sy = (f / np.sqrt(8 * np.log(2)) / np.sqrt(2) for f in (fwhm_x, fwhm_y))
    y, x = np.mgrid[-n // 2:n // 2, -n // 2:n // 2]
    kern = fft.rfft2(fft.ifftshift(np.exp(-0.5 * ((x / sx) ** 2 + (y / sy) ** 2))))
    f = fft.irfft2(fft.rfft2(rng.standard_normal((n, n))) * kern, s=(n, n))
    return f / f.std()


@pytest.mark.parametrize("bmaj,bmin", [(4.3, 2.6), (3.0, 3.0)])
def test_noise_peak_count_matches_simulated_noise(bmaj, bmin):
    """The predicted count against noise images counted by the stage's own peak finder, at
    3.5σ (hundreds of peaks, so the comparison is to a few per cent); the continuous-field
    (Euler characteristic) formula would say twice as many."""
    rng = np.random.default_rng(3)
    n, level, reals = 1024, 3.5, 3
    # the beam's major axis along y (position angle 0): the noise's wider FWHM is along y
    counts = [local_peaks(_correlated_noise(n, bmin, bmaj, rng), np.ones((n, n), bool), level,
                          bmaj).snr.size for _ in range(reals)]
    want = gaussian_noise_peaks(n * n, bmaj, bmin, 0.0, level, peak_window(bmaj))
    assert np.mean(counts) == pytest.approx(want, rel=0.12)
    s1, s2 = (b / np.sqrt(8 * np.log(2)) for b in (bmaj, bmin))
    euler = n * n / (s1 * s2) * (2 * np.pi) ** -1.5 * level * np.exp(-level ** 2 / 2)
    assert euler > 1.5 * want


def test_noise_peak_count_scales_with_area_and_falls_with_level():
    g5 = gaussian_noise_peaks(2048 ** 2, 4.3, 2.6, 0.3, 5.0, 5)
    assert 0.5 < g5 < 2.0  # about one 5σ noise peak per sign on a 2048² DSA-110 image
    assert gaussian_noise_peaks(1024 ** 2, 4.3, 2.6, 0.3, 5.0, 5) == pytest.approx(g5 / 4)
    assert gaussian_noise_peaks(2048 ** 2, 4.3, 2.6, 0.3, 6.0, 5) < 0.05 * g5
    assert gaussian_noise_peaks(0.0, 4.3, 2.6, 0.3, 5.0, 5) == 0.0
