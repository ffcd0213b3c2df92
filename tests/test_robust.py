"""The robust rms against the standard deviation of Gaussian noise it estimates."""

import numpy as np
import pytest

from dsa110_pipeline.robust import robust_rms


def test_robust_rms_is_the_gaussian_sigma_despite_outliers_and_blanks():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 200_000)
    x[:1000] = 1e4  # sources
    x[1000:2000] = np.nan  # blanks
    assert robust_rms(x) == pytest.approx(2.0, rel=0.01)
    assert robust_rms(x, x < 0) < 2.0  # a mask selects
    assert np.isnan(robust_rms(np.full(5, np.nan)))
    assert robust_rms(np.ones(3), min_count=10, empty=0.0) == 0.0
