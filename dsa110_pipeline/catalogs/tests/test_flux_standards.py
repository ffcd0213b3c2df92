import math

import numpy as np
import pytest

from dsa110_pipeline.catalogs import flux_density, is_flux_standard, spectral_index


def _pb17(coeffs, ghz):
    x = math.log10(ghz)
    return 10 ** sum(a * x**k for k, a in enumerate(coeffs))


def test_3c286_at_1p4ghz():
    # log S = 1.2481 - 0.4507 x - 0.1798 x^2 + 0.0357 x^3, x = log10(1.4)
    assert flux_density("3C286", 1.4e9) == pytest.approx(15.084, abs=0.005)
    assert flux_density("3C286", 1.4e9) == pytest.approx(14.9, rel=0.015)


@pytest.mark.parametrize("name,coeffs", [
    ("3C48", (1.3253, -0.7553, -0.1914, 0.0498)),
    ("3C138", (1.0088, -0.4981, -0.155, -0.010, 0.022)),
    ("3C147", (1.4516, -0.6961, -0.201, 0.064, -0.046, 0.029)),
    ("3C286", (1.2481, -0.4507, -0.1798, 0.0357)),
])
def test_polynomial_over_band(name, coeffs):
    freqs = np.array([1.3e9, 1.4e9, 1.5e9, 3.0e9])
    got = flux_density(name, freqs)
    want = [_pb17(coeffs, f / 1e9) for f in freqs]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("name,vla_l_band_jy", [
    ("3C48", 16.5), ("3C138", 8.47), ("3C147", 22.5), ("3C286", 15.0)])
def test_close_to_vla_list_l_band(name, vla_l_band_jy):
    # the VLA list's 20 cm fluxes are older, rounder values near 1.4 GHz
    assert flux_density(name, 1.4e9) == pytest.approx(vla_l_band_jy, rel=0.03)


def test_aliases_and_errors():
    assert flux_density("J1331+3030", 1.4e9) == flux_density("3c 286", 1.4e9)
    assert is_flux_standard("3C147") and not is_flux_standard("3C273")
    with pytest.raises(KeyError, match="3C273"):
        flux_density("3C273", 1.4e9)
    with pytest.raises(ValueError, match="range"):
        flux_density("3C286", 10e6)


def test_spectral_index_matches_finite_difference():
    f = 1.4e9
    h = 1e-4
    num = (math.log10(flux_density("3C286", f * 10**h))
           - math.log10(flux_density("3C286", f * 10**-h))) / (2 * h)
    assert spectral_index("3C286", f) == pytest.approx(num, abs=1e-6)
    assert -0.6 < spectral_index("3C286", f) < -0.4
