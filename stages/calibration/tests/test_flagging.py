import numpy as np
import pytest

from stages.calibration import flagging as F
from stages.calibration.rfi import RFIParams
from stages.calibration.tests import _synth


@pytest.mark.parametrize("level", [1.0, 0.4])
def test_rfi_caught_clean_kept(level):
    # noise as DSA-110's per channel and integration (2.6 Jy) on a 10 Jy calibrator
    s = _synth.inject_rfi(_synth.make(n_ant=16, n_time=24, n_chan=96, flux=10, sigma=2.6,
                                      gain_drift=0.05), level=level)
    flags, summary = F.flag_all(s.vis, s.flags, s.ant1, s.ant2, s.n_ant)
    m = s.rfi_mask
    assert flags[m].mean() >= 0.95
    assert flags[~m].mean() <= 0.02
    assert summary.per_channel.shape == (96,) and summary.per_antenna.shape == (16,)
    assert summary.total == pytest.approx(flags.mean())


def test_inplace_flagging_gives_the_same_flags():
    """``inplace`` only saves memory: same flags, same summary; the input is scratch."""
    s = _synth.inject_rfi(_synth.make(n_ant=12, n_time=24, n_chan=64, flux=10, sigma=2.6,
                                      gain_drift=0.05), level=1.0)
    kept = s.flags.copy()
    ref, ref_sum = F.flag_all(s.vis, s.flags, s.ant1, s.ant2, s.n_ant)
    np.testing.assert_array_equal(s.flags, kept)  # not in place: input untouched
    scratch = s.flags.copy()
    got, got_sum = F.flag_all(s.vis, scratch, s.ant1, s.ant2, s.n_ant, inplace=True)
    np.testing.assert_array_equal(got, ref)
    assert got_sum.total == ref_sum.total and ref.sum() > kept.sum()


def test_known_rfi_channels_in_flag_all():
    s = _synth.make(n_ant=6, n_time=8, n_chan=16)
    f, summ = F.flag_all(s.vis, s.flags, s.ant1, s.ant2, s.n_ant, freqs=s.freqs,
                         rfi_channels=(3, 4), detect_rfi=False)
    assert f[:, :, [3, 4]].all() and not f[:, :, [0, 1, 2, 5]].any()
    assert summ.per_channel[3] == 1.0 and summ.per_channel[0] == 0.0


def test_dead_antenna_flagged_whole():
    s = _synth.make(n_ant=8, n_time=6, n_chan=16)
    vis = s.vis.copy()
    bl3 = (s.ant1 == 3) | (s.ant2 == 3)
    vis[:, bl3] = 0.0  # antenna 3 delivers nothing
    bl5 = (s.ant1 == 5) | (s.ant2 == 5)
    flags = s.flags.copy()
    flags[:, bl5, :12] = True  # antenna 5 mostly flagged but still usable
    f, summ = F.flag_all(vis, flags, s.ant1, s.ant2, s.n_ant, detect_rfi=False)
    assert summ.dead_antennas == (3,)
    assert f[:, bl3].all()
    assert summ.per_antenna[3] == 1.0
    assert summ.per_antenna[5] == pytest.approx((6 * 0.75 + 1) / 7)
    assert summ.per_antenna[0] == pytest.approx((1 / 7) * 0.75 + 1 / 7, abs=1e-9)


def test_bright_calibrator_without_rfi_is_not_flagged():
    """Issue 20: a 50 Jy calibrator (S/N ~19 per sample, ~750 per channel over baselines)
    and no RFI: SumThreshold on the raw amplitudes flagged 3.8 %; with the noise floor
    proportional to the amplitude, at most 1 %. RFI at 5-50 sigma x 5 is still caught."""
    kw = dict(n_ant=16, n_time=24, n_chan=192, flux=50, sigma=2.6, gain_drift=0.05,
              delay_ns=2.0)
    s = _synth.make(**kw)
    flags, _ = F.flag_all(s.vis, s.flags, s.ant1, s.ant2, s.n_ant)
    assert flags.mean() <= 0.01
    old, _ = F.flag_all(s.vis, s.flags, s.ant1, s.ant2, s.n_ant,
                        rfi=RFIParams(model_tolerance=0.0, antenna_model_snr=0))
    assert old.mean() > 0.02  # thermal-only thresholds on the raw amplitudes
    r = _synth.inject_rfi(_synth.make(**kw), level=5.0)
    got, _ = F.flag_all(r.vis, r.flags, r.ant1, r.ant2, r.n_ant)
    assert got[r.rfi_mask].mean() >= 0.95 and got[~r.rfi_mask].mean() <= 0.02
