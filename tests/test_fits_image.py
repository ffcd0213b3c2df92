"""The one FITS image reader: planes of cubes, clear errors, the frequency of a header."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from dsa110_pipeline.errors import InputError
from dsa110_pipeline.fits_image import celestial_wcs, header_frequency, read_image_plane


def _cube(path, freq_axis=True):
    data = np.arange(2 * 1 * 6 * 5, dtype=np.float32).reshape(2, 1, 6, 5)
    h = fits.Header()
    h.update(CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CRVAL1=150.0, CRVAL2=30.0, CRPIX1=3.0,
             CRPIX2=3.5, CDELT1=-1e-3, CDELT2=1e-3, CUNIT1="deg", CUNIT2="deg",
             CTYPE4="STOKES", CRVAL4=1.0, CDELT4=1.0, CRPIX4=1.0)
    if freq_axis:
        h.update(CTYPE3="FREQ", CRVAL3=1.405e9, CDELT3=1e6, CRPIX3=1.0, CUNIT3="Hz")
    else:
        h["RESTFRQ"] = 1.35e9
    fits.writeto(path, data, h)
    return data


def test_a_cube_gives_its_first_plane_and_its_frequency(tmp_path):
    data = _cube(tmp_path / "c.fits")
    plane, hdr = read_image_plane(tmp_path / "c.fits")
    assert plane.dtype == np.float64 and plane.shape == (6, 5)
    assert np.array_equal(plane, data[0, 0])
    assert header_frequency(hdr) == 1.405e9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = celestial_wcs(hdr)
    assert w.naxis == 2
    ra, dec = w.pixel_to_world_values(2.0, 2.5)  # the reference pixel (0-based)
    assert np.isclose(ra, 150.0) and np.isclose(dec, 30.0)


def test_restfrq_stands_in_for_a_frequency_axis_and_none_when_neither(tmp_path):
    _cube(tmp_path / "r.fits", freq_axis=False)
    assert header_frequency(read_image_plane(tmp_path / "r.fits")[1]) == 1.35e9
    assert header_frequency(fits.Header({"NAXIS": 2})) is None


def test_bad_files_are_named(tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        read_image_plane(tmp_path / "none.fits")
    assert "none.fits" in str(e.value)
    (tmp_path / "junk.fits").write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(InputError, match="cannot read") as e:
        read_image_plane(tmp_path / "junk.fits")
    assert "junk.fits" in str(e.value)
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    with pytest.raises(InputError, match="no image data"):
        read_image_plane(tmp_path / "empty.fits")
