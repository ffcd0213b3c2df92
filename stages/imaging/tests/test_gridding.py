import numpy as np
import pytest

from stages.imaging.gridding import dft_image, image_to_vis, vis_to_image, weight_sum
from stages.imaging.tests._sim import point_source_vis, t_layout, uvw_tracks

CELL = np.radians(20 / 3600)


@pytest.fixture(scope="module")
def small_obs():
    rng = np.random.default_rng(3)
    enu = t_layout(8, 6, 3, seed=1)
    uvw = uvw_tracks(enu, np.radians(50.0), np.linspace(-0.05, 0.05, 3))
    freq = np.array([1.32e9, 1.40e9, 1.49e9])
    vis = (rng.normal(size=(len(uvw), 3)) + 1j * rng.normal(size=(len(uvw), 3)))
    wgt = rng.uniform(0.5, 2.0, vis.shape)
    return uvw, freq, vis, wgt


def test_dirty_image_matches_direct_fourier_transform(small_obs):
    uvw, freq, vis, wgt = small_obs
    npix = 64
    img = vis_to_image(uvw, freq, vis, wgt, npix_x=npix, npix_y=npix, cell=CELL, epsilon=1e-7)
    ref = dft_image(uvw, freq, vis, wgt, npix_x=npix, npix_y=npix, cell=CELL)
    assert img.shape == (npix, npix)
    assert np.max(np.abs(img - ref)) < 1e-6 * np.max(np.abs(ref))


def test_rectangular_image_and_mask(small_obs):
    uvw, freq, vis, wgt = small_obs
    mask = np.ones(vis.shape, np.uint8)
    mask[::2, 1] = 0
    img = vis_to_image(uvw, freq, vis, wgt, mask, npix_x=64, npix_y=32, cell=CELL,
                       epsilon=1e-7)
    ref = dft_image(uvw, freq, vis, wgt * mask, npix_x=64, npix_y=32, cell=CELL)
    assert img.shape == (32, 64)
    assert np.max(np.abs(img - ref)) < 1e-6 * np.max(np.abs(ref))
    assert weight_sum(wgt, mask, vis.shape) == pytest.approx(np.sum(wgt * mask))


def test_fits_orientation_of_an_off_centre_source():
    """A source east (+l) and north (+m) lands left of and above the centre, with peak S."""
    enu = t_layout(seed=2)
    uvw = uvw_tracks(enu, np.radians(30.0), np.linspace(-0.02, 0.02, 4))
    freq = np.array([1.35e9, 1.45e9])
    npix, cell = 128, np.radians(6 / 3600)
    l0, m0 = 17 * cell, 9 * cell  # 17 pixels east, 9 north
    vis = point_source_vis(uvw, freq, [(2.5, l0, m0)])
    img = vis_to_image(uvw, freq, vis, npix_x=npix, npix_y=npix, cell=cell, epsilon=1e-7)
    img /= weight_sum(None, None, vis.shape)
    r, c = np.unravel_index(np.argmax(img), img.shape)
    assert (r, c) == (npix // 2 + 9, npix // 2 - 17)
    assert img[r, c] == pytest.approx(2.5, rel=1e-5)


def test_degrid_is_the_adjoint_and_predicts_point_sources():
    enu = t_layout(seed=4)
    uvw = uvw_tracks(enu, np.radians(60.0), np.linspace(-0.02, 0.02, 3))
    freq = np.array([1.3e9, 1.5e9])
    npix, cell = 64, np.radians(10 / 3600)
    model = np.zeros((npix, npix))
    model[40, 20] = 1.5
    model[10, 50] = -0.7
    pred = image_to_vis(uvw, freq, model, cell=cell, epsilon=1e-8)
    truth = point_source_vis(uvw, freq, [(1.5, -(20 - 32) * cell, (40 - 32) * cell),
                                         (-0.7, -(50 - 32) * cell, (10 - 32) * cell)])
    assert np.max(np.abs(pred - truth)) < 1e-6
    # adjointness: <A x, y> = <x, A^H y>
    rng = np.random.default_rng(0)
    y = rng.normal(size=pred.shape) + 1j * rng.normal(size=pred.shape)
    lhs = np.vdot(y, pred).real
    rhs = np.sum(model * vis_to_image(uvw, freq, y, npix_x=npix, npix_y=npix, cell=cell,
                                      epsilon=1e-8))
    assert lhs == pytest.approx(rhs, rel=1e-6)


def test_single_precision_rejects_tiny_epsilon(small_obs):
    uvw, freq, vis, _ = small_obs
    with pytest.raises(ValueError, match="epsilon"):
        vis_to_image(uvw, freq, vis.astype(np.complex64), npix_x=32, npix_y=32, cell=CELL,
                     epsilon=1e-7)
    with pytest.raises(ValueError, match="even"):
        vis_to_image(uvw, freq, vis, npix_x=33, npix_y=32, cell=CELL)
