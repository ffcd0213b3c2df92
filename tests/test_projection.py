"""The one SIN projection, against astropy's offset frame (an independent rotation)."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from dsa110_pipeline.projection import lm_to_radec, radec_to_lmn


def test_direction_cosines_are_astropys_offset_frame_and_invert():
    rng = np.random.default_rng(4)
    ra0, dec0 = 3.1, 0.9
    ra = ra0 + rng.uniform(-0.2, 0.2, 50)
    dec = dec0 + rng.uniform(-0.1, 0.1, 50)
    lmn = radec_to_lmn(ra, dec, ra0, dec0)
    centre = SkyCoord(ra0 * u.rad, dec0 * u.rad)
    off = SkyCoord(ra * u.rad, dec * u.rad).transform_to(centre.skyoffset_frame())
    a, b = off.lon.rad, off.lat.rad  # east and north of the centre, rotated to (0, 0)
    ref = np.stack([np.cos(b) * np.sin(a), np.sin(b), np.cos(b) * np.cos(a)], axis=-1)
    np.testing.assert_allclose(lmn, ref, atol=1e-12)
    back_ra, back_dec = lm_to_radec(lmn[:, 0], lmn[:, 1], ra0, dec0)
    np.testing.assert_allclose(back_ra, np.mod(ra, 2 * np.pi), atol=1e-12)
    np.testing.assert_allclose(back_dec, dec, atol=1e-12)
