"""Refining catalog sources from the visibilities (``catalogs.refine``), against a truth made
with plain numpy exponentials, not the DFT kernel the fit uses."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.catalogs.refine import FitLimits, refine_sources, refined
from dsa110_pipeline.instrument import SPEED_OF_LIGHT

DEC = np.radians(30.0)
FREQS = np.linspace(1.311e9, 1.499e9, 16)
NT = 12
ARCSEC = np.pi / 180 / 3600


def _lmn(l: np.ndarray, m: np.ndarray, nt: int) -> np.ndarray:  # noqa: E741
    n = np.sqrt(1 - l**2 - m**2)
    return np.ascontiguousarray(np.broadcast_to(np.stack([l, m, n], -1)[None], (nt, len(l), 3)))


def _uvw(seed: int) -> np.ndarray:
    """uvw (m) of a random 38-antenna array (2.4 km across) at NT hour angles, time-major."""
    rng = np.random.default_rng(seed)
    enu = np.column_stack([rng.uniform(-1200, 1200, 38), rng.uniform(-1000, 1000, 38),
                           np.zeros(38)])
    i, j = np.triu_indices(len(enu), k=1)
    e, n, _ = (enu[j] - enu[i]).T
    lat = np.radians(37.23)
    x, y, z = -np.sin(lat) * n, e, np.cos(lat) * n
    out = []
    for h in np.linspace(-0.01, 0.01, NT):
        sh, ch, sd, cd = np.sin(h), np.cos(h), np.sin(DEC), np.cos(DEC)
        out.append(np.stack([sh * x + ch * y, -sd * ch * x + sd * sh * y + cd * z,
                             cd * ch * x - cd * sh * y + sd * z], axis=1))
    return np.concatenate(out)


def _scene(seed: int = 0, noise: float = 0.05):
    """A 2 Jy source 3 deg from the phase centre whose apparent flux rises over the group
    (a drift through the beam): the data, and the same source as a survey would give it."""
    rng = np.random.default_rng(seed)
    per_t = _uvw(1)
    nbl = per_t.shape[0] // NT
    tidx = np.repeat(np.arange(NT), nbl)
    tau = np.linspace(-1, 1, NT)
    l0, m0, s0, alpha, slope = 0.03, -0.045, 2.0, -0.8, 0.25
    vis = np.zeros((per_t.shape[0], FREQS.size), np.complex128)
    nu0 = 1.4e9
    for t in range(NT):
        rows = tidx == t
        for c, f in enumerate(FREQS):
            s = s0 * (f / nu0) ** alpha * (1 + slope * tau[t])
            u, v, w = per_t[rows].T
            phase = u * l0 + v * m0 + w * (np.sqrt(1 - l0**2 - m0**2) - 1)
            vis[rows, c] = s * np.exp(2j * np.pi * phase * f / SPEED_OF_LIGHT)
    vis += noise * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    # the survey: 4 % low, 3" and 2" off, no spectral index, no drift in the beam model
    l_c, m_c = l0 + 3 * ARCSEC, m0 - 2 * ARCSEC
    lmn = _lmn(np.array([l_c]), np.array([m_c]), NT)
    flux = np.broadcast_to(0.96 * s0 * (FREQS / nu0) ** 0.0, (NT, 1, FREQS.size)).copy()
    return per_t, tidx, vis, lmn, flux, tau, (l0, m0, s0, alpha, slope, nu0)


def _subtract(uvw, tidx, vis, lmn, flux):
    from dsa110_pipeline.dft import predict_visibilities_drift

    return vis - predict_visibilities_drift(uvw, tidx, FREQS, lmn, flux, sign=1,
                                            unprojected=False, dtype=np.complex128)


def test_fit_recovers_flux_index_drift_and_position_of_a_survey_source():
    uvw, tidx, vis, lmn, flux, tau, (l0, m0, s0, alpha, slope, nu0) = _scene()
    weight = np.ones(vis.shape)
    before = _subtract(uvw, tidx, vis, lmn, flux)
    fit = refine_sources(uvw, tidx, FREQS, before, weight, lmn, flux, tau)
    assert fit.fitted[0] and fit.snr[0] > 100
    after = _subtract(uvw, tidx, vis, fit.lmn, fit.flux)
    noise = 0.05 * np.sqrt(2)
    assert np.std(before) > 5 * noise  # the survey's errors are far above the noise
    assert np.std(after) == pytest.approx(noise, rel=0.01)
    # the parameters themselves, against the truth
    assert fit.lmn[0, 0, 0] == pytest.approx(l0, abs=0.1 * ARCSEC)
    assert fit.lmn[0, 0, 1] == pytest.approx(m0, abs=0.1 * ARCSEC)
    assert fit.params[0, 1] == pytest.approx(alpha, abs=0.05)
    assert fit.params[0, 2] == pytest.approx(slope, abs=0.01)
    s_ref = fit.flux[:, 0].mean(axis=0)  # time-mean apparent flux at each channel
    np.testing.assert_allclose(s_ref, s0 * (FREQS / nu0) ** alpha, rtol=0.01)


def test_refined_applies_the_parameters_on_other_channels():
    lmn = _lmn(np.array([0.01]), np.array([0.02]), 3)
    flux = np.ones((3, 1, 4))
    freqs = np.array([1.3e9, 1.35e9, 1.4e9, 1.45e9])
    p = np.array([[1.1, -0.7, 0.2, 1e-5, -2e-5]])
    new_lmn, new_flux = refined(lmn, flux, p, freqs, 1.4e9, np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(new_flux[:, 0, 2], 1.1 * np.array([0.8, 1.0, 1.2]))
    np.testing.assert_allclose(new_flux[1, 0], 1.1 * (freqs / 1.4e9) ** -0.7)
    np.testing.assert_allclose(new_lmn[0, 0, :2], [0.01 + 1e-5, 0.02 - 2e-5])
    assert new_lmn[0, 0, 2] == pytest.approx(np.sqrt(1 - 0.01001 ** 2 - 0.01998 ** 2))
    assert flux[0, 0, 0] == 1.0 and lmn[0, 0, 0] == 0.01  # inputs untouched


def test_faint_or_implausible_sources_keep_their_catalog_values():
    uvw, tidx, vis, lmn, flux, tau, _ = _scene(noise=40.0)  # S/N of the source ~ 13
    weight = np.ones(vis.shape)
    resid = _subtract(uvw, tidx, vis, lmn, flux)
    fit = refine_sources(uvw, tidx, FREQS, resid, weight, lmn, flux, tau)
    assert not fit.fitted[0] and 0 < fit.snr[0] < FitLimits().min_snr
    np.testing.assert_array_equal(fit.flux, flux)
    # a catalog entry at a twentieth of what the data hold: another source, refused
    uvw, tidx, vis, lmn, flux, tau, _ = _scene()
    resid = _subtract(uvw, tidx, vis, lmn, flux / 20)
    fit = refine_sources(uvw, tidx, FREQS, resid, weight, lmn, flux / 20, tau)
    assert not fit.fitted[0] and fit.params[0, 0] == 1.0
    np.testing.assert_array_equal(fit.flux, flux / 20)


@pytest.mark.parametrize("change", [1.9, 1 / 3])
def test_a_source_that_varied_since_the_survey_gets_tonights_flux(change):
    """A variable brightened 1.9x or faded to a third since the survey: measured, not refused
    (the stripe a 0.54 Jy catalog entry at 1.0 Jy tonight left in an unseen field)."""
    uvw, tidx, vis, lmn, flux, tau, (_, _, s0, alpha, _, nu0) = _scene()
    weight = np.ones(vis.shape)
    survey = flux / change
    fit = refine_sources(uvw, tidx, FREQS, _subtract(uvw, tidx, vis, lmn, survey), weight, lmn,
                         survey, tau)
    assert fit.fitted[0]
    np.testing.assert_allclose(fit.flux[:, 0].mean(axis=0), s0 * (FREQS / nu0) ** alpha,
                               rtol=0.01)
    after = _subtract(uvw, tidx, vis, fit.lmn, fit.flux)
    assert np.std(after) == pytest.approx(0.05 * np.sqrt(2), rel=0.01)


def test_a_source_that_faded_below_the_fit_keeps_its_position_and_spectrum():
    """Gone tonight (a hundredth of its catalog flux, S/N ~ 2): only the flux is measured,
    near zero; the position and spectrum, which the data cannot tell, stay catalogued."""
    uvw, tidx, vis, lmn, flux, tau, _ = _scene()
    weight = np.ones(vis.shape)
    vis = vis / 100
    fit = refine_sources(uvw, tidx, FREQS, _subtract(uvw, tidx, vis, lmn, flux), weight, lmn,
                         flux, tau)
    assert fit.fitted[0]
    assert 0 <= fit.params[0, 0] < 0.03
    np.testing.assert_array_equal(fit.params[0, 1:], 0.0)
    np.testing.assert_array_equal(fit.lmn, lmn)


def test_shapes_are_checked():
    uvw, tidx, vis, lmn, flux, tau, _ = _scene()
    with pytest.raises(ValueError, match="flux has shape"):
        refine_sources(uvw, tidx, FREQS, vis, np.ones(vis.shape), lmn, flux[:, :, :3], tau)
    with pytest.raises(ValueError, match="do not match"):
        refine_sources(uvw, tidx, FREQS, vis[:, :3], np.ones(vis.shape), lmn, flux, tau)
