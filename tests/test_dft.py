"""The direct-Fourier-sum kernel against a brute-force numpy sum."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.dft import (
    predict_visibilities,
    predict_visibilities_drift,
    sincos,
)
from dsa110_pipeline.instrument import SPEED_OF_LIGHT, subband_frequencies


def _brute(uvw, freqs, lmn, flux, sign=1, unprojected=False):
    w_term = lmn[:, 2] if unprojected else lmn[:, 2] - 1.0
    tau = uvw[:, 0:1] * lmn[None, :, 0] + uvw[:, 1:2] * lmn[None, :, 1] + uvw[:, 2:3] * w_term
    ph = sign * 2 * np.pi * tau[:, :, None] * freqs[None, None, :] / SPEED_OF_LIGHT
    return (flux[None] * np.exp(1j * ph)).sum(axis=1)


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    uvw = rng.uniform(-3000, 3000, (150, 3))
    uvw[:, 2] *= 0.01
    lm = rng.uniform(-0.05, 0.05, (7, 2))
    lmn = np.column_stack([lm, np.sqrt(1 - (lm**2).sum(1))])
    freqs = subband_frequencies(3)
    flux = rng.uniform(0.1, 5.0, (7, freqs.size))
    return uvw, freqs, lmn, flux


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("unprojected", [False, True])
def test_uniform_channels_match_brute_force(case, sign, unprojected):
    uvw, freqs, lmn, flux = case
    got = predict_visibilities(uvw, freqs, lmn[:, 0], lmn[:, 1], lmn[:, 2], flux, sign=sign,
                               unprojected=unprojected)
    ref = _brute(uvw, freqs, lmn, flux, sign, unprojected)
    assert got.shape == (150, freqs.size)
    np.testing.assert_allclose(got, ref, atol=1e-8 * np.abs(flux).sum())


def test_nonuniform_channels_and_flat_spectrum(case):
    uvw, freqs, lmn, flux = case
    f = np.sort(np.random.default_rng(1).uniform(1.3e9, 1.5e9, 11))
    s = np.arange(1.0, 8.0)
    got = predict_visibilities(uvw, f, lmn[:, 0], lmn[:, 1], lmn[:, 2], s)
    ref = _brute(uvw, f, lmn, np.repeat(s[:, None], f.size, 1))
    np.testing.assert_allclose(got, ref, atol=1e-8 * s.sum())


def test_single_precision_drift_kernel(case):
    uvw, freqs, lmn, flux = case
    # two time samples with different directions and fluxes
    lmn2 = np.stack([lmn, lmn[::-1]])
    flux2 = np.stack([flux, 2 * flux])
    tidx = np.r_[np.zeros(75, int), np.ones(75, int)]
    got = predict_visibilities_drift(uvw, tidx, freqs, lmn2, flux2, unprojected=True)
    assert got.dtype == np.complex64
    ref = np.concatenate([_brute(uvw[:75], freqs, lmn2[0], flux2[0], unprojected=True),
                          _brute(uvw[75:], freqs, lmn2[1], flux2[1], unprojected=True)])
    np.testing.assert_allclose(got, ref, atol=2e-5 * np.abs(flux2).sum(axis=(1, 2)).max())


@pytest.mark.parametrize("nonuniform", [False, True])
def test_drift_rows_in_any_order(case, nonuniform):
    """Rows interleaved in time (e.g. sorted by w) give the same visibilities, row by row."""
    uvw, freqs, lmn, flux = case
    if nonuniform:
        freqs = freqs * (1 + 1e-3 * np.arange(freqs.size) ** 2 / freqs.size ** 2)
    lmn2 = np.stack([lmn, lmn[::-1], lmn])
    flux2 = np.stack([flux, 2 * flux, 0.5 * flux])
    tidx = np.arange(150) % 3
    perm = np.random.default_rng(5).permutation(150)
    got = predict_visibilities_drift(uvw[perm], tidx[perm], freqs, lmn2, flux2,
                                     precision="double", dtype=np.complex128, unprojected=False)
    ref = np.concatenate([_brute(uvw[i:i + 1], freqs, lmn2[tidx[i]], flux2[tidx[i]])
                          for i in perm])
    np.testing.assert_allclose(got, ref, atol=1e-8 * np.abs(flux2).sum(axis=(1, 2)).max())
    acc = np.ones_like(got)
    predict_visibilities_drift(uvw[perm], tidx[perm], freqs, lmn2, flux2, precision="double",
                               unprojected=False, out=acc, accumulate=True)
    np.testing.assert_allclose(acc, ref + 1, atol=1e-8 * np.abs(flux2).sum(axis=(1, 2)).max())


def test_point_source_at_phase_centre_is_real_flux(case):
    uvw, freqs, _, flux = case
    v = predict_visibilities(uvw, freqs, [0.0], [0.0], [1.0], flux[:1])
    np.testing.assert_allclose(v, np.broadcast_to(flux[0], v.shape), atol=1e-12)


def test_sincos_accuracy():
    x = np.random.default_rng(0).uniform(-2e5, 2e5, 100_000)
    s, c = sincos(x)
    np.testing.assert_allclose(s, np.sin(x), atol=1e-11)
    np.testing.assert_allclose(c, np.cos(x), atol=1e-11)


def test_bad_shapes(case):
    uvw, freqs, lmn, flux = case
    with pytest.raises(ValueError, match="flux must have shape"):
        predict_visibilities_drift(uvw, np.zeros(150, int), freqs, lmn[None], flux[None, :, :3])
    with pytest.raises(ValueError, match="time_index out of range"):
        predict_visibilities_drift(uvw, np.ones(150, int), freqs, lmn[None], flux[None])
    with pytest.raises(ValueError, match="sign"):
        predict_visibilities(uvw, freqs, lmn[:, 0], lmn[:, 1], lmn[:, 2], flux, sign=2)
