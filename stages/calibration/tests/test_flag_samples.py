import numpy as np
import pytest

from stages.calibration.flag_samples import channel_mask, flag_bad_samples
from stages.calibration.tests import _synth


def test_bad_samples_autos_zeros_nans():
    s = _synth.make(n_ant=5, n_time=4, n_chan=8, autos=True)
    vis = s.vis.copy()
    vis[0, 1, 2, 0] = 0
    vis[1, 2, 3, 1] = np.nan
    f = flag_bad_samples(vis, s.flags, s.ant1, s.ant2)
    autos = s.ant1 == s.ant2
    assert f[:, autos].all()
    assert f[0, 1, 2, 0] and f[1, 2, 3, 1]
    assert f[:, ~autos].sum() == 2
    assert not s.flags.any()  # input untouched


def test_channel_mask_by_frequency_and_index():
    freqs = 1.3e9 + 1e6 * np.arange(10)
    m = channel_mask(freqs, rfi_freqs=(1.3023e9, 2e9), rfi_channels=(7,))
    assert np.flatnonzero(m).tolist() == [2, 7]
    with pytest.raises(ValueError, match="out of range"):
        channel_mask(freqs, rfi_channels=(10,))
