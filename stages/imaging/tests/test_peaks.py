import numpy as np
import pytest

from stages.imaging.peaks import gaussian_peak, parabolic_peak


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


@pytest.mark.parametrize("dy,dx", [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (-0.3, 0.7)])
def test_gaussian_peak_is_exact_for_a_rotated_sampled_beam(dy, dx):
    from stages.imaging.beam import Beam, gaussian_image

    cell = 1e-5
    beam = Beam(bmaj=7.0 * cell, bmin=3.6 * cell, bpa=35.0)
    # a beam shifted by (dy, dx) pixels: sample its Fourier transform with a phase ramp
    g = gaussian_image((64, 64), cell, beam)
    ky, kx = np.fft.fftfreq(64)[:, None], np.fft.fftfreq(64)[None, :]
    img = np.real(np.fft.ifft2(np.fft.fft2(g) * np.exp(-2j * np.pi * (ky * dy + kx * dx))))
    value, row, col = gaussian_peak(img, 32, 32)
    assert value == pytest.approx(1.0, abs=1e-6)
    assert (row, col) == pytest.approx((32 + dy, 32 + dx), abs=1e-5)
    # a parabola through the samples on each axis is off by more than that
    if dy or dx:
        assert abs(parabolic_peak(img, 32, 32)[0] - 1) > 1e-3


def test_gaussian_peak_falls_back_to_the_parabola_where_a_pixel_is_not_positive():
    img = np.zeros((9, 9))
    img[4, 4], img[4, 3], img[3, 4] = 1.0, 0.5, 0.5
    assert gaussian_peak(img, 4, 4) == parabolic_peak(img, 4, 4)
