import numpy as np

from stages.calibration.sumthreshold import robust_sigma, sumthreshold


def test_sumthreshold_window_detects_weak_long_run():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 256, 1))
    x[0, 0, 100:132, 0] += 1.5  # a 32-sample run at 1.5σ, invisible sample by sample
    f = sumthreshold(x, np.zeros(x.shape, bool), threshold=6.0, axes=(2,))
    assert f[0, 0, 100:132, 0].mean() > 0.9
    assert f[0, 0, :90, 0].sum() + f[0, 0, 142:, 0].sum() == 0


def test_robust_sigma_ignores_flags_and_outliers():
    rng = np.random.default_rng(0)
    v = rng.normal(0, 2.0, (50, 3, 40, 2))
    v[:3] = 1e6
    flags = np.zeros(v.shape, bool)
    flags[:2] = True
    sig = robust_sigma(v, flags, axis=(0, 2))
    assert sig.shape == (1, 3, 1, 2)
    np.testing.assert_allclose(sig, 2.0, rtol=0.1)
