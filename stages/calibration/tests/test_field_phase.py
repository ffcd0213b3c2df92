"""Target phases refined on the field model: phases from the target, amplitudes from the
calibrator; antennas without a solution keep the calibrator's gains."""

from __future__ import annotations

import numpy as np
import pytest

from stages.calibration.field_phase import FieldPhaseParams, drift_phases, refine_phases
from stages.calibration.gain_solution import GainSolution


def _solution(kind: str, gains: np.ndarray, times: np.ndarray, freqs: np.ndarray
              ) -> GainSolution:
    return GainSolution(kind, gains, np.zeros(gains.shape, bool), np.full(gains.shape, 100.0),
                        times, np.full(times.size, 60.0), freqs, 0)


def _field(rng: np.random.Generator, n_ant: int, nt: int, nc: int, npol: int):
    """Baselines, times, frequencies and a field's model visibilities with structure."""
    a1, a2 = np.triu_indices(n_ant, 1)
    times = 5e9 + 12.9 * np.arange(nt)
    freqs = np.linspace(1.35e9, 1.45e9, nc)
    model = (rng.normal(1, 0.3, (nt, a1.size, nc, 1))
             * np.exp(1j * rng.uniform(-3, 3, (nt, a1.size, nc, 1)))).astype(np.complex64)
    return a1, a2, times, freqs, np.repeat(model, npol, axis=-1)


def test_phases_come_from_the_field_and_amplitudes_from_the_calibrator():
    rng = np.random.default_rng(2)
    n_ant, nt, nc, npol = 8, 6, 4, 2
    a1, a2, times, freqs, model = _field(rng, n_ant, nt, nc, npol)
    true_phase = rng.uniform(-1, 1, (n_ant, npol))
    true_amp = rng.uniform(0.8, 1.2, (n_ant, npol))
    g = true_amp * np.exp(1j * true_phase)
    vis = g[None, a1, None, :] * model * np.conj(g[None, a2, None, :])
    flags = np.zeros(vis.shape, bool)
    bp = _solution("B", np.ones((1, n_ant, nc, npol), np.complex64), times[:1], freqs)
    # the calibrator's gains: right amplitudes, phases an hour old, one antenna flagged
    cal = (true_amp * np.exp(1j * (true_phase + rng.normal(0, 0.3, (n_ant, npol)))))
    g_cal = _solution("G", cal[None, :, None, :].astype(np.complex64), times[:1] - 3600,
                      freqs[:1])
    new, metrics = refine_phases(vis, model, flags, a1, a2, n_ant, times, freqs, bp, g_cal,
                                 refant=0, params=FieldPhaseParams(solint_s=None))
    got = new.gains[0, :, 0, :]
    np.testing.assert_allclose(np.abs(got), true_amp, rtol=1e-5)
    # phases agree up to one common phase (the reference)
    d = got * np.conj(g)
    d /= d[0]
    np.testing.assert_allclose(np.angle(d), 0, atol=1e-4)
    assert metrics["field_phase_solved_fraction"] == 1.0
    assert metrics["field_phase_rms_deg"] == pytest.approx(
        np.degrees(0.3), rel=0.5)  # the hour of drift it removed


@pytest.mark.parametrize("with_positions", [False, True],
                         ids=["phases-only", "keep-astrometry-nothing-solved"])
