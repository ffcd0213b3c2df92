"""Where a drift scan's dishes point, in the image's frame.

DSA-110's dishes stay on the local meridian at a fixed apparent declination while the data
are phased to one ICRS direction (the meridian at mid-group). The beam centre's track is a
circle of constant *apparent* declination; in the ICRS frame the precession and nutation
since J2000 turn it (0.36 deg by 2026), so it is not the ICRS declination circle through the
phase centre. Measured on a simulated group at dec +52.2 (3C295, 0.12 deg south of the phase
centre): the beam along that circle is off the simulator's by up to 4.3e-4 at the group's
ends (0.3 % in drift rate; 7 mJy of a 22 Jy calibrator), along this track by 5e-5.

The transform is astropy's (HADec <-> ICRS); this module only wires it."""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.iers import offline_astropy
from dsa110_pipeline.projection import radec_to_lmn


def beam_centre_track(times_s: np.ndarray, ra: float, dec: float,
                location_itrf_m: np.ndarray) -> np.ndarray:
    """(nt, 2) direction cosines (l, m) about the phase centre (ICRS ``ra``, ``dec``, rad) of
    a beam centre fixed in hour angle and apparent declination where the phase centre was at
    mid-time (a drift scan phased to its pointing at mid-time; DSA-110's is the meridian), at
    each of ``times_s`` (MJD seconds, UTC), seen from ``location_itrf_m`` (ITRF x, y, z)."""
    import astropy.units as u
    from astropy.coordinates import ICRS, EarthLocation, HADec, SkyCoord
    from astropy.time import Time

    offline_astropy()  # no downloads, and no refusal of dates past the table's predictions
    times_s = np.asarray(times_s, np.float64)
    loc = EarthLocation.from_geocentric(*np.asarray(location_itrf_m, np.float64), unit=u.m)
    t_mid = Time(0.5 * (times_s.min() + times_s.max()) / 86400.0, format="mjd", scale="utc")
    centre = SkyCoord(ra=ra * u.rad, dec=dec * u.rad, frame=ICRS())
    fixed = centre.transform_to(HADec(obstime=t_mid, location=loc))
    t = Time(times_s / 86400.0, format="mjd", scale="utc")
    track = SkyCoord(ha=np.full(t.size, fixed.ha.rad) * u.rad,
                     dec=np.full(t.size, fixed.dec.rad) * u.rad,
                     frame=HADec(obstime=t, location=loc)).transform_to(ICRS())
    return radec_to_lmn(track.ra.rad, track.dec.rad, ra, dec)[..., :2]

