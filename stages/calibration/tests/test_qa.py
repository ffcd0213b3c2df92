import numpy as np
import pytest

from stages.calibration.gain_solution import GainSolution
from stages.calibration.qa import QAThresholds, qa_gate
from stages.calibration.solve import SolveParams, solve_calibrator
from stages.calibration.tests import _synth


@pytest.fixture(scope="module")
def good():
    s = _synth.make(n_ant=12, n_time=12, n_chan=32, flux=10, sigma=0.5, gain_drift=0.05)
    return solve_calibrator(s.vis, s.model, s.flags, s.ant1, s.ant2, s.n_ant, s.times,
                            s.freqs, SolveParams(gain_solint=12.0))


def _replace(sol: GainSolution, **kw) -> GainSolution:
    d = {k: getattr(sol, k) for k in ("kind", "gains", "flags", "snr", "times", "interval",
                                       "freqs", "refant")}
    d.update(kw)
    return GainSolution(**d)


def test_good_solutions_pass(good):
    res = qa_gate(good.bandpass, good.gains)
    assert res.passed, res.reasons
    assert res.metrics["n_good_antennas"] == 12
    assert res.metrics["bandpass_median_snr"] > 50


def test_low_snr_fails(good):
    low = _replace(good.bandpass, snr=good.bandpass.snr * 0 + 2.0)
    res = qa_gate(low, good.gains)
    assert not res.passed and any("bandpass median SNR" in r for r in res.reasons)


def test_heavily_flagged_fails(good):
    f = good.gains.flags.copy()
    f[:, :8] = True
    res = qa_gate(good.bandpass, _replace(good.gains, flags=f))
    assert not res.passed and any("gain flagged fraction" in r for r in res.reasons)


def test_noisy_bandpass_and_jumping_phases_fail(good):
    rng = np.random.default_rng(1)
    b = good.bandpass.gains * np.exp(1j * rng.normal(0, 0.5, good.bandpass.gains.shape))
    g = good.gains.gains * np.exp(1j * rng.uniform(-np.pi, np.pi, good.gains.gains.shape))
    res = qa_gate(_replace(good.bandpass, gains=b), _replace(good.gains, gains=g),
                  QAThresholds())
    text = " ".join(res.reasons)
    assert "bandpass phase scatter" in text and "gain phase scatter" in text