def test_faint_field_keeps_the_calibrator_gains(with_positions):
    """No solution anywhere: the calibrator's gains stand (with antenna positions too:
    there is no gradient to take from no solved antenna, and no error)."""
    n_ant, nt, nc = 6, 3, 2
    a1, a2 = np.triu_indices(n_ant, 1)
    times = 5e9 + 12.9 * np.arange(nt)
    freqs = np.array([1.4e9, 1.41e9])
    rng = np.random.default_rng(0)
    vis = (rng.normal(size=(nt, a1.size, nc, 1)) + 1j * rng.normal(size=(nt, a1.size, nc, 1))
           ).astype(np.complex64)
    model = np.full(vis.shape, 1e-6, np.complex64)  # no signal to speak of: S/N << 5
    bp = _solution("B", np.ones((1, n_ant, nc, 1), np.complex64), times[:1], freqs)
    cal = np.exp(1j * rng.uniform(-1, 1, (1, n_ant, 1, 1))).astype(np.complex64)
    g_cal = _solution("G", cal, times[:1], freqs[:1])
    pos = rng.uniform(-500, 500, (n_ant, 3)) if with_positions else None
    new, metrics = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                                 freqs, bp, g_cal, refant=0, positions=pos)
    np.testing.assert_allclose(new.gains[:, :, 0, 0], np.broadcast_to(cal[:, :, 0, 0],
                                                                      new.gains[:, :, 0, 0]
                                                                      .shape), atol=1e-6)
    assert metrics["field_phase_solved_fraction"] == 0.0
    assert metrics["field_shift_removed_arcsec"] is None


def test_relative_amplitudes_from_a_bright_field_keep_the_calibrators_flux_scale():
    """Gain amplitudes that drifted by ~1 % per antenna since the calibrator are taken from
    a bright field, relative to each other only: a survey model 5 % too bright changes
    nothing, and the flux scale stays the calibrator's. Off (``amp_min_snr=None``), the
    calibrator's amplitudes stand."""
    from stages.calibration.field_phase import relative_amplitudes

    rng = np.random.default_rng(5)
    n_ant, nt, nc, npol = 10, 5, 4, 2
    a1, a2, times, freqs, sky = _field(rng, n_ant, nt, nc, npol)
    true_amp = rng.uniform(0.8, 1.2, (n_ant, npol))
    g = true_amp * np.exp(1j * rng.uniform(-1, 1, (n_ant, npol)))
    vis = g[None, a1, None, :] * sky * np.conj(g[None, a2, None, :])
    model = (1.05 * sky).astype(np.complex64)  # the survey's fluxes: 5 % high
    bp = _solution("B", np.ones((1, n_ant, nc, npol), np.complex64), times[:1], freqs)
    cal_amp = true_amp * (1 + rng.normal(0, 0.01, (n_ant, npol)))
    g_cal = _solution("G", (cal_amp * np.exp(1j * np.angle(g)))[None, :, None, :]
                      .astype(np.complex64), times[:1] - 600, freqs[:1])
    new, m = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                           freqs, bp, g_cal, refant=0,
                           params=FieldPhaseParams(solint_s=None, amp_min_snr=300.0))
    got = np.abs(new.gains[0, :, 0, :])
    scale = np.exp(np.mean(np.log(true_amp / cal_amp), axis=0))  # per polarisation
    np.testing.assert_allclose(got, true_amp / scale, rtol=1e-4)
    np.testing.assert_allclose(np.exp(np.mean(np.log(got), axis=0)),
                               np.exp(np.mean(np.log(cal_amp), axis=0)), rtol=1e-5)
    assert m["field_amp_solved_fraction"] == 1.0 and 0.5 < m["field_amp_rms_pct"] < 2
    off, _ = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                           freqs, bp, g_cal, refant=0,
                           params=FieldPhaseParams(solint_s=None, amp_min_snr=None))
    np.testing.assert_allclose(np.abs(off.gains[0, :, 0, :]), cal_amp, rtol=1e-5)
    # too few antennas above the S/N: no change
    use = np.zeros((1, n_ant, 1, npol), bool)
    use[0, :3] = True
    assert np.all(relative_amplitudes(np.full(use.shape, 2.0), np.ones(use.shape), use) == 1)


