"""Forced photometry against images whose sources and noise are known exactly."""

from __future__ import annotations

import numpy as np

from stages.photometry.forced import (
    beam_kernel,
    forced_fluxes,
    noise_acf,
    noise_factor,
    position_loss,
)

N = 512
BMAJ, BMIN, BPA = 6.0, 4.0, 30.0  # pixels, pixels, deg E of N


def _correlated_noise(rng, sigma_white=1.0):
    """White noise convolved with the restoring beam: noise correlated over a beam, as
    in a restored image. Returns the image and its exact pixel standard deviation."""
    yy, xx = np.mgrid[-N // 2:N // 2, -N // 2:N // 2].astype(float)
    k = beam_kernel(xx, yy, BMAJ, BMIN, BPA)
    white = rng.normal(0, sigma_white, (N, N))
    img = np.fft.irfft2(np.fft.rfft2(white) * np.fft.rfft2(np.fft.ifftshift(k)), s=(N, N))
    return img, sigma_white * np.sqrt(np.sum(k ** 2))


def _add_point(img, x, y, amp):
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    img += amp * beam_kernel(xx - x, yy - y, BMAJ, BMIN, BPA)


def test_beam_kernel_orientation():
    # PA 0: the major axis points north (+y); PA 90: east (-x)
    assert np.isclose(beam_kernel(np.array(0.0), np.array(BMAJ / 2), BMAJ, BMIN, 0.0), 0.5)
    assert np.isclose(beam_kernel(np.array(BMIN / 2), np.array(0.0), BMAJ, BMIN, 0.0), 0.5)
    assert np.isclose(beam_kernel(np.array(-BMAJ / 2), np.array(0.0), BMAJ, BMIN, 90.0), 0.5)


def test_fluxes_of_known_sources_and_pulls_of_pure_noise():
    rng = np.random.default_rng(5)
    img, sigma = _correlated_noise(rng)
    acf = noise_acf(img, 12)
    factor = noise_factor(BMAJ, BMIN, BPA, acf)
    # pulls where there is nothing: their spread is what the errors claim
    x, y = rng.uniform(20, N - 20, 3000), rng.uniform(20, N - 20, 3000)
    got = forced_fluxes(img, x, y, np.full(x.size, sigma), BMAJ, BMIN, BPA, factor=factor)
    pull = got["flux"] / got["err"]
    assert 0.93 < np.std(pull) < 1.07, np.std(pull)
    assert abs(np.mean(pull)) < 0.1
    # sources at sub-pixel positions: fluxes within their errors, unbiased
    gx, gy = np.meshgrid(np.arange(40, N - 30, 60.0), np.arange(40, N - 30, 60.0))
    xs = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)  # apart: no blends
    ys = gy.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    amps = rng.uniform(20, 200, xs.size) * sigma
    for xi, yi, a in zip(xs, ys, amps, strict=True):
        _add_point(img, xi, yi, a)
    got = forced_fluxes(img, xs, ys, np.full(xs.size, sigma), BMAJ, BMIN, BPA, factor=factor)
    pull = (got["flux"] - amps) / got["err"]
    assert np.all(np.abs(pull) < 5) and abs(np.median(got["flux"] / amps) - 1) < 0.01
    assert not got["edge"].any()


def test_a_source_off_the_image_edge_is_flagged():
    img = np.zeros((64, 64))
    got = forced_fluxes(img, np.array([2.0, 32.0]), np.array([32.0, 32.0]), np.ones(2),
                        BMAJ, BMIN, BPA, factor=1.0)
    assert got["edge"].tolist() == [True, False]


def test_the_noise_factor_of_white_noise_is_one_over_the_beam_norm():
    acf = np.zeros((25, 25))
    acf[12, 12] = 1.0
    yy, xx = np.mgrid[-12:13, -12:13].astype(float)
    k = beam_kernel(xx, yy, BMAJ, BMIN, BPA)
    assert np.isclose(noise_factor(BMAJ, BMIN, BPA, acf), 1 / np.sqrt(np.sum(k ** 2)))


def test_position_loss_is_the_mean_loss_of_fits_at_scattered_positions():
    # noiseless sources fitted at positions off by a Gaussian error: the mean recovered
    # fraction, by direct fits on the pixels, against the closed form
    rng = np.random.default_rng(11)
    img = np.zeros((N, N))
    gx, gy = np.meshgrid(np.arange(30, N - 20, 40.0), np.arange(30, N - 20, 40.0))
    xs, ys = gx.ravel(), gy.ravel()
    for xi, yi in zip(xs, ys, strict=True):
        _add_point(img, xi, yi, 1.0)
    for err in (0.5, 1.5, 3.0):  # pixels per axis: 1/12 to 1/2 of the beam's major axis
        got = []
        for _ in range(20):
            dx, dy = rng.normal(0, err, (2, xs.size))
            got.append(forced_fluxes(img, xs + dx, ys + dy, np.ones(xs.size), BMAJ, BMIN,
                                     BPA, factor=1.0, half=12)["flux"])
        want = float(position_loss(np.array(err), BMAJ, BMIN))
        assert abs(np.mean(got) - want) < 0.01, (err, np.mean(got), want)
    assert float(position_loss(np.array(3.0), BMAJ, BMIN)) < 0.85  # a real loss
    assert position_loss(np.zeros(3), BMAJ, BMIN).tolist() == [1.0, 1.0, 1.0]
