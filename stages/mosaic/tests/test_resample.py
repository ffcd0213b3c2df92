"""The lattice pixel map and the resampling, against astropy's exact per-pixel map and
``reproject.reproject_interp`` (independent references)."""

from __future__ import annotations

import numpy as np
import pytest

from stages.mosaic.resample import pixel_map, resample


def _wcs(ra0, dec0, n, cell, frame="ICRS", proj="SIN"):
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = [f"RA---{proj}", f"DEC--{proj}"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.cdelt = [-cell, cell]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.radesys = frame
    if frame == "FK5":
        w.wcs.equinox = 2000.0
    return w


@pytest.mark.parametrize("dec0,frame_in,proj_out", [(33.0, "ICRS", "SIN"),
                                                     (71.0, "FK5", "SIN"),
                                                     (-10.0, "FK5", "CAR")])
def test_the_lattice_map_is_the_exact_map(dec0, frame_in, proj_out):
    # a 3.4 deg group image (512 px of 24") onto a grid offset by 1.5 deg in RA
    w_in = _wcs(150.0, dec0, 512, 24 / 3600, frame_in)
    w_out = _wcs(151.5, dec0 + 0.3, 600, 20 / 3600, "ICRS", proj_out)
    if proj_out == "CAR":
        w_out.wcs.crval = [151.5, 0.0]
        w_out.wcs.crpix = [300.5, 300.5 - (dec0 + 0.3) / (20 / 3600)]
    got = pixel_map(w_in, w_out, (600, 700))
    yy, xx = np.mgrid[0:600, 0:700].astype(float)
    x, y = w_in.world_to_pixel(w_out.pixel_to_world(xx, yy))
    assert np.nanmax(np.abs(got[0] - y)) < 1e-4 and np.nanmax(np.abs(got[1] - x)) < 1e-4


def test_resampling_matches_reproject_interp():
    from reproject import reproject_interp

    rng = np.random.default_rng(3)
    w_in = _wcs(150.0, 40.0, 300, 6 / 3600, "FK5")
    w_out = _wcs(150.12, 40.05, 300, 6 / 3600)
    # point sources of a 4-pixel beam and noise: what a group image holds
    yy, xx = np.mgrid[0:300, 0:300].astype(float)
    img = rng.normal(scale=0.01, size=(300, 300))
    for x0, y0 in rng.uniform(20, 280, size=(30, 2)):
        img += np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 1.7 ** 2))
    coords = pixel_map(w_in, w_out, (300, 300))
    ours = resample(img[None], coords)[0]
    ref = reproject_interp((img, w_in), w_out, shape_out=(300, 300), order="bicubic",
                           return_footprint=False)
    assert np.isnan(ours).sum() == pytest.approx(np.isnan(ref).sum(), rel=0.02)
    # the same away from the edges (within 5 pixels of them the two extend the image
    # differently)
    inner = ((coords > 5) & (coords < 294)).all(axis=0)
    assert inner.sum() > 0.5 * ours.size
    assert np.max(np.abs(ours - ref)[inner]) < 1e-4  # of a peak of 1


def test_blanks_stay_blank_and_do_not_spread():
    w = _wcs(150.0, 40.0, 100, 6 / 3600)
    img = np.ones((2, 100, 100))
    img[1, 40:45, 50:55] = np.nan
    out = resample(img, pixel_map(w, w, (100, 100)))
    assert np.isnan(out[:, 40:45, 50:55]).all()
    assert np.isfinite(out[:, :30]).all() and np.isfinite(out[:, 60:]).all()
    assert np.allclose(out[0, :30], 1.0)
