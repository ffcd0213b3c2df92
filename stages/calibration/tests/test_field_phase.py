"""Target phases refined on the field model: phases from the target, amplitudes from the
calibrator; antennas without a solution keep the calibrator's gains."""

from __future__ import annotations

import numpy as np
import pytest

from stages.calibration.field_phase import FieldPhaseParams, refine_phases
from stages.calibration.solve import GainSolution


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


def test_faint_field_keeps_the_calibrator_gains():
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
    new, metrics = refine_phases(vis, model, np.zeros(vis.shape, bool), a1, a2, n_ant, times,
                                 freqs, bp, g_cal, refant=0)
    np.testing.assert_allclose(new.gains[:, :, 0, 0], np.broadcast_to(cal[:, :, 0, 0],
                                                                      new.gains[:, :, 0, 0]
                                                                      .shape), atol=1e-6)
    assert metrics["field_phase_solved_fraction"] == 0.0


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
