"""Observation geometry: times, sidereal times, source directions and the primary beam.

Source directions are computed exactly as pyuvdata does when it phases (apparent
coordinates from ``pyuvdata.utils.phasing.calc_app_coords`` and LSTs from
``pyuvdata.utils.times.get_lst_for_time``), so that phasing a simulation with pyuvdata's
``phase()`` recovers real visibilities. Directions are ENU direction cosines (east, north, up).
"""

from __future__ import annotations

import numpy as np

from ..iers import offline_astropy
from ..instrument import SIDEREAL_DAY, airy_beam

SECONDS_PER_DAY = 86400.0


def earth_location(lat_rad: float, lon_rad: float, height_m: float):
    """astropy EarthLocation from WGS84 geodetic coordinates (no site lookup by name)."""
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    return EarthLocation.from_geodetic(lon=lon_rad * u.rad, lat=lat_rad * u.rad,
                                       height=height_m * u.m)


def local_sidereal_time(jd: np.ndarray, location) -> np.ndarray:
    """Local apparent sidereal time (rad) at Julian dates ``jd`` (pyuvdata's computation)."""
    from pyuvdata.utils.times import get_lst_for_time

    offline_astropy()
    return np.asarray(get_lst_for_time(np.asarray(jd, dtype=float), telescope_loc=location))


def apparent_coordinates(ra: np.ndarray, dec: np.ndarray, jd: np.ndarray, lst: np.ndarray,
                         location) -> tuple[np.ndarray, np.ndarray]:
    """Apparent (topocentric, current-epoch) RA/Dec (rad) of ICRS sources at every time.

    ``ra``/``dec`` (nsrc,), ``jd``/``lst`` (ntime,); returns two (ntime, nsrc) arrays.
    """
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
        coord_type="sidereal", time_array=np.repeat(jd, ns), lst_array=np.repeat(lst, ns),
        telescope_loc=location, all_times_unique=True)  # rows are per (time, source)
    return np.asarray(app_ra).reshape(nt, ns), np.asarray(app_dec).reshape(nt, ns)


def hadec_to_enu(ha: np.ndarray, dec: np.ndarray, lat: float) -> np.ndarray:
    """ENU direction cosines (..., 3) of hour angle / declination (rad) at latitude ``lat``."""
    ha, dec = np.broadcast_arrays(np.asarray(ha, float), np.asarray(dec, float))
    cd = np.cos(dec)
    e = -cd * np.sin(ha)
    n = np.sin(dec) * np.cos(lat) - cd * np.cos(ha) * np.sin(lat)
    u = np.sin(dec) * np.sin(lat) + cd * np.cos(ha) * np.cos(lat)
    return np.stack([e, n, u], axis=-1)


def beam_power(lmn: np.ndarray, pointing_enu: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """Airy power beam for directions ``lmn`` (..., 3) and pointing ``pointing_enu`` (3,):
    shape (..., nfreq)."""
    cosang = np.clip(np.asarray(lmn) @ np.asarray(pointing_enu, float), -1.0, 1.0)
    theta = np.arccos(cosang)
    return airy_beam(theta[..., None], np.asarray(freqs_hz, float))


def transit_offset_s(app_ra: float, lst: float) -> float:
    """Seconds from the time of ``lst`` until (or, if negative, since) a source at apparent RA
    ``app_ra`` is on the meridian (the nearest transit)."""
    dha = np.angle(np.exp(1j * (app_ra - lst)))
    return float(dha / (2 * np.pi) * SIDEREAL_DAY)
