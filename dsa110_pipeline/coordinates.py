"""Where things are: the site, sidereal time, apparent positions and the meridian, one place
for the simulator and every stage.

LSTs and apparent (topocentric, current-epoch) coordinates are pyuvdata's
(``get_lst_for_time``, ``calc_app_coords``, ``calc_frame_pos_angle``), so that phasing here
agrees with pyuvdata's ``UVData.phase``; the meridian is astropy's HADec frame. astropy is
kept offline (:func:`~dsa110_pipeline.iers.offline_astropy`). Directions on the sky are ENU
direction cosines (east, north, up).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .iers import offline_astropy
from .instrument import SITE_HEIGHT, SITE_LATITUDE_DEG, SITE_LONGITUDE_DEG


def earth_location(lat_rad: float, lon_rad: float, height_m: float) -> Any:
    """astropy EarthLocation from WGS84 geodetic coordinates (no site lookup by name)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon=lon_rad * u.rad, lat=lat_rad * u.rad,
                                       height=height_m * u.m)


def dsa110_site() -> Any:
    """DSA-110's site (``instrument.SITE_*``) as an astropy EarthLocation."""
    return earth_location(math.radians(SITE_LATITUDE_DEG), math.radians(SITE_LONGITUDE_DEG),
                          SITE_HEIGHT)


def local_sidereal_time(jd: np.ndarray, location: Any) -> np.ndarray:
    """Local apparent sidereal time (rad) at UTC Julian dates ``jd`` (pyuvdata's)."""
    from pyuvdata.utils.times import get_lst_for_time

    offline_astropy()
    return np.asarray(get_lst_for_time(jd_array=np.asarray(jd, dtype=float),
                                       telescope_loc=location), dtype=float)


def apparent_coordinates(ra: np.ndarray, dec: np.ndarray, jd: np.ndarray, lst: np.ndarray,
                         location: Any) -> tuple[np.ndarray, np.ndarray]:
    """Apparent RA/Dec (rad) of ICRS positions ``ra``/``dec`` (nsrc,) at every time ``jd``
    (with its ``lst``; (ntime,)): two (ntime, nsrc) arrays."""
    from pyuvdata.utils.phasing import calc_app_coords

    offline_astropy()
    ra = np.atleast_1d(np.asarray(ra, dtype=float))
    dec = np.atleast_1d(np.asarray(dec, dtype=float))
    jd = np.atleast_1d(np.asarray(jd, dtype=float))
    nt, ns = jd.size, ra.size
    if ns == 0:
        return np.zeros((nt, 0)), np.zeros((nt, 0))
    app_ra, app_dec = calc_app_coords(
        lon_coord=np.tile(ra, nt), lat_coord=np.tile(dec, nt), coord_frame="icrs",
        coord_type="sidereal", time_array=np.repeat(jd, ns),
        lst_array=np.repeat(np.atleast_1d(np.asarray(lst, dtype=float)), ns),
        telescope_loc=location, all_times_unique=True)  # rows are per (time, source)
    return np.asarray(app_ra).reshape(nt, ns), np.asarray(app_dec).reshape(nt, ns)


def frame_position_angle(jd: np.ndarray, app_ra: np.ndarray, app_dec: np.ndarray,
                         location: Any) -> np.ndarray:
    """Position angle (rad) between the apparent frame and ICRS (J2000) at each time, for
    one apparent position per time (pyuvdata's ``phase_center_frame_pa``)."""
    from pyuvdata.utils.phasing import calc_frame_pos_angle

    offline_astropy()
    return np.asarray(calc_frame_pos_angle(time_array=np.asarray(jd, dtype=float),
                                           app_ra=app_ra, app_dec=app_dec,
                                           telescope_loc=location, ref_frame="icrs",
                                           ref_epoch="J2000"))


def meridian_phase_center(jd: float, dec_rad: float, location: Any) -> tuple[float, float]:
    """ICRS (ra, dec) in rad of the point on the local meridian (hour angle 0) at apparent
    declination ``dec_rad``, at UTC Julian date ``jd``."""
    import astropy.units as u
    from astropy.coordinates import ICRS, HADec, SkyCoord
    from astropy.time import Time

    offline_astropy()
    c = SkyCoord(ha=0.0 * u.rad, dec=dec_rad * u.rad,
                 frame=HADec(obstime=Time(jd, format="jd", scale="utc"), location=location))
    icrs = c.transform_to(ICRS())
    return float(icrs.ra.rad), float(icrs.dec.rad)


def hadec_to_enu(ha: np.ndarray, dec: np.ndarray, lat: float) -> np.ndarray:
    """ENU direction cosines (..., 3) of hour angle / declination (rad) at latitude ``lat``."""
    ha, dec = np.broadcast_arrays(np.asarray(ha, float), np.asarray(dec, float))
    cd = np.cos(dec)
    e = -cd * np.sin(ha)
    n = np.sin(dec) * np.cos(lat) - cd * np.cos(ha) * np.sin(lat)
    u = np.sin(dec) * np.sin(lat) + cd * np.cos(ha) * np.cos(lat)
    return np.stack([e, n, u], axis=-1)


__all__ = ["apparent_coordinates", "dsa110_site", "earth_location", "frame_position_angle",
           "hadec_to_enu", "local_sidereal_time", "meridian_phase_center"]