def test_keep_astrometry_removes_the_catalog_position_error_not_the_drift():
    """One bright source 2" from its catalog position: solved freely, the antenna phases
    take a gradient across the array that moves the image onto the catalog (0.3 rad on
    a 1.3 km arm); with ``keep_astrometry`` only the drift since the calibrator is
    corrected and the shift removed is reported."""
    rng = np.random.default_rng(7)
    n_ant, nt, nc, npol = 12, 4, 4, 1
    a1, a2 = np.triu_indices(n_ant, 1)
    times = 5e9 + 12.9 * np.arange(nt)
    freqs = np.linspace(1.38e9, 1.42e9, nc)
    pos = np.c_[rng.uniform(-1300, 1300, (n_ant, 2)), rng.normal(0, 2, n_ant)]
    uv = pos[a2, :2] - pos[a1, :2]  # a zenith field: u, v are the baselines' E, N (m)
    lam = 299792458.0 / freqs
    l0, m0 = 0.01, -0.004
    off = np.radians(2.0 / 3600) * np.array([0.6, 0.8])

    def point(l, m):  # noqa: E741
        ph = 2 * np.pi * (uv[:, 0, None] * l + uv[:, 1, None] * m) / lam[None]
        return np.broadcast_to(np.exp(1j * ph)[None, :, :, None], (nt, a1.size, nc, npol))

    drift = rng.normal(0, 0.1, n_ant)
    x = np.c_[np.ones(n_ant), pos[:, :2]]  # the true drift has no gradient of its own
    drift -= x @ np.linalg.lstsq(x, drift, rcond=None)[0]
    g = np.exp(1j * drift)[:, None]
    vis = (g[None, a1, None] * point(l0, m0) * np.conj(g[None, a2, None])).astype(np.complex64)
    model = point(l0 + off[0], m0 + off[1]).astype(np.complex64)
    bp = _solution("B", np.ones((1, n_ant, nc, npol), np.complex64), times[:1], freqs)
    g_cal = _solution("G", np.ones((1, n_ant, 1, npol), np.complex64), times[:1] - 600,
                      freqs[:1])

    def phase_error(keep: bool) -> tuple[float, dict]:
        new, m = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                               freqs, bp, g_cal, refant=0,
                               params=FieldPhaseParams(solint_s=None, amp_min_snr=None,
                                                       keep_astrometry=keep),
                               positions=pos)
        d = new.gains[0, :, 0, 0] * np.conj(g[:, 0])
        return float(np.abs(np.angle(d * np.conj(d[0]))).max()), m

    err_free, m_free = phase_error(False)
    err_kept, m_kept = phase_error(True)
    assert err_free > 0.2  # the catalog's 2" as antenna phases
    assert err_kept < 0.005
    assert m_kept["field_shift_removed_arcsec"] == pytest.approx(2.0, rel=0.05)
    assert m_free["field_shift_removed_arcsec"] is None


def test_drift_phases_carry_a_straight_line_forward_and_hold_beyond_the_limit():
    t = np.arange(5) * 60.0
    rate = np.array([0.01, -0.004])  # rad/s: the first wraps past pi within the solutions
    g = np.exp(1j * (np.array([3.0, 0.5]) + rate * t[:, None]))[:, :, None]
    flags = np.zeros(g.shape, bool)
    flags[2, 1] = True  # a flagged solution does not count
    got = drift_phases(t, g, flags, np.array([300.0, 600.0, 9000.0]), 1800.0)
    want = np.exp(1j * (np.array([3.0, 0.5]) + rate * np.array([300.0, 600.0, 2040.0])[:, None]))
    np.testing.assert_allclose(got[:, :, 0], want, atol=1e-9)
    one = drift_phases(t[:1], g[:1], flags[:1], np.array([500.0]), 1800.0)
    np.testing.assert_allclose(one, g[:1])  # one solution: held
    none = drift_phases(t, g, np.ones(g.shape, bool), np.array([500.0]), 1800.0)
    np.testing.assert_array_equal(none, np.ones((1, 2, 1)))


