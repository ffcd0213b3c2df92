import numpy as np
import pytest

from stages.imaging.peaks import parabolic_peak


def test_exact_for_a_sampled_paraboloid():
    yy, xx = np.mgrid[0:20, 0:20]
    img = 3.0 - 0.2 * (yy - 9.3) ** 2 - 0.1 * (xx - 10.6) ** 2
    value, row, col = parabolic_peak(img, 10, 10)
    assert (value, row, col) == pytest.approx((3.0, 9.3, 10.6))


def test_brightest_on_the_window_edge_or_window_off_the_image():
    img = np.zeros((20, 20))
    img[5, 8] = 1.0
    assert parabolic_peak(img, 5, 6) is None  # brightest at the window's edge
    assert parabolic_peak(img, 1, 6) is None  # window would leave the image
    assert parabolic_peak(img, 5, 8)[0] == pytest.approx(1.0)
