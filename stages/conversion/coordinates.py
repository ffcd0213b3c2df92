"""Sky coordinates for phasing: the phase centre and its apparent position per integration.

These are small computations on the unique integration times only (astropy/erfa,
through pyuvdata's coordinate utilities, so our phasing agrees with pyuvdata's
``UVData.phase``). No I/O; astropy is kept offline.
"""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.iers import offline_astropy


def site_location(latitude_deg: float, longitude_deg: float, altitude_m: float):
    """An astropy EarthLocation from geodetic coordinates (never a by-name site lookup)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon=longitude_deg * u.deg, lat=latitude_deg * u.deg,
                                       height=altitude_m * u.m)


def meridian_phase_center(time_jd: float, dec_rad: float, location) -> tuple[float, float]:
    """ICRS (ra, dec) in rad of the point on the local meridian (hour angle 0) at the
    apparent declination ``dec_rad``, at time ``time_jd`` (UTC JD)."""
    import astropy.units as u
    from astropy.coordinates import ICRS, HADec, SkyCoord
    from astropy.time import Time

    offline_astropy()
    t = Time(time_jd, format="jd", scale="utc")
    c = SkyCoord(ha=0.0 * u.rad, dec=dec_rad * u.rad,
                 frame=HADec(obstime=t, location=location))
    icrs = c.transform_to(ICRS())
    return float(icrs.ra.rad), float(icrs.dec.rad)


def local_sidereal_time(time_jd: np.ndarray, location) -> np.ndarray:
    """Local apparent sidereal time (rad) of UTC JD times, as pyuvdata computes it."""
    from pyuvdata.utils.times import get_lst_for_time

    offline_astropy()
    return np.asarray(get_lst_for_time(jd_array=np.asarray(time_jd, dtype=float),
                                       telescope_loc=location), dtype=float)


def apparent_coordinates(ra: float, dec: float, time_jd: np.ndarray, lst: np.ndarray,
                         location) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apparent (ra, dec) and frame position angle (rad) of an ICRS position per time."""
    from pyuvdata.utils.phasing import calc_app_coords, calc_frame_pos_angle

    offline_astropy()
    t = np.asarray(time_jd, dtype=float)
    app_ra, app_dec = calc_app_coords(lon_coord=ra, lat_coord=dec, coord_frame="icrs",
                                      coord_epoch=2000.0, coord_type="sidereal",
                                      time_array=t, lst_array=np.asarray(lst, dtype=float),
                                      telescope_loc=location)
    pa = calc_frame_pos_angle(time_array=t, app_ra=app_ra, app_dec=app_dec,
                              telescope_loc=location, ref_frame="icrs", ref_epoch="J2000")
    return np.asarray(app_ra), np.asarray(app_dec), np.asarray(pa)
