"""Simulate DSA-110 observation groups: wiring of layout, sky, geometry, DFT, corruptions and
the UVH5 writer. Streams one subband at a time (memory ~ one subband's visibilities)."""

from __future__ import annotations

import logging
import math
import os
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from .. import coordinates as coords
from .. import instrument as ins
from ..array_layout import ArrayLayout, load_layout
from ..catalogs import SourceCatalog, find_calibrator, read_catalog
from ..dft import predict_visibilities_drift
from ..errors import InputError
from ..iers import offline_astropy
from ..uvh5 import UVH5Header
from . import geometry as geo
from .config import SimulationConfig
from .corruptions import (
    corrupt,
    draw_bandpasses,
    draw_gains,
    rfi_antenna_phases,
    rfi_power,
)
from .injections import transit_groups, unsurveyed, variability
from .sky import angular_distance, concatenate, random_sky, spectra
from .survey import SURVEY_CATALOG, survey_view, write_survey_catalog
from .truth import write_truth
from .uvh5_writer import PYUVDATA_READ_KWARGS, write_uvh5

log = logging.getLogger(__name__)

JD_UNIX_EPOCH = 2440587.5
FILENAME_FORMAT = "%Y-%m-%dT%H:%M:%S"


@dataclass(frozen=True)
class GroupFiles:
    """The files of one simulated group: subband files in subband order (a missing subband
    is left out), and the truth beside them."""

    start_iso: str
    files: list[Path]
    truth_json: Path
    truth_npz: Path


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate_observation` wrote."""

    groups: list[GroupFiles]
    config: SimulationConfig
    start_iso: str  #: the actual start of group 0 (moved when a calibrator is placed)
    layout: ArrayLayout
    n_sources: int
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: The NVSS-like catalog of the sky that the pipeline may use (never the truth).
    survey_catalog: Path | None = None


def _iso_to_jd(iso: str) -> float:
    dt = datetime.fromisoformat(iso)
    if dt.tzinfo is not None:
        dt = dt.replace(tzinfo=None) - dt.utcoffset()
    return JD_UNIX_EPOCH + (dt - datetime(1970, 1, 1)).total_seconds() / 86400.0


def _jd_to_datetime(jd: float) -> datetime:
    # JD doubles resolve ~40 us: round to the millisecond
    return datetime(1970, 1, 1) + timedelta(milliseconds=round((jd - JD_UNIX_EPOCH) * 86400e3))


def _jd_to_name(jd: float) -> str:
    # whole seconds, as the correlator names its files
    dt = _jd_to_datetime(jd)
    return (dt + timedelta(microseconds=500_000)).replace(microsecond=0).strftime(FILENAME_FORMAT)


def _baselines(layout: ArrayLayout) -> tuple[np.ndarray, np.ndarray]:
    """Station indices (i <= j, autos included) of all baselines between active stations."""
    act = np.flatnonzero(layout.active)
    i, j = np.triu_indices(act.size)
    return act[i], act[j]


def _calibrator_sky(name: str, freqs_hz: np.ndarray) -> tuple[SourceCatalog, np.ndarray]:
    from ..catalogs import (
        DEFAULT_REF_FREQ_HZ,
        DEFAULT_SPECTRAL_INDEX,
        flux_density,
        is_flux_standard,
    )

    cal = find_calibrator(name)
    if is_flux_standard(name) or is_flux_standard(cal.name):
        key = name if is_flux_standard(name) else cal.name
        spec = np.asarray(flux_density(key, freqs_hz), dtype=float)
        s_ref = float(flux_density(key, DEFAULT_REF_FREQ_HZ))
    else:
        if cal.flux_jy is None:
            raise InputError(f"calibrator {name!r} has no L-band flux density in the VLA list")
        s_ref = float(cal.flux_jy)
        spec = s_ref * (np.asarray(freqs_hz) / DEFAULT_REF_FREQ_HZ) ** DEFAULT_SPECTRAL_INDEX
    cat = SourceCatalog(name=np.array([cal.name]), ra=np.array([cal.ra]),
                        dec=np.array([cal.dec]), flux_jy=np.array([s_ref]),
                        spectral_index=np.array([DEFAULT_SPECTRAL_INDEX]),
                        ref_freq_hz=np.array([DEFAULT_REF_FREQ_HZ]), source="VLA calibrator list")
    return cat, spec


NOISE_CHUNKS = 8
#: Subbands whose sky model is computed in one kernel call (halves the kernel's sines and
#: cosines; memory: this many subbands of one-polarisation model visibilities).
SUBBANDS_PER_PASS = 2


def _noise(key: tuple[int, ...], shape: tuple[int, ...], sigma: float,
           nthreads: int | None) -> np.ndarray:
    """Gaussian noise (float32) of rms ``sigma``, filled in NOISE_CHUNKS pieces along the
    first axis from generators seeded by ``key`` and the piece number (reproducible
    whatever the thread count; numpy releases the GIL while it fills)."""
    from concurrent.futures import ThreadPoolExecutor

    out = np.empty(shape, np.float32)
    edges = np.linspace(0, shape[0], NOISE_CHUNKS + 1).astype(int)

    def fill(k: int) -> None:
        part = out[edges[k]:edges[k + 1]]
        np.random.default_rng([*key, 7, k]).standard_normal(part.shape, dtype=np.float32,
                                                            out=part)
        part *= np.float32(sigma)

    workers = nthreads or os.cpu_count() or 1
    if workers == 1:
        for k in range(NOISE_CHUNKS):
            fill(k)
    else:
        with ThreadPoolExecutor(min(workers, NOISE_CHUNKS)) as ex:
            list(ex.map(fill, range(NOISE_CHUNKS)))
    return out


def simulate_observation(cfg: SimulationConfig) -> SimulationResult:
    """Simulate ``cfg.n_groups`` consecutive groups and write them under ``cfg.out_dir``.

    Each group: ``<start>_sbNN.hdf5`` files (start jittered per file by up to
    ``cfg.jitter_s``), ``<start>_truth.json`` and ``<start>_truth.npz``.
    """
    t_wall = _time.perf_counter()
    offline_astropy()
    notes: list[str] = []
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    layout = load_layout(cfg.station_csv, cfg.n_antennas)
    location = coords.earth_location(layout.site_lat_rad, layout.site_lon_rad, layout.site_height_m)
    lat = layout.site_lat_rad
    nthreads = cfg.nthreads
    seeds = np.random.SeedSequence(cfg.seed).spawn(9)  # the first 8 as before: same skies
    rng_sky, rng_gain, rng_bp, rng_dead, rng_rfi, rng_jit, rng_survey, rng_var, rng_new = (
        np.random.default_rng(s) for s in seeds)

    # frequencies, file by file (descending within and across subbands)
    nsb, nch, nint = cfg.n_subbands, cfg.n_channels, cfg.n_integrations
    freqs = np.stack([ins.subband_frequencies(s, nch) for s in range(nsb)])  # (nsb, nch)
    all_freqs = freqs.ravel()
    chan_width = ins.channel_width(nch)
    tint = ins.INTEGRATION_TIME
    file_dur = nint * tint
    npol = len(ins.POLARIZATION_NUMBERS)

    # start time, moved so that a calibrator transits mid-group when asked
    jd0 = _iso_to_jd(cfg.start)
    cal_cat, cal_spec = (None, None)
    if cfg.calibrator:
        cal_cat, cal_spec = _calibrator_sky(cfg.calibrator, all_freqs)
        for _ in range(2):
            jd_mid = jd0 + (cfg.calibrator_group + 0.5) * file_dur / 86400.0
            lst_mid = coords.local_sidereal_time(np.array([jd_mid]), location)
            app_ra, _ = coords.apparent_coordinates(cal_cat.ra, cal_cat.dec, np.array([jd_mid]),
                                                 lst_mid, location)
            jd0 += geo.transit_offset_s(float(app_ra[0, 0]), float(lst_mid[0])) / 86400.0
        sep = abs(math.degrees(cal_cat.dec[0]) - cfg.dec_deg)
        if sep > math.degrees(ins.primary_beam_fwhm(all_freqs.min())) / 2:
            notes.append(f"calibrator {cfg.calibrator} is {sep:.2f} deg from the pointing "
                         f"declination {cfg.dec_deg}: outside the primary beam's half width")
    start_iso = _jd_to_datetime(jd0).isoformat(timespec="milliseconds")

    # sky
    dec_p = math.radians(cfg.dec_deg)
    if cfg.catalog is not None:
        sky = read_catalog(cfg.catalog)
    else:
        jd_end = jd0 + cfg.n_groups * file_dur / 86400.0
        lst_se = coords.local_sidereal_time(np.array([jd0, jd_end]), location)
        r = math.radians(cfg.field_radius_deg)
        lst_hi = lst_se[1] if lst_se[1] >= lst_se[0] else lst_se[1] + 2 * np.pi
        dra = r / max(math.cos(dec_p), 1e-3)
        lst_lo = lst_se[0]
        if cfg.variable_nights:
            # nights simulated a sidereal day apart must see one sky: their LST ranges differ
            # by the transit search's last digits, which would move every source a little
            step = 1e-3  # rad
            lst_lo, lst_hi = math.floor(lst_lo / step) * step, math.ceil(lst_hi / step) * step
        sky = random_sky(rng_sky, cfg.n_sources, lst_lo - dra, lst_hi + dra,
                         max(dec_p - r, -np.pi / 2), min(dec_p + r, np.pi / 2))
    overrides = {}
    if cal_cat is not None:
        keep = angular_distance(sky.ra, sky.dec, cal_cat.ra[0], cal_cat.dec[0]) > \
            math.radians(1 / 60)
        sky = concatenate(sky.select(keep), cal_cat)
        overrides[len(sky) - 1] = cal_spec
    flux_all = spectra(sky, all_freqs, overrides)  # (nsrc, nfreq)
    # variable sources: a flux factor per group and source (1 = steady)
    var_factor, var_kind = variability(rng_var, sky.flux_jy, cfg, exclude=set(overrides),
                                       transit_group=transit_groups(
                                           sky, cfg, jd0, file_dur, location))
    # what the night knows of its sky: a survey catalog, never the truth (without the
    # sources chosen to be new)
    in_survey = unsurveyed(rng_new, sky.flux_jy, cfg, exclude=set(overrides) | set(
        np.flatnonzero(var_kind != "").tolist()))
    survey_path = write_survey_catalog(survey_view(sky.select(in_survey), rng_survey),
                                       out_dir / SURVEY_CATALOG)

    # array, baselines, per-antenna truth
    a1, a2 = _baselines(layout)
    nbl = a1.size
    nst = layout.n_stations
    act = np.flatnonzero(layout.active)
    dead = np.sort(rng_dead.choice(act, cfg.dead_antennas, replace=False)) if \
        cfg.dead_antennas else np.zeros(0, int)
    times_all_s = (np.arange(cfg.n_groups * nint) + 0.5) * tint
    gains_all = draw_gains(rng_gain, nst, npol, times_all_s) if cfg.gains else \
        np.ones((times_all_s.size, nst, npol), np.complex64)
    bandpass = draw_bandpasses(rng_bp, nst, npol, all_freqs) if cfg.bandpass else \
        np.ones((nst, all_freqs.size, npol), np.complex64)
    gains_all[:, dead] = 0.0
    rfi_phase = rfi_antenna_phases(rng_rfi, nst)
    sigma = ins.radiometer_noise(cfg.sefd_jy, chan_width, tint) if cfg.noise else 0.0
    uvw_bl = layout.enu[a2] - layout.enu[a1]  # (nbl, 3), ENU, antenna 2 - antenna 1
    pointing = coords.hadec_to_enu(0.0, dec_p, lat)
    max_dist = math.radians(cfg.max_source_distance_deg)

    groups: list[GroupFiles] = []
    for g in range(cfg.n_groups):
        jd_g = jd0 + g * file_dur / 86400.0
        name_g = _jd_to_name(jd_g)
        jd_t = jd_g + (np.arange(nint) + 0.5) * tint / 86400.0
        lst_t = coords.local_sidereal_time(jd_t, location)
        if len(sky):
            app_ra, app_dec = coords.apparent_coordinates(sky.ra, sky.dec, jd_t, lst_t, location)
            lmn = coords.hadec_to_enu(lst_t[:, None] - app_ra, app_dec, lat)  # (nt, nsrc, 3)
        else:
            lmn = np.zeros((nint, 0, 3))
        near = np.arccos(np.clip(lmn @ pointing, -1, 1)).min(axis=0) <= max_dist \
            if len(sky) else np.zeros(0, bool)
        up = (lmn[..., 2] > 0).all(axis=0) if len(sky) else np.zeros(0, bool)
        use = np.flatnonzero(near & up)
        lmn_use = lmn[:, use]
        beam = geo.beam_power(lmn_use, pointing, all_freqs) if cfg.beam else \
            np.ones((nint, use.size, all_freqs.size))
        app_flux = flux_all[use][None, :, :] * var_factor[g, use][None, :, None] * beam
        gains = gains_all[g * nint:(g + 1) * nint]
        rfi_p = rfi_power(rng_rfi, all_freqs, nint, cfg.rfi_frequencies_hz) if cfg.rfi else \
            np.zeros((nint, all_freqs.size))

        # blt arrays, time-major (all baselines of one time together)
        tidx = np.repeat(np.arange(nint), nbl)
        uvw_blt = np.tile(uvw_bl, (nint, 1))
        b1, b2 = np.tile(a1, nint), np.tile(a2, nint)
        hdr_common = dict(
            telescope_name=ins.TELESCOPE_NAME, instrument=ins.TELESCOPE_NAME,
            latitude_deg=math.degrees(layout.site_lat_rad),
            longitude_deg=math.degrees(layout.site_lon_rad), altitude_m=layout.site_height_m,
            antenna_names=list(layout.names), antenna_numbers=layout.numbers,
            antenna_positions=layout.ecef_rel,
            antenna_diameters=np.full(nst, ins.DISH_DIAMETER),
            ant_1_array=layout.numbers[b1], ant_2_array=layout.numbers[b2],
            time_array=np.repeat(jd_t, nbl), lst_array=np.repeat(lst_t, nbl),
            integration_time=np.full(nint * nbl, tint), uvw_array=uvw_blt.astype(np.float32),
            channel_width=chan_width, polarization_array=np.array(ins.POLARIZATION_NUMBERS),
            vis_units="uncalib" if (cfg.gains or cfg.bandpass) else "Jy",
            history=f"Simulated by dsa110_pipeline.simulate; config {cfg.to_dict()}",
        )
        files: list[Path] = []
        pass_lo = pass_hi = -1
        model_pass = None
        for sb in range(nsb):
            jit = rng_jit.uniform(-cfg.jitter_s, cfg.jitter_s) if cfg.jitter_s else 0.0
            fname = out_dir / f"{_jd_to_name(jd_g + jit / 86400.0)}_sb{sb:02d}.hdf5"
            if g == 0 and cfg.missing_subband == sb:
                continue
            ch = slice(sb * nch, (sb + 1) * nch)
            if not pass_lo <= sb < pass_hi:
                # the sky model of SUBBANDS_PER_PASS adjacent subbands in one kernel call
                # (their channels are uniformly spaced: one phasor recurrence spans them)
                pass_lo, pass_hi = sb, min(nsb, sb + SUBBANDS_PER_PASS)
                model_pass = predict_visibilities_drift(
                    uvw_blt, tidx, freqs[pass_lo:pass_hi].ravel(), lmn_use,
                    app_flux[:, :, pass_lo * nch:pass_hi * nch], sign=1, unprojected=True,
                    nthreads=nthreads)
            model = np.ascontiguousarray(model_pass[:, (sb - pass_lo) * nch:
                                                    (sb - pass_lo + 1) * nch])
            if sigma > 0:
                noise = _noise((cfg.seed, g, sb), (tidx.size, nch, npol, 2), sigma, nthreads)
            else:
                noise = np.zeros((tidx.size, nch, npol, 2), np.float32)
            out = np.empty((tidx.size, nch, npol), np.complex64)
            corrupt(model, tidx, b1, b2, gains, bandpass[:, ch], rfi_p[:, ch], rfi_phase,
                    noise, cfg.sefd_jy, out)
            del model, noise
            hdr = UVH5Header(freq_array=freqs[sb], extra_keywords={
                "phase_center_dec": dec_p, "ha_phase_center": 0.0,
                "simulator": "dsa110_pipeline.simulate", "group_start": start_iso_of(jd_g),
                "subband": sb, "seed": cfg.seed}, **hdr_common)
            write_uvh5(fname, hdr, out)
            del out
            if sb + 1 >= pass_hi:
                model_pass = None
            if g == 0 and cfg.truncate_subband == sb:
                size = fname.stat().st_size
                os.truncate(fname, size // 2)
            files.append(fname)

        truth_json = out_dir / f"{name_g}_truth.json"
        truth_npz = out_dir / f"{name_g}_truth.npz"
        arrays = {
            "source_name": np.asarray(sky.name[use], dtype=str),
            "source_ra": sky.ra[use], "source_dec": sky.dec[use],
            "source_flux_ref": sky.flux_jy[use], "source_spectral_index":
                sky.spectral_index[use], "source_ref_freq_hz": sky.ref_freq_hz[use],
            "source_flux": (flux_all[use] * var_factor[g, use][:, None]).astype(np.float32),
            "source_variability": var_factor[g, use].astype(np.float32),
            "source_variable_kind": np.asarray(var_kind[use], dtype=str),
            "source_in_survey": in_survey[use],
            "source_beam": np.transpose(beam, (1, 0, 2)).astype(np.float32),
            "source_lmn": lmn_use, "freq_array": freqs, "time_array": jd_t,
            "time_mjd_s": (jd_t - 2400000.5) * 86400.0,
            "lst_array": lst_t, "antenna_numbers": layout.numbers,
            "antenna_names": np.asarray(layout.names, dtype=str),
            "antenna_active": layout.active,
            "antenna_dead": np.isin(np.arange(nst), dead), "gains": gains,
            "bandpass": bandpass, "rfi_mask": rfi_p > 0, "rfi_power_jy":
                rfi_p.astype(np.float32), "noise_rms_jy": np.float64(sigma),
            "noise_rms_auto_jy": np.float64(sigma * math.sqrt(2.0)),
            "pointing_enu": pointing,
        }
        mid = nint // 2
        fc = len(all_freqs) // 2
        summary = {
            "group": g, "start": start_iso_of(jd_g), "file_prefix": name_g,
            "files": [str(f.name) for f in files],
            "missing_subband": cfg.missing_subband if g == 0 else None,
            "truncated_subband": cfg.truncate_subband if g == 0 else None,
            "telescope": ins.TELESCOPE_NAME, "layout": layout.source,
            "n_antennas": int(layout.active.sum()), "n_stations": nst,
            "dead_antennas": [layout.names[i] for i in dead],
            "pointing_dec_deg": cfg.dec_deg, "phase_center": "unprojected (drift, zenith)",
            "visibility_convention": "pyuvdata/UVH5: V = sum S exp(+2 pi i f/c (u l + v m + "
                                     "w n)), uvw = ENU(ant2) - ENU(ant1); the complex "
                                     "conjugate of MS DATA",
            "signal_model": "V_ij = G_i (V_sky + V_rfi + n) conj(G_j), G = gains(t) * "
                            "bandpass(f); autos add SEFD",
            "pyuvdata_read_kwargs": PYUVDATA_READ_KWARGS,
            "noise_rms_jy": sigma, "sefd_jy": cfg.sefd_jy, "channel_width_hz": chan_width,
            "integration_time_s": tint, "rfi_frequencies_hz": list(cfg.rfi_frequencies_hz)
            if cfg.rfi else [], "rfi_flagged_fraction": float((rfi_p > 0).mean()),
            "calibrator": cfg.calibrator, "n_sources": int(use.size),
            "sources": [
                {"name": str(sky.name[k]), "ra_deg": math.degrees(sky.ra[k]),
                 "dec_deg": math.degrees(sky.dec[k]), "flux_jy_ref": float(sky.flux_jy[k]),
                 "ref_freq_hz": float(sky.ref_freq_hz[k]),
                 "spectral_index": float(sky.spectral_index[k]),
                 "apparent_flux_jy_mid": float(app_flux[mid, n, fc])}
                for n, k in enumerate(use)],
            "config": cfg.to_dict(), "notes": notes,
        }
        write_truth(truth_json, truth_npz, summary, arrays)
        groups.append(GroupFiles(start_iso_of(jd_g), files, truth_json, truth_npz))
        log.info("simulated group %d (%s): %d files", g, name_g, len(files))
    return SimulationResult(groups=groups, config=cfg, start_iso=start_iso, layout=layout,
                            n_sources=len(sky), wall_s=_time.perf_counter() - t_wall,
                            notes=notes, survey_catalog=survey_path)


def start_iso_of(jd: float) -> str:
    """ISO time (UTC, milliseconds) of a Julian date."""
    return _jd_to_datetime(jd).isoformat(timespec="milliseconds")
