"""The calibrator group's field model refined from data corrected by a first solution."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.instrument import SPEED_OF_LIGHT
from dsa110_pipeline.projection import lm_to_radec, radec_to_lmn
from stages.calibration.field_refine import refine_field
from stages.calibration.gain_solution import GainSolution

ARCSEC = np.pi / 180 / 3600


def test_lm_to_radec_inverts_radec_to_lmn():
    rng = np.random.default_rng(0)
    ra0, dec0 = 5.9, np.radians(49.9)
    ra = ra0 + rng.uniform(-0.08, 0.08, 50)
    dec = dec0 + rng.uniform(-0.05, 0.05, 50)
    lmn = radec_to_lmn(ra, dec, ra0, dec0)
    ra2, dec2 = lm_to_radec(lmn[:, 0], lmn[:, 1], ra0, dec0)
    np.testing.assert_allclose(np.mod(ra2 - ra + np.pi, 2 * np.pi) - np.pi, 0, atol=1e-12)
    np.testing.assert_allclose(dec2, dec, atol=1e-12)


def _solution(kind, gains, times, freqs):
    return GainSolution(kind, gains, np.zeros(gains.shape, bool), np.full(gains.shape, 100.0),
                        times, np.full(times.size, 60.0), freqs, 0)


def test_field_source_refined_through_the_gains_and_the_calibrator_fitted_as_nuisance():
    """A 10 Jy calibrator and a 0.3 Jy field source that the model has 5 % low and 3" off,
    in data with antenna gains that the given solution removes exactly: the field source's
    flux and position come back (flat spectra, no beam: the plain exponentials below)."""
    rng = np.random.default_rng(3)
    n_ant, nt, nc = 24, 8, 96
    enu = np.column_stack([rng.uniform(-1300, 1300, n_ant), rng.uniform(-1300, 1300, n_ant),
                           np.zeros(n_ant)])
    a1, a2 = np.triu_indices(n_ant, 1)
    nb = a1.size
    times = 5e9 + 12.9 * np.arange(nt)
    freqs = np.linspace(1.311e9, 1.499e9, nc)
    base = enu[a2] - enu[a1]
    rot = np.linspace(0, 0.02, nt)  # the baselines turn a little over the group
    uvw = np.stack([np.column_stack([base[:, 0] * np.cos(r) - base[:, 1] * np.sin(r),
                                     base[:, 0] * np.sin(r) + base[:, 1] * np.cos(r),
                                     np.zeros(nb)]) for r in rot])
    srcs = [(10.0, 0.002, 0.004), (0.3, -0.02, 0.015)]
    sky = np.zeros((nt, nb, nc), np.complex128)
    for s, l0, m0 in srcs:
        ph = (uvw[..., 0] * l0 + uvw[..., 1] * m0
              + uvw[..., 2] * (np.sqrt(1 - l0**2 - m0**2) - 1))[..., None]
        sky += s * np.exp(2j * np.pi * ph * freqs / SPEED_OF_LIGHT)
    g = (rng.uniform(0.8, 1.2, (n_ant, 2)) * np.exp(1j * rng.uniform(-2, 2, (n_ant, 2))))
    vis = g[None, a1, None, :] * sky[..., None] * np.conj(g[None, a2, None, :])
    vis += 0.05 * (rng.standard_normal(vis.shape) + 1j * rng.standard_normal(vis.shape))
    flags = np.zeros(vis.shape, bool)
    flags[:, 5, 10:20, 0] = True  # some flagged data: not used
    bp = _solution("B", np.ones((1, n_ant, nc, 2), np.complex64), times[:1], freqs)
    gs = _solution("G", g[None, :, None, :].astype(np.complex64), times[:1], freqs[:1])
    l_c, m_c = -0.02 + 3 * ARCSEC, 0.015 - 2 * ARCSEC  # the catalog's position
    lm = np.array([[0.002, 0.004], [l_c, m_c]])
    lmn = np.broadcast_to(np.column_stack([lm, np.sqrt(1 - (lm**2).sum(1))])[None],
                          (nt, 2, 3))
    app = np.broadcast_to(np.array([10.0, 0.95 * 0.3])[None, :, None], (nt, 2, nc))
    fit, chans = refine_field(vis.astype(np.complex64), flags, a1, a2, uvw, times, freqs, bp,
                              gs, lmn, app, np.array([True, True]))
    assert chans.size == 16 and fit.fitted.all()
    assert fit.params[1, 0] == pytest.approx(1 / 0.95, rel=0.01)
    assert l_c + fit.params[1, 3] == pytest.approx(-0.02, abs=0.1 * ARCSEC)
    assert m_c + fit.params[1, 4] == pytest.approx(0.015, abs=0.1 * ARCSEC)
    assert fit.params[0, 0] == pytest.approx(1.0, abs=1e-3)  # the calibrator was right
