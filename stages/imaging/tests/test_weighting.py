import numpy as np
import pytest

from dsa110_pipeline.instrument import SPEED_OF_LIGHT
from stages.imaging.weighting import (
    apply_weighting,
    briggs_factor,
    grid_weight_density,
    uv_selection,
    weight_sums,
)

NPIX, CELL = 64, np.radians(30 / 3600)
DU = 1 / (NPIX * CELL)  # uv cell in wavelengths
FREQ = np.array([SPEED_OF_LIGHT])  # 1 m wavelength: uvw in metres = wavelengths


def _uvw(points):
    p = np.asarray(points, dtype=float) * DU
    return np.column_stack([p, np.zeros(len(p))])


def test_natural_is_input_weight_with_flags_zeroed():
    uvw = _uvw([(1, 1), (5, 2), (5, 2)])
    w = np.array([[1.0], [2.0], [3.0]])
    mask = np.array([[1], [0], [1]], np.uint8)
    out = apply_weighting(uvw, FREQ, w, mask, scheme="natural", npix_x=NPIX, npix_y=NPIX,
                          cell=CELL)
    np.testing.assert_allclose(out[:, 0], [1.0, 0.0, 3.0])


def test_density_grid_counts_both_hermitian_halves():
    uvw = _uvw([(3, 4), (3, 4), (-3, -4)])
    w = np.ones((3, 1))
    d = grid_weight_density(uvw, FREQ, w, None, npix_x=NPIX, npix_y=NPIX, cell=CELL)
    assert d[NPIX // 2 + 4, NPIX // 2 + 3] == 3.0
    assert d[NPIX // 2 - 4, NPIX // 2 - 3] == 3.0
    assert d.sum() == 6.0


def test_uniform_gives_each_cell_equal_total_weight():
    # three visibilities share a cell, one sits alone
    uvw = _uvw([(2, 2), (2, 2), (2, 2), (10, -7)])
    w = np.ones((4, 1))
    out = apply_weighting(uvw, FREQ, w, None, scheme="uniform", npix_x=NPIX, npix_y=NPIX,
                          cell=CELL)
    np.testing.assert_allclose(out[:, 0], [1 / 3, 1 / 3, 1 / 3, 1.0], rtol=1e-6)


def test_briggs_limits_and_formula():
    rng = np.random.default_rng(1)
    pts = rng.integers(-6, 7, size=(400, 2))
    uvw = _uvw(pts)
    w = rng.uniform(0.5, 1.5, (400, 1))
    kw = dict(npix_x=NPIX, npix_y=NPIX, cell=CELL)
    nat = apply_weighting(uvw, FREQ, w, None, scheme="natural", **kw)
    uni = apply_weighting(uvw, FREQ, w, None, scheme="uniform", **kw)
    hi = apply_weighting(uvw, FREQ, w, None, scheme="briggs", robust=5, **kw)
    lo = apply_weighting(uvw, FREQ, w, None, scheme="briggs", robust=-5, **kw)
    np.testing.assert_allclose(hi / nat, np.median(hi / nat), rtol=2e-3)  # ~ natural
    np.testing.assert_allclose(lo / uni, np.median(lo / uni), rtol=2e-3)  # ~ uniform
    d = grid_weight_density(uvw, FREQ, w, None, **kw)
    f2 = briggs_factor(d, 0.0)
    assert f2 == pytest.approx(25 / ((d**2).sum() / d.sum()))
    r0 = apply_weighting(uvw, FREQ, w, None, scheme="briggs", robust=0.0, **kw)
    k = 7
    iu, iv = pts[k] + NPIX // 2
    assert r0[k, 0] == pytest.approx(w[k, 0] / (1 + d[iv, iu] * f2), rel=1e-5)


def test_uv_range_and_taper():
    uvw = _uvw([(1, 0), (4, 3), (12, 0)])
    sel = uv_selection(uvw, FREQ, uv_min=2 * DU, uv_max=10 * DU)
    np.testing.assert_array_equal(sel[:, 0], [0, 1, 0])
    theta = np.radians(60 / 3600)
    tap = uv_selection(uvw, FREQ, taper_fwhm=theta)
    r = np.array([1, 5, 12]) * DU
    np.testing.assert_allclose(tap[:, 0], np.exp(-(np.pi * theta * r) ** 2 / (4 * np.log(2))),
                               rtol=1e-5)
    # the uv cut also removes the points from the density grid (uniform weight of the rest = 1)
    w = np.ones((3, 1))
    out = apply_weighting(uvw, FREQ, w, None, scheme="uniform", npix_x=NPIX, npix_y=NPIX,
                          cell=CELL, uv_min=2 * DU)
    np.testing.assert_allclose(out[:, 0], [0, 1, 1])


def test_unknown_scheme():
    with pytest.raises(ValueError, match="unknown weighting"):
        apply_weighting(_uvw([(1, 1)]), FREQ, np.ones((1, 1)), None, scheme="robust",
                        npix_x=NPIX, npix_y=NPIX, cell=CELL)


def test_weight_sums_match_numpy():
    rng = np.random.default_rng(4)
    data_w = rng.uniform(0.5, 2.0, (60, 5)).astype(np.float32)
    data_w[3, 1] = 0.0
    w = (data_w * rng.uniform(0.1, 1.0, data_w.shape)).astype(np.float32)
    w[7] = 0.0
    time = rng.choice([10.0, 20.0, 30.0], 60)  # rows in any order
    wsum, var, chan, times, per_time = weight_sums(data_w, w, time)
    w64 = w.astype(np.float64)
    assert wsum == pytest.approx(w64.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        assert var == pytest.approx(np.where(data_w > 0, w64**2 / data_w, 0).sum())
    np.testing.assert_allclose(chan, w64.sum(axis=0))
    np.testing.assert_array_equal(times, [10.0, 20.0, 30.0])
    for k, t in enumerate(times):
        np.testing.assert_allclose(per_time[k], w64[time == t].sum(axis=0))
    _, _, _, times1, per_time1 = weight_sums(data_w, w)
    assert times1.shape == (1,) and np.allclose(per_time1[0], chan)
