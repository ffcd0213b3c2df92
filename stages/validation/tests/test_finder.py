"""Source finders (PyBDSF and the built-in island finder) on synthetic images with known
sources; background maps; the source-list writers."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from stages.validation.background import background_maps, clipped_stats_sorted, robust_stats
from stages.validation.finder import find_sources
from stages.validation.finder_bdsf import bdsf_available
from stages.validation.gaussfit import FWHM_PER_SIGMA, fit_gaussians, gaussian2d
from stages.validation.image_io import MissingBeamError, read_fits_image
from stages.validation.sources import read_sources_fits, write_sources_csv, write_sources_fits

from ._synth import make_image, write_fits

ARCSEC = np.radians(1 / 3600)
CENTRE = (150.0, 30.0)
NOISE = 1e-3

_NO_BDSF = pytest.mark.skipif(not bdsf_available(), reason="bdsf not installed")
METHODS = [pytest.param("bdsf", marks=_NO_BDSF), "islands"]


def _grid(n_side: int = 6, npix: int = 512, cell: float = 8.0):
    """Sources on a jittered grid with fluxes 15-200 sigma; returns RA, Dec (deg), flux."""
    rng = np.random.default_rng(11)
    step = npix * cell / 3600 / (n_side + 1)
    off = (np.arange(n_side) - (n_side - 1) / 2) * step
    dy, dx = np.meshgrid(off, off, indexing="ij")
    dx = dx.ravel() + rng.uniform(-0.2, 0.2, dx.size) * step
    dy = dy.ravel() + rng.uniform(-0.2, 0.2, dy.size) * step
    dec = CENTRE[1] + dy
    ra = CENTRE[0] + dx / np.cos(np.radians(dec))
    flux = NOISE * np.geomspace(15, 200, dx.size)
    return ra, dec, flux


@pytest.fixture(scope="module")
def grid_image(tmp_path_factory):
    ra, dec, flux = _grid()
    s = make_image(ra, dec, flux, centre=CENTRE, npix=512, noise_rms=NOISE, seed=5,
                   apply_pb=False)
    path = write_fits(tmp_path_factory.mktemp("grid") / "grid.fits", s.data, s)
    return read_fits_image(path), (ra, dec, flux)


@pytest.mark.parametrize("method, background",
                         [("islands", "builtin"),
                          pytest.param("bdsf", "builtin", marks=_NO_BDSF),
                          pytest.param("bdsf", "pybdsf", marks=_NO_BDSF)])
def test_finder_recovers_positions_and_fluxes(grid_image, method, background):
    img, (ra, dec, flux) = grid_image
    res = find_sources(img, method=method, thresh_pix=5.0, thresh_isl=3.0,
                       bdsf_background=background)
    src = res.sources
    assert len(src) == len(ra)
    # nearest detection of every true source
    cosd = np.cos(np.radians(dec))
    d2 = ((np.radians(ra)[:, None] - src.ra[None]) * cosd[:, None]) ** 2 + (
        np.radians(dec)[:, None] - src.dec[None]) ** 2
    j = np.argmin(d2, axis=1)
    assert len(set(j.tolist())) == len(ra)
    dra = (src.ra[j] - np.radians(ra)) * cosd
    ddec = src.dec[j] - np.radians(dec)
    assert np.sqrt(np.mean(dra**2 + ddec**2)) / ARCSEC < 1.0
    # errors are honest: normalised residuals have unit-ish scatter
    z = np.r_[dra / src.ra_err[j], ddec / src.dec_err[j]]
    assert 0.5 < np.std(z) < 2.0
    zp = (src.peak_jy[j] - flux) / src.peak_err_jy[j]
    assert 0.4 < np.std(zp) < 2.5 and abs(np.median(zp)) < 1.0
    assert np.allclose(src.peak_jy[j], flux, rtol=0.15)
    assert np.median(src.int_jy[j] / flux) == pytest.approx(1.0, abs=0.03)
    # fitted sizes are the beam (point sources)
    assert np.median(src.maj[j]) / ARCSEC == pytest.approx(30.0, rel=0.05)
    assert np.median(src.min[j]) / ARCSEC == pytest.approx(22.0, rel=0.05)
    assert np.median(res.rms) == pytest.approx(NOISE, rel=0.1)


@pytest.mark.parametrize("method", METHODS)
def test_noise_only_image_gives_nothing_above_6_sigma(tmp_path, method):
    s = make_image(np.zeros(0), np.zeros(0), np.zeros(0), centre=CENTRE, npix=512,
                   noise_rms=NOISE, seed=21, apply_pb=False)
    img = read_fits_image(write_fits(tmp_path / "noise.fits", s.data, s))
    res = find_sources(img, method=method)
    assert np.all(res.sources.snr < 6.0)
    assert np.median(res.rms) == pytest.approx(NOISE, rel=0.1)


def test_image_without_beam_cannot_be_searched(tmp_path):
    s = make_image(np.zeros(0), np.zeros(0), np.zeros(0), centre=CENTRE, npix=64,
                   noise_rms=NOISE, apply_pb=False)
    path = write_fits(tmp_path / "nobeam.fits", s.data, s, beam=False)
    with pytest.raises(MissingBeamError, match="restoring beam"):
        read_fits_image(path)
    img = read_fits_image(path, require_beam=False)
    assert img.beam is None
    with pytest.raises(MissingBeamError):
        find_sources(img, method="islands")


@_NO_BDSF
def test_bdsf_on_builtin_maps_runs_in_a_thread_without_helper_processes(monkeypatch,
                                                                        grid_image):
    """The runner calls stages from threads (and dask workers are daemonic processes,
    which may not start children): on the built-in maps PyBDSF must fork nothing."""
    import threading

    import bdsf.multi_proc

    def no_fork(*_a, **_k):
        raise AssertionError("PyBDSF started a helper process")

    monkeypatch.setattr(bdsf.multi_proc, "parallel_map", no_fork)
    img, (ra, _, _) = grid_image
    out: dict = {}

    def work() -> None:
        try:
            out["res"] = find_sources(img, method="bdsf", ncores=2, bdsf_background="builtin")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            out["err"] = exc

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "err" not in out, out.get("err")
    assert out["res"].method == "pybdsf" and len(out["res"].sources) == len(ra)


def test_gaussian_fit_separates_a_blend():
    yy, xx = np.mgrid[0:50, 0:60]
    a = (3.0, 24.0, 25.0, 2.2, 1.7, np.radians(10.0))
    b = (1.5, 31.5, 27.0, 2.0, 2.0, 0.0)
    data = gaussian2d(xx, yy, *a) + gaussian2d(xx, yy, *b)
    fit = fit_gaussians(data, data > 0.05, np.array([24.0, 31.0]), np.array([25.0, 27.0]),
                        np.array([3.0, 1.5]), (2.1, 1.8, 0.0))
    assert fit.ok
    assert np.allclose(fit.amp, [a[0], b[0]], rtol=1e-5)
    assert np.allclose(fit.x, [a[1], b[1]], atol=1e-4)
    assert np.allclose(fit.y, [a[2], b[2]], atol=1e-4)
    assert np.allclose(fit.smaj, [a[3], b[3]], rtol=1e-4)
    assert np.allclose(fit.smin[0], a[4], rtol=1e-4)
    assert fit.pa[0] == pytest.approx(a[5], abs=1e-4)


def test_gaussian_fit_recovers_parameters():
    yy, xx = np.mgrid[0:40, 0:40]
    truth = (2.0, 20.3, 18.7, 3.0, 1.8, np.radians(35.0))
    data = gaussian2d(xx, yy, *truth)
    fit = fit_gaussians(data, np.ones(data.shape, bool), np.array([20.0]), np.array([19.0]),
                        np.array([1.9]), (2.5, 2.0, 0.0))
    assert fit.ok
    got = (fit.amp[0], fit.x[0], fit.y[0], fit.smaj[0], fit.smin[0], fit.pa[0])
    assert np.allclose(got, truth, atol=1e-4)
    assert np.isclose(FWHM_PER_SIGMA, 2.3548, rtol=1e-4)


def test_background_maps_follow_a_noise_gradient():
    rng = np.random.default_rng(2)
    sigma = np.linspace(1.0, 3.0, 400)[None, :] * np.ones((400, 1))
    img = rng.normal(0, 1, (400, 400)) * sigma + 5.0
    img[200, 200] = 1e4  # a bright pixel must not bias the box statistics
    mean, rms = background_maps(img, 50)
    assert np.median(np.abs(rms / sigma - 1)) < 0.05
    assert np.median(mean) == pytest.approx(5.0, abs=0.05)
    med, sig = robust_stats(np.r_[rng.normal(0, 2, 10000), np.nan, 1e6])
    assert sig == pytest.approx(2.0, rel=0.05)
    g_mean, g_rms = background_maps(img, 0)
    assert np.ptp(g_rms) == 0


def test_clipped_stats_match_a_direct_computation():
    rng = np.random.default_rng(9)
    rows = [np.r_[rng.normal(1.0, 2.0, 5000), rng.uniform(20, 500, 200)],  # sources
            np.r_[rng.normal(-3.0, 0.5, 3000), -np.inf, np.inf,  # blanked part, infinities
                  np.full(2198, np.nan)],
            np.full(5200, np.nan)]  # nothing finite
    s = np.sort(np.vstack(rows), axis=1)
    med, sig, n = clipped_stats_sorted(s, clip=3.0, iters=10)
    for r, m, sg, k in zip(rows[:2], med, sig, n):
        v = r[np.isfinite(r)]
        for _ in range(10):  # the same clipping done the slow way
            q25, q50, q75 = np.percentile(v, [25, 50, 75])
            sd = (q75 - q25) / 1.3489795
            v = r[np.isfinite(r) & (np.abs(r - q50) <= 3.0 * sd)]
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        assert m == pytest.approx(q50, rel=1e-9) and k == v.size
        assert sg == pytest.approx((q75 - q25) / 1.3489795, rel=1e-9)
    assert med[0] == pytest.approx(1.0, abs=0.1) and sig[0] == pytest.approx(2.0, rel=0.05)
    assert sig[1] == pytest.approx(0.5, rel=0.05)
    assert np.isnan(med[2]) and np.isnan(sig[2]) and n[2] == 0


def test_source_lists_round_trip(tmp_path, grid_image):
    img, _ = grid_image
    src = find_sources(img, method="islands").sources
    pb = np.full(len(src), 0.5)
    fits_path = write_sources_fits(tmp_path / "s.fits", src, pb, meta={"group": "g1"})
    back = read_sources_fits(fits_path)
    assert len(back) == len(src)
    assert np.allclose(back.ra, src.ra, rtol=0, atol=1e-12)
    assert np.allclose(back.int_err_jy, src.int_err_jy)
    assert back.finder == "islands"
    assert back.fit.tolist() == src.fit.tolist() and set(src.fit) <= {"gaussian", "point"}
    csv_path = write_sources_csv(tmp_path / "s.csv", src, pb)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(src)
    assert {"ra_deg", "dec_deg", "peak_flux_jy", "peak_flux_err_jy", "int_flux_jy",
            "int_flux_err_jy", "int_flux_pbcor_jy"} <= set(rows[0])
    assert float(rows[0]["int_flux_pbcor_jy"]) == pytest.approx(2 * src.int_jy[0], rel=1e-8)
    assert [r["fit"] for r in rows] == src.fit.tolist()
    # no temporaries left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.fits"]


def test_auto_falls_back_to_islands_without_bdsf(monkeypatch, grid_image):
    import stages.validation.finder as finder

    monkeypatch.setattr(finder, "bdsf_available", lambda: False)
    assert finder.choose_method("auto") == "islands"
    with pytest.raises(RuntimeError, match="not installed"):
        finder.choose_method("bdsf")
    img, (ra, _, _) = grid_image
    res = finder.find_sources(img, method="auto")
    assert res.method == "islands" and len(res.sources) == len(ra)


def test_beam_in_pixels_scales_the_beam_per_axis():
    from stages.validation.image_io import beam_in_pixels

    s = 6 * ARCSEC
    maj, mn, pa = beam_in_pixels(25 * ARCSEC, 15 * ARCSEC, np.radians(30.0), s, s)
    assert np.allclose([maj, mn, np.degrees(pa)], [25 / 6, 15 / 6, 30.0])
    # a circular beam on pixels half as wide east-west as north-south: twice as long in x
    maj, mn, pa = beam_in_pixels(30 * ARCSEC, 30 * ARCSEC, 0.0, s / 2, s)
    assert np.allclose([maj, mn, abs(np.degrees(pa))], [10.0, 5.0, 90.0])


def test_a_car_strip_away_from_the_equator_measures_true_fluxes(tmp_path):
    """CAR on the equator's lattice at Dec +33: RA pixels are cos(33) = 0.84 of their
    CDELT on the sky. The finder's beam (area and shape) must follow the sky, not CDELT:
    taking CDELT made every integrated flux 1 / cos(33) = 1.19 too high."""
    from astropy.io import fits
    from astropy.wcs import WCS

    cell, dec0, n = 6.0 / 3600, 33.0, 400
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.crval = [150.0, 0.0]
    w.wcs.cdelt = [-cell, cell]
    w.wcs.crpix = [n / 2 + 1, 1 - dec0 / cell + n / 2]
    yy, xx = np.mgrid[0:n, 0:n].astype(float)
    ra, dec = w.pixel_to_world_values(xx, yy)
    rng = np.random.default_rng(4)
    data = rng.normal(0, NOISE, (n, n))
    fwhm = 30.0 / 3600
    truth = []
    for k in range(9):
        sra = 150.0 + (k % 3 - 1) * 0.15 / np.cos(np.radians(dec0)) + rng.uniform(-0.01, 0.01)
        sdec = dec0 + (k // 3 - 1) * 0.15 + rng.uniform(-0.01, 0.01)
        d2 = ((ra - sra) * np.cos(np.radians(sdec))) ** 2 + (dec - sdec) ** 2
        flux = NOISE * (30 + 20 * k)
        data += flux * np.exp(-4 * np.log(2) * d2 / fwhm ** 2)
        truth.append((sra, sdec, flux))
    hdr = w.to_header()
    hdr.update(BMAJ=fwhm, BMIN=fwhm, BPA=0.0, BUNIT="JY/BEAM")
    path = tmp_path / "car.fits"
    fits.writeto(path, data.astype(np.float32), hdr)
    img = read_fits_image(path)
    sx, sy = img.pixel_scale
    assert sx / sy == pytest.approx(np.cos(np.radians(dec0)), rel=2e-3)
    src = find_sources(img, method="islands", thresh_pix=5.0, thresh_isl=3.0).sources
    assert len(src) == len(truth)
    got = sorted(zip(np.degrees(src.ra), src.int_jy), key=lambda t: t[1])
    ratio = np.array([g[1] for g in got]) / np.array(sorted(t[2] for t in truth))
    assert abs(np.median(ratio) - 1.0) < 0.03, ratio
