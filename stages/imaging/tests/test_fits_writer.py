import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from stages.imaging.beam import Beam
from stages.imaging.fits_writer import (
    ImageGeometry,
    build_header,
    mjd_seconds_to_isot,
    write_fits,
)
from stages.imaging.gridding import vis_to_image
from stages.imaging.peaks import parabolic_peak
from stages.imaging.tests._sim import point_source_vis, t_layout, uvw_tracks

RA0, DEC0 = np.radians(343.49), np.radians(16.15)


def _lm(ra, dec):
    l = np.cos(dec) * np.sin(ra - RA0)
    m = np.sin(dec) * np.cos(DEC0) - np.cos(dec) * np.sin(DEC0) * np.cos(ra - RA0)
    return l, m


def test_pixel_of_a_known_source_converts_to_its_ra_dec(tmp_path):
    npix, cell = 256, np.radians(8 / 3600)
    ra_s, dec_s = RA0 + np.radians(0.21), DEC0 - np.radians(0.13)  # off-grid, far from centre
    l, m = _lm(ra_s, dec_s)
    uvw = uvw_tracks(t_layout(seed=9), DEC0, np.linspace(-0.01, 0.01, 6))
    freq = np.array([1.35e9, 1.45e9])
    vis = point_source_vis(uvw, freq, [(1.0, l, m)])
    img = vis_to_image(uvw, freq, vis, npix_x=npix, npix_y=npix, cell=cell, epsilon=1e-7)
    r, c = np.unravel_index(np.argmax(img), img.shape)
    # sub-pixel peak from parabolas
    _, rr, cc = parabolic_peak(img, r, c, half=1)
    geom = ImageGeometry(RA0, DEC0, cell, npix, npix, 1.4e9, 2e8)
    path = write_fits(tmp_path / "img.fits", img, build_header(geom, role="image"))
    w = WCS(fits.getheader(path)).celestial
    truth = SkyCoord(np.degrees(ra_s), np.degrees(dec_s), unit="deg", frame="fk5")
    # the exact pixel of the source (SIN projection, l = -(col - nx/2) cell, 0-based)
    col, row = npix // 2 - l / cell, npix // 2 + m / cell
    got = w.pixel_to_world(col, row)
    assert got.separation(truth).deg < 0.1 * np.degrees(cell)
    px, py = w.world_to_pixel(truth)
    assert np.hypot(px - col, py - row) < 0.1
    # the dirty image peaks there (parabolic interpolation is good to ~0.2 pixel)
    assert abs(r - row) < 1 and abs(c - col) < 1
    assert np.hypot(cc - col, rr - row) < 0.25


def test_header_content_and_atomic_write(tmp_path):
    geom = ImageGeometry(RA0, DEC0, np.radians(6 / 3600), 64, 32, 1.405e9, 1.875e8)
    beam = Beam(np.radians(20 / 3600), np.radians(15 / 3600), 33.0)
    h = build_header(geom, role="model", beam=beam, date_obs=mjd_seconds_to_isot(5.1e9),
                     object_name="3C454.3", provenance={"CFGHASH": "abc123", "MSNAME": "x.ms"},
                     calibration_tables=["bcal-1", "gcal-7"])
    data = np.arange(64 * 32, dtype=np.float64).reshape(32, 64)
    path = write_fits(tmp_path / "sub" / "model.fits", data, h)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.fits"]
    with fits.open(path) as hdul:
        hd, arr = hdul[0].header, hdul[0].data
    assert arr.shape == (1, 1, 32, 64) and arr.dtype.kind == "f" and arr.dtype.itemsize == 4
    np.testing.assert_array_equal(arr[0, 0], data)
    assert hd["BUNIT"] == "Jy/pixel"
    assert hd["BMAJ"] == pytest.approx(20 / 3600) and hd["BPA"] == 33.0
    assert hd["CTYPE1"] == "RA---SIN" and hd["CTYPE3"] == "FREQ" and hd["CTYPE4"] == "STOKES"
    assert hd["CRVAL3"] == 1.405e9 and hd["CRPIX1"] == 33 and hd["CRPIX2"] == 17
    assert hd["TELESCOP"] == "DSA-110" and hd["OBJECT"] == "3C454.3"
    assert hd["CFGHASH"] == "abc123" and hd["MSNAME"] == "x.ms" and hd["CALTAB2"] == "gcal-7"
    assert hd["DATE-OBS"].startswith("2020-") or hd["DATE-OBS"][:2] == "20"
    assert "PIPEVER" in hd
    w = WCS(hd)
    assert w.naxis == 4


def test_bad_inputs(tmp_path):
    geom = ImageGeometry(RA0, DEC0, 1e-5, 64, 64, 1.4e9)
    with pytest.raises(ValueError, match="unknown image role"):
        build_header(geom, role="dirty")
    with pytest.raises(ValueError, match="cell"):
        ImageGeometry(RA0, DEC0, -1e-5, 64, 64, 1.4e9)
    with pytest.raises(ValueError, match="2-D"):
        write_fits(tmp_path / "x.fits", np.zeros(5), build_header(geom, role="image"))
