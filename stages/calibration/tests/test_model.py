import numpy as np
import pytest

from dsa110_pipeline.catalogs import flux_density
from dsa110_pipeline.instrument import SPEED_OF_LIGHT, airy_beam
from dsa110_pipeline.projection import radec_to_lmn
from stages.calibration.model import (
    apparent_spectra,
    model_visibilities,
    source_spectrum,
)


def test_point_source_at_centre_is_its_flux():
    rng = np.random.default_rng(0)
    uvw = rng.normal(0, 500, (20, 3))
    freqs = np.linspace(1.31e9, 1.5e9, 8)
    lmn = radec_to_lmn(np.array([[1.0]]), np.array([[0.3]]), 1.0, 0.3)
    spec = source_spectrum("3C286", freqs)
    flux = spec[None, None, :]
    vis = model_visibilities(uvw, np.zeros(20, np.int64), freqs, lmn, flux)
    np.testing.assert_allclose(vis, np.broadcast_to(spec, (20, 8)), rtol=1e-12)
    np.testing.assert_allclose(spec, flux_density("3C286", freqs))


def test_offset_source_matches_direct_sum_ms_convention():
    # MS DATA = conj(pyuvdata data), MS UVW = -(pyuvdata uvw): exp(+2πi f/c (ul+vm+w(n-1)))
    rng = np.random.default_rng(1)
    uvw = rng.normal(0, 1000, (30, 3))
    freqs = np.linspace(1.31e9, 1.5e9, 5)
    ra0, dec0 = 2.0, 0.5
    ra, dec = np.array([2.01, 1.98]), np.array([0.51, 0.49])
    lmn = radec_to_lmn(ra, dec, ra0, dec0)
    spec = np.stack([source_spectrum("a", freqs, 2.0), source_spectrum("b", freqs, 1.0, -1.0)])
    vis = model_visibilities(uvw, np.zeros(30, np.int64), freqs, lmn[None], spec[None])
    want = np.zeros((30, 5), complex)
    for k in range(2):
        l, m, n = lmn[k]  # noqa: E741
        phase = 2j * np.pi * freqs[None] / SPEED_OF_LIGHT * (
            uvw[:, :1] * l + uvw[:, 1:2] * m + uvw[:, 2:3] * (n - 1))
        want += spec[k][None] * np.exp(phase)
    np.testing.assert_allclose(vis, want, rtol=1e-9, atol=1e-9)


def test_beam_attenuation():
    freqs = np.array([1.4e9])
    ha = np.array([[0.0], [0.02]])
    out = apparent_spectra(np.array([[10.0]]), ha, np.array([[0.3], [0.3]]), 0.3, freqs)
    assert out[0, 0, 0] == pytest.approx(10.0)
    assert out[1, 0, 0] == pytest.approx(10.0 * airy_beam(0.02 * np.cos(0.3), 1.4e9)[()],
                                         rel=1e-3)
    with pytest.raises(ValueError):
        source_spectrum("J0000+0000", freqs)
