"""Small synthetic DSA-110-like drift-scan subband groups written with pyuvdata (tests only).

Independent of the simulator: random antenna layout (long baselines included),
unprojected drift data, DSA file naming and descending subbands. Visibilities are a
point source at a chosen (hour angle, dec) plus seeded noise, with the pyuvdata
unprojected convention V = S exp(+2πi b·s / λ) (b in ENU-like uvw toward zenith).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.time import Time

from dsa110_pipeline import instrument


def make_drift_group(out_dir: Path, *, n_subbands: int = 2, n_channels: int = 8,
                     n_times: int = 3, n_ants: int = 6, seed: int = 1,
                     start: str = "2026-01-25T12:00:00", name_jitter_s: float = 0.0,
                     source_offset: tuple[float, float] = (0.0, 0.0),
                     nsample_pattern: str = "uniform", max_baseline_m: float = 2500.0,
                     subbands: list[int] | None = None) -> list[Path]:
    """Write subband files ``<start>_sbNN.hdf5`` of one drift-scan group; returns paths.

    ``source_offset`` is the (east, north) direction-cosine offset of a 10 Jy source
    from zenith. ``nsample_pattern``: "uniform" (all 1) or "random".
    """
    from pyuvdata import Telescope, UVData
    from pyuvdata.utils.phasing import calc_uvw

    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import astropy.units as u
    from astropy.coordinates import EarthLocation

    loc = EarthLocation.from_geodetic(lon=instrument.SITE_LONGITUDE_DEG * u.deg,
                                      lat=instrument.SITE_LATITUDE_DEG * u.deg,
                                      height=instrument.SITE_HEIGHT * u.m)
    lat, lon = np.deg2rad(instrument.SITE_LATITUDE_DEG), np.deg2rad(instrument.SITE_LONGITUDE_DEG)
    enu = rng.uniform(-0.5, 0.5, size=(n_ants, 3)) * [max_baseline_m, max_baseline_m, 2.0]
    # ENU -> relative ECEF
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    rot = np.array([[-so, co, 0.0], [-sl * co, -sl * so, cl], [cl * co, cl * so, sl]])
    ecef_rel = enu @ rot
    names = [f"DSA-{i + 1:03d}" for i in range(n_ants)]
    tel = Telescope.new(name="DSA-110", location=loc, antenna_positions=ecef_rel,
                        antenna_names=names, antenna_numbers=np.arange(n_ants),
                        instrument="DSA", antenna_diameters=np.full(n_ants,
                                                                    instrument.DISH_DIAMETER),
                        feeds=["x", "y"], mount_type="alt-az", update_from_known=False)
    t0 = Time(start, format="isot", scale="utc")
    times = t0.jd + (np.arange(n_times) + 0.5) * instrument.INTEGRATION_TIME / 86400.0
    antpairs = [(i, j) for i in range(n_ants) for j in range(i, n_ants)]
    sbs = list(range(n_subbands)) if subbands is None else subbands
    paths = []
    l_src, m_src = source_offset
    n_src = np.sqrt(1.0 - l_src**2 - m_src**2)
    s_enu = np.array([l_src, m_src, n_src])
    for k, sb in enumerate(sbs):
        freqs = instrument.subband_frequencies(sb, n_channels)
        uvd = UVData.new(freq_array=freqs, polarization_array=["xx", "yy"], times=times,
                         telescope=tel, antpairs=antpairs, do_blt_outer=True,
                         integration_time=instrument.INTEGRATION_TIME,
                         channel_width=-instrument.channel_width(n_channels),
                         vis_units="Jy", empty=True)
        enu_bl = calc_uvw(antenna_positions=ecef_rel, antenna_numbers=np.arange(n_ants),
                          ant_1_array=uvd.ant_1_array, ant_2_array=uvd.ant_2_array,
                          telescope_lat=lat, telescope_lon=lon, to_enu=True, use_ant_pos=True)
        # the source drifts: rotate its ENU direction about the polar axis per time
        t_idx = np.unique(uvd.time_array, return_inverse=True)[1]
        ang = 2 * np.pi * 1.0027379 * (times - times[0]) * 1.0
        phase = np.empty((uvd.Nblts, n_channels))
        for ti in range(n_times):
            c, s = np.cos(ang[ti]), np.sin(ang[ti])
            # rotation about the celestial pole expressed in ENU
            pole = np.array([0.0, cl, sl])
            v = s_enu
            v_rot = v * c + np.cross(pole, v) * (-s) + pole * np.dot(pole, v) * (1 - c)
            rows = t_idx == ti
            phase[rows] = 2 * np.pi * np.outer(enu_bl[rows] @ v_rot, freqs) / 299792458.0
        vis = 10.0 * np.exp(1j * phase)
        noise = rng.normal(size=vis.shape) + 1j * rng.normal(size=vis.shape)
        data = (vis + 0.05 * noise)[:, :, None] * np.array([1.0, 0.9])[None, None, :]
        autos = uvd.ant_1_array == uvd.ant_2_array
        data[autos] = np.abs(data[autos])
        uvd.data_array = data.astype(np.complex64)
        uvd.flag_array = rng.uniform(size=uvd.data_array.shape) < 0.05
        if nsample_pattern == "random":
            uvd.nsample_array = rng.integers(1, 4, size=uvd.data_array.shape).astype(np.float32)
        else:
            uvd.nsample_array = np.ones(uvd.data_array.shape, np.float32)
        uvd.uvw_array = enu_bl
        stamp = Time(t0.jd + (rng.uniform(-1, 1) * name_jitter_s + 0.0) / 86400.0, format="jd")
        name = f"{stamp.isot[:19]}_sb{sb:02d}.hdf5"
        p = out_dir / name
        uvd.write_uvh5(str(p), clobber=True)
        paths.append(p)
        del k
    return paths


def source_icrs(hdr, source_offset: tuple[float, float]) -> tuple[float, float]:
    """ICRS (ra, dec) in rad of the synthetic source of :func:`make_drift_group`."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord

    from dsa110_pipeline.iers import offline_astropy

    offline_astropy()
    loc = EarthLocation.from_geodetic(lon=hdr.longitude_deg * u.deg, lat=hdr.latitude_deg * u.deg,
                                      height=hdr.altitude_m * u.m)
    e, n = source_offset
    up = np.sqrt(1.0 - e**2 - n**2)
    az, alt = np.arctan2(e, n), np.arcsin(up)
    t = Time(float(hdr.time_array.min()), format="jd", scale="utc")
    c = SkyCoord(az=az * u.rad, alt=alt * u.rad, frame=AltAz(obstime=t, location=loc))
    icrs = c.icrs
    return float(icrs.ra.rad), float(icrs.dec.rad)
