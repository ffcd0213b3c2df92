"""The perf scoring's noise-peak count against the Gaussian random-field expectation."""

from __future__ import annotations

import numpy as np
import pytest

from perf.fidelity_score import gaussian_peaks, poisson_tail


def test_gaussian_peaks_match_the_euler_characteristic_density():
    """For a unit-variance isotropic Gaussian field whose correlation is a Gaussian of σ_p
    pixels, the number of maxima above a high level u in an area A is close to the Euler
    characteristic density A λ / (2π)^{3/2} u exp(-u²/2) with λ = 1/σ_p² (Adler 1981). σ_p is
    4 pixels so that sampling the maxima on pixels lowers them little (about λu/12 σ: 6 %
    fewer peaks here; 23 % at σ_p = 2)."""
    n, s_p, u = 1024, 4.0, 3.5
    y, x = np.mgrid[:n, :n] - n // 2
    psf = np.exp(-(x**2 + y**2) / (2 * s_p**2))
    valid = np.ones((n, n), bool)
    expected = n * n / s_p**2 / (2 * np.pi) ** 1.5 * u * np.exp(-u**2 / 2)
    got = gaussian_peaks(psf, valid, bmaj_px=2.355 * s_p, level=u, n_real=6)
    assert got == pytest.approx(expected, rel=0.15)


def test_poisson_tail():
    assert poisson_tail(0, 1.0) == 1.0
    assert poisson_tail(1, 1.0) == pytest.approx(1 - np.exp(-1.0))
    assert poisson_tail(5, 0.75) == pytest.approx(1.06e-3, rel=0.02)
