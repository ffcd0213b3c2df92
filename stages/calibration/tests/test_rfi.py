import numpy as np

from stages.calibration import rfi as R
from stages.calibration.tests import _synth


def test_clean_data_mostly_unflagged():
    s = _synth.make(n_ant=10, n_time=24, n_chan=64, flux=5, sigma=2.6, gain_drift=0.1)
    flags = R.flag_rfi(s.vis, s.flags)
    assert flags.mean() < 0.005


def test_blocks_and_threads_give_the_same_flags():
    s = _synth.inject_rfi(_synth.make(n_ant=10, n_time=12, n_chan=32, flux=10, sigma=2.6))
    one = R.flag_rfi(s.vis, s.flags, bl_chunk=1000)
    many = R.flag_rfi(s.vis, s.flags, bl_chunk=7, nthreads=2)
    np.testing.assert_array_equal(one, many)
    assert one[s.rfi_mask].mean() > 0.95


def test_second_pass_reuse_gives_the_same_flags(monkeypatch):
    # strong spikes on a few baselines change the first pass's flags there only, so both
    # reused and redone second-pass baselines occur
    s = _synth.make(n_ant=12, n_time=24, n_chan=64, flux=10, sigma=2.6, gain_drift=0.05)
    vis = s.vis.copy()
    rng = np.random.default_rng(2)
    for b in (3, 17, 40):
        for _ in range(4):
            vis[rng.integers(24), b, rng.integers(64)] += 40 * 2.6
    seen = []
    real = R.changed_baselines
    monkeypatch.setattr(R, "changed_baselines", lambda a, b: seen.append(real(a, b))
                        or seen[-1])
    fast = R.flag_rfi(vis, s.flags, bl_chunk=5, nthreads=2)
    plain = R.flag_rfi(vis, s.flags, reuse=False)
    assert 0 < seen[0].sum() < seen[0].size // 2
    np.testing.assert_array_equal(fast, plain)
    assert fast[:, [3, 17, 40]].sum() >= 12


def test_second_pass_when_most_baselines_change(monkeypatch):
    """Broadband RFI changes the first pass's flags on most baselines: the plain second
    pass then runs, with the same flags as without reuse."""
    s = _synth.inject_rfi(_synth.make(n_ant=10, n_time=24, n_chan=48, flux=10, sigma=2.6),
                          level=1.0)
    seen = []
    real = R.changed_baselines
    monkeypatch.setattr(R, "changed_baselines", lambda a, b: seen.append(real(a, b))
                        or seen[-1])
    fast = R.flag_rfi(s.vis, s.flags, nthreads=2)
    assert seen[0].mean() > R.REUSE_MAX_CHANGED
    np.testing.assert_array_equal(fast, R.flag_rfi(s.vis, s.flags, reuse=False))
    assert fast[s.rfi_mask].mean() > 0.95
