import numpy as np
import pytest

from stages.calibration.apply import (
    apply_gains,
    apply_gains_cube,
    combine_bg,
    interpolate_gains,
)
from stages.calibration.solve import SolveParams, solve_calibrator
from stages.calibration.stefcal import time_bins
from stages.calibration.tests import _synth


def test_interpolation_amplitude_phase_nearest_and_flags():
    t_sol = np.array([0.0, 10.0, 20.0])
    g = np.zeros((3, 3), complex)
    g[:, 0] = [1.0, 2.0 * np.exp(1j * np.pi / 2), 3.0]
    g[:, 1] = [1.0 * np.exp(1j * 3.0), 5.0, 1.0 * np.exp(-1j * 3.0)]
    g[:, 2] = [1.0, 1.0, 1.0]
    f = np.zeros(g.shape, bool)
    f[1, 1] = True  # the middle solution of series 1 is flagged: skip it
    f[:, 2] = True  # series 2 has no valid solution
    out, of = interpolate_gains(t_sol, g, f, np.array([-5.0, 5.0, 15.0, 25.0]))
    # series 0: amplitude 1.5 and phase pi/4 half-way; nearest outside the span
    assert out[1, 0] == pytest.approx(1.5 * np.exp(1j * np.pi / 4))
    assert out[0, 0] == pytest.approx(1.0) and out[3, 0] == pytest.approx(3.0)
    # series 1 interpolates from t=0 to t=20 across the ±pi wrap (short arc)
    assert np.angle(out[1, 1]) == pytest.approx(3.0 + 0.25 * (2 * np.pi - 6.0))
    assert abs(out[1, 1]) == pytest.approx(1.0)
    assert of[:, 2].all() and (out[:, 2] == 0).all()
    assert not of[:, :2].any()


def test_interpolation_checks_shapes():
    with pytest.raises(ValueError):
        interpolate_gains(np.array([0.0, 1.0]), np.ones((3, 2)), np.zeros((3, 2), bool),
                          np.array([0.5]))


def test_apply_recovers_model_within_noise():
    sigma = 0.5
    s = _synth.make(n_ant=16, n_time=12, n_chan=32, flux=10, sigma=sigma, gain_drift=0.1,
                    seed=9)
    flags = s.flags.copy()
    flags[:, 3, 5] = True
    sol = solve_calibrator(s.vis, s.model, flags, s.ant1, s.ant2, s.n_ant, s.times, s.freqs,
                           SolveParams(gain_solint=12.0))
    g_t, gf_t = interpolate_gains(sol.gains.times, sol.gains.gains, sol.gains.flags, s.times)
    total, tflags = combine_bg(sol.bandpass.gains[0], sol.bandpass.flags[0], g_t, gf_t)
    nt, nb, nc, npol = s.vis.shape
    rows = s.vis.reshape(nt * nb, nc, npol)
    ti = np.repeat(np.arange(nt), nb)
    a1 = np.tile(s.ant1, nt)
    a2 = np.tile(s.ant2, nt)
    corr, cflags = apply_gains(rows, flags.reshape(rows.shape), a1, a2, ti, total, tflags)
    resid = (corr - s.model.reshape(rows.shape))[~cflags]
    # the noise itself, corrected with the true gains
    gpq = s.gains[:, s.ant1] * np.conj(s.gains[:, s.ant2])
    noise = ((s.vis - gpq * s.model) / gpq).reshape(rows.shape)[~cflags]
    assert np.std(resid) == pytest.approx(np.std(noise), rel=0.03)
    assert abs(np.mean(resid)) < 5 * np.std(noise) / np.sqrt(resid.size)
    assert cflags.reshape(flags.shape)[:, 3, 5].all()
    assert cflags.mean() < 0.01


def test_apply_flags_rows_with_flagged_gains():
    vis = np.ones((2, 4, 2), complex)
    flags = np.zeros(vis.shape, bool)
    gains = np.ones((1, 3, 1, 2), complex)
    gflags = np.zeros(gains.shape, bool)
    gflags[0, 2] = True
    out, of = apply_gains(vis, flags, np.array([0, 1]), np.array([1, 2]), np.array([0, 0]),
                          gains, gflags)
    assert not of[0].any() and of[1].all()
    assert (out[1] == 0).all() and np.allclose(out[0], 1)
    bins, _ = time_bins(np.arange(3.0), None)
    assert bins.tolist() == [0, 0, 0]


def test_cube_kernel_equals_row_form():
    rng = np.random.default_rng(4)
    nt, n_ant, nc, npol = 5, 6, 7, 2
    a1, a2 = _synth.baselines(n_ant)
    vis = (rng.standard_normal((nt, a1.size, nc, npol))
           + 1j * rng.standard_normal((nt, a1.size, nc, npol))).astype(np.complex64)
    flags = rng.random(vis.shape) < 0.1
    gains = rng.uniform(0.5, 2, (3, n_ant, nc, npol)) * np.exp(
        1j * rng.uniform(-3, 3, (3, n_ant, nc, npol)))
    gflags = rng.random(gains.shape) < 0.1
    gains[1, 2, 3, 0] = 0  # a zero gain is flagged too
    ti = np.array([0, 2, 1, 1, 0])
    corr, cf = apply_gains_cube(vis, flags, a1, a2, ti, gains, gflags)
    rows = vis.reshape(-1, nc, npol)
    want, wf = apply_gains(rows, flags.reshape(rows.shape), np.tile(a1, nt), np.tile(a2, nt),
                           np.repeat(ti, a1.size), gains, gflags)
    np.testing.assert_array_equal(cf.reshape(wf.shape), wf)
    assert cf.mean() > flags.mean() + 0.05  # flagged gains flag data
    np.testing.assert_allclose(corr.reshape(want.shape), want, rtol=1e-6, atol=1e-7)
    assert corr.dtype == np.complex64