def test_keep_astrometry_keeps_the_drift_the_calibrator_shows():
    """The antennas' phases drift linearly, in part along a gradient across the array (any
    random drift projects onto one), from the calibrator's transit through the target. With
    the calibrator's phases held, the solve's gradient is the catalog's position error plus
    the drift's gradient since transit, and removing it left the drift's gradient in the
    target (growing across the group); against the calibrator's phases carried forward at
    their own rate only the catalog's error goes."""
    rng = np.random.default_rng(11)
    n_ant, nt, nc, npol = 12, 8, 4, 1
    a1, a2 = np.triu_indices(n_ant, 1)
    times = 5e9 + 600 + 12.9 * np.arange(nt)  # the target, 10 minutes after the calibrator
    freqs = np.linspace(1.38e9, 1.42e9, nc)
    pos = np.c_[rng.uniform(-1300, 1300, (n_ant, 2)), rng.normal(0, 2, n_ant)]
    uv = pos[a2, :2] - pos[a1, :2]
    lam = 299792458.0 / freqs
    off = np.radians(2.0 / 3600) * np.array([0.6, 0.8])

    def point(l, m):  # noqa: E741
        ph = 2 * np.pi * (uv[:, 0, None] * l + uv[:, 1, None] * m) / lam[None]
        return np.broadcast_to(np.exp(1j * ph)[None, :, :, None], (nt, a1.size, nc, npol))

    # per antenna: a random rate plus a gradient's (rad/s)
    rate = rng.normal(0, 1.5e-4, n_ant) + pos[:, :2] @ np.array([2e-7, -1.5e-7])
    t0 = 5e9
    g = np.exp(1j * rate[None, :] * (times[:, None] - t0))
    vis = (g[:, a1, None, None] * point(0.01, -0.004) * np.conj(g[:, a2, None, None])
           ).astype(np.complex64)
    model = point(0.01 + off[0], -0.004 + off[1]).astype(np.complex64)
    bp = _solution("B", np.ones((1, n_ant, nc, npol), np.complex64), times[:1], freqs)
    t_cal = t0 + 60.0 * np.arange(5)  # the calibrator's solutions, drifting likewise
    g_cal = _solution("G", np.exp(1j * rate[None, :, None, None]
                                  * (t_cal[:, None, None, None] - t0)).astype(np.complex64),
                      t_cal, freqs[:1])

    def error(extrapolate: float) -> np.ndarray:
        new, _ = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                               freqs, bp, g_cal, refant=0,
                               params=FieldPhaseParams(solint_s=12.9, amp_min_snr=None,
                                                       drift_extrapolation_s=extrapolate),
                               positions=pos)
        err = np.angle(new.gains[:, :, 0, 0] * np.conj(g))  # (nt, n_ant)
        return err - err[:, :1]  # the reference antenna's phase is arbitrary

    drift = np.angle(g * np.conj(g[:, :1]))
    held, carried = error(0.0), error(1800.0)
    assert np.abs(held).max() > 0.05  # the drift's gradient since transit, left in
    assert np.abs(carried).max() < 0.1 * np.abs(held).max(), (np.abs(carried).max(),
                                                              np.abs(held).max())
    assert np.abs(drift).max() > 0.1


def test_solved_fractions_count_the_antennas_with_data_only():
    """An ANTENNA table lists every station (117 for DSA-110) while ~96 carry data: the
    fractions are of the antennas with data (they read 0.39 for a 48-antenna night)."""
    rng = np.random.default_rng(3)
    n_used, n_ant, nt, nc, npol = 8, 20, 3, 2, 1
    a1, a2, times, freqs, model = _field(rng, n_used, nt, nc, npol)
    g = np.exp(1j * rng.uniform(-1, 1, n_used))
    vis = (g[None, a1, None, None] * model * np.conj(g[None, a2, None, None])).astype(
        np.complex64)
    bp = _solution("B", np.ones((1, n_ant, nc, npol), np.complex64), times[:1], freqs)
    g_cal = _solution("G", np.ones((1, n_ant, 1, npol), np.complex64), times[:1] - 600,
                      freqs[:1])
    _, m = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times, freqs,
                         bp, g_cal, refant=0, params=FieldPhaseParams(solint_s=None))
    assert m["field_phase_solved_fraction"] == 1.0

