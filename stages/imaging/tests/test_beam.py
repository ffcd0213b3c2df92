import numpy as np
import pytest

from stages.imaging.beam import Beam, fit_beam, gaussian_image, normalise_psf, restore
from stages.imaging.gridding import vis_to_image
from stages.imaging.tests._sim import t_layout, uvw_tracks

CELL = np.radians(2 / 3600)


@pytest.mark.parametrize("bpa", [-60.0, 0.0, 25.0, 89.0])
def test_fit_recovers_a_gaussian(bpa):
    truth = Beam(np.radians(20 / 3600), np.radians(12 / 3600), bpa)
    img = gaussian_image((128, 128), CELL, truth)
    fit = fit_beam(img, CELL)
    assert fit.bmaj == pytest.approx(truth.bmaj, rel=1e-6)
    assert fit.bmin == pytest.approx(truth.bmin, rel=1e-6)
    assert fit.bpa == pytest.approx(bpa, abs=1e-4)


def test_position_angle_is_east_of_north():
    # elongated along the E-W axis: PA 90 (or -90); elongated N-S: PA 0
    g = gaussian_image((64, 64), CELL, Beam(np.radians(20 / 3600), np.radians(8 / 3600), 0.0))
    assert g[32 + 5, 32] > g[32, 32 + 5]  # north (row up) wider than west
    g = gaussian_image((64, 64), CELL, Beam(np.radians(20 / 3600), np.radians(8 / 3600), 45.0))
    # PA 45 (north-east): east is column decreasing, north row increasing
    assert g[32 + 4, 32 - 4] > g[32 + 4, 32 + 4]


def test_psf_of_t_array_peaks_at_one_and_fit_is_sane():
    uvw = uvw_tracks(t_layout(), np.radians(37.0), np.linspace(-0.01, 0.01, 5))
    freq = np.array([1.4e9])
    cell = np.radians(4 / 3600)
    psf = vis_to_image(uvw, freq, np.ones((len(uvw), 1)), npix_x=128, npix_y=128, cell=cell,
                       epsilon=1e-6)
    psf = normalise_psf(psf)
    assert psf[64, 64] == pytest.approx(1.0)
    assert psf.max() == pytest.approx(1.0, abs=1e-6)
    beam = fit_beam(psf, cell)
    lam = 3e8 / 1.4e9
    # E-W arm 2.4 km, N-S 1 km: the beam is broader N-S, so PA near 0 and bmaj > bmin
    assert np.degrees(beam.bmin) * 3600 == pytest.approx(np.degrees(lam / 2400) * 3600, rel=0.5)
    assert beam.bmaj > 1.2 * beam.bmin
    assert abs(beam.bpa) < 30


def test_restore_point_model_gives_peak_flux_and_beam_shape():
    beam = Beam(np.radians(10 / 3600), np.radians(6 / 3600), 30.0)
    model = np.zeros((64, 64), np.float32)
    model[20, 40] = 3.0
    model[63, 0] = 1.0  # at the edge: no wrap-around
    res = np.full((64, 64), 0.01, np.float32)
    img = restore(model, res, CELL, beam)
    assert img[20, 40] == pytest.approx(3.01, rel=1e-5)
    expect = 3.0 * np.roll(gaussian_image((64, 64), CELL, beam), (20 - 32, 40 - 32), (0, 1))
    np.testing.assert_allclose(img[10:30, 30:50], expect[10:30, 30:50] + 0.01, atol=1e-5)
    assert img[0, 63] == pytest.approx(0.01, abs=1e-6)


def test_bad_psf_and_beam():
    with pytest.raises(ValueError, match="not positive"):
        normalise_psf(np.zeros((32, 32)))
    with pytest.raises(ValueError):
        Beam(1e-4, 2e-4, 0.0)
    spike = np.zeros((64, 64))
    spike[32, 32] = 1
    with pytest.raises(ValueError, match="cell is too large"):
        fit_beam(spike, CELL)


def test_fit_ignores_near_sidelobes_joined_to_the_main_lobe():
    # a narrow core flanked by two broad sidelobes at 0.6 of the peak that merge with it
    # above half power (as a T-shaped array's Briggs-0 PSF has): the beam is the core
    from scipy import ndimage

    core = Beam(np.radians(12 / 3600), np.radians(8 / 3600), 10.0)
    psf = gaussian_image((128, 128), CELL, core)
    side = gaussian_image((128, 128), CELL, Beam(np.radians(34 / 3600), np.radians(34 / 3600),
                                                 0.0))
    for dc in (-7, 7):
        psf = np.maximum(psf, 0.6 * np.roll(side, dc, axis=1))
    labels, _ = ndimage.label(psf > 0.5)
    assert labels[64, 64 + 7] == labels[64, 64]  # joined: a plain threshold would take them
    fit = fit_beam(psf, CELL)
    assert fit.bmaj == pytest.approx(core.bmaj, rel=0.05)
    assert fit.bmin == pytest.approx(core.bmin, rel=0.05)
    assert fit.bpa == pytest.approx(10.0, abs=3)


def test_fit_of_a_coarsely_sampled_beam():
    # ~2 pixels per FWHM: only the centre is above half power; its neighbours give the shape
    truth = Beam(np.radians(4.4 / 3600), np.radians(3.2 / 3600), 30.0)
    fit = fit_beam(gaussian_image((64, 64), CELL, truth), CELL)
    assert fit.bmaj == pytest.approx(truth.bmaj, rel=1e-3)
    assert fit.bmin == pytest.approx(truth.bmin, rel=1e-3)
    assert fit.bpa == pytest.approx(30.0, abs=0.1)
