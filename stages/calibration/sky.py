"""The field's sky model for calibration: catalog sources around the pointing (and
bright ones in the sidelobes), their apparent positions and spectra, the model
visibilities, and a target field's phase refinement (:class:`FieldModel`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsa110_pipeline.catalogs import (
    read_catalog,
    with_known_sources,
)
from dsa110_pipeline.catalogs.refine import FitLimits
from dsa110_pipeline.coordinates import apparent_coordinates, dsa110_site, local_sidereal_time
from dsa110_pipeline.projection import radec_to_lmn

from . import msio
from .field_phase import FieldPhaseParams, refine_phases
from .field_refine import refine_field, refined_model
from .model import (
    apparent_spectra,
    model_visibilities,
)
from .stefcal import choose_refant
from .survey_check import confirmed_by_survey


def geometry(times_mjd_s: np.ndarray, ra: np.ndarray, dec: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LST (n_time,), apparent RA and Dec (n_time, n_src) of ICRS positions."""
    loc = dsa110_site()
    jd = np.asarray(times_mjd_s, float) / 86400.0 + 2400000.5
    lst = local_sidereal_time(jd, loc)
    app_ra, app_dec = apparent_coordinates(ra, dec, jd, lst, loc)
    return lst, app_ra, app_dec


def refine_sky(meta: msio.MSMeta, cube: msio.VisCube, vis: np.ndarray, flags: np.ndarray,
                bandpass: Any, gains: Any, ra: np.ndarray, dec: np.ndarray,
                spectra: np.ndarray, pointing_dec: float, most: int, min_snr: float,
                threads: int | None, calibrator_first: bool = False,
                chans: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """A sky model (ICRS ra, dec, intrinsic spectra) with its brightest ``most`` sources
    refined from ``vis`` corrected by ``bandpass``/``gains`` (``field_refine.py``); with
    ``calibrator_first`` source 0 is fitted as a nuisance but keeps its model. ``chans``:
    the MS channels that ``vis``, ``flags`` and ``bandpass`` hold (None: all). Returns the
    new model (over all channels) and how many sources changed."""
    pra, pdec = meta.phase_dir
    freqs = meta.freqs if chans is None else meta.freqs[chans]
    lst, app_ra, app_dec = geometry(meta.times, ra, dec)
    app = apparent_spectra(spectra if chans is None else spectra[:, chans],
                           lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
    lm0 = radec_to_lmn(ra, dec, pra, pdec)
    bright = np.argsort(-app.mean(axis=(0, 2)), kind="stable")
    if calibrator_first:
        bright = np.concatenate([[0], bright[bright != 0][:most]])
    wanted = np.zeros(ra.size, bool)
    wanted[bright[:most + int(calibrator_first)]] = True
    fit, _ = refine_field(vis, flags, cube.ant1, cube.ant2, cube.uvw, meta.times, freqs,
                          bandpass, gains, np.broadcast_to(lm0, (meta.times.size,) + lm0.shape),
                          app, wanted, FitLimits(min_snr=min_snr), nthreads=threads or 1)
    return refined_model(ra, dec, spectra, lm0[:, :2], fit, meta.freqs, pra, pdec,
                         keep=[0] if calibrator_first else None)


def _separation(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Angular distance (rad) of (ra, dec) from (ra0, dec0)."""
    return np.arccos(np.clip(np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0)
                             * np.cos(ra - ra0), -1, 1))


def in_tonights_sky(cals: list[Any], catalog: str | None, radius_arcsec: float | None,
                    min_fraction: float) -> list[Any]:
    """The calibrator list entries (``ra``, ``dec`` rad, ``flux_jy``) that the night's
    survey catalog confirms (:mod:`.survey_check`); all of them without a catalog or with
    the check off (``radius_arcsec`` None)."""
    if not catalog or radius_arcsec is None or not cals:
        return list(cals)
    cat = read_catalog(catalog)
    ok = confirmed_by_survey(np.array([c.ra for c in cals]), np.array([c.dec for c in cals]),
                             np.array([c.flux_jy or 0.0 for c in cals]), cat.ra, cat.dec,
                             cat.flux_jy, radius_rad=math.radians(radius_arcsec / 3600.0),
                             min_fraction=min_fraction, coverage_rad=math.radians(1.0))
    return [c for c, keep in zip(cals, ok, strict=True) if keep]


def catalog_sources(catalog: str, ra0: float, dec0: float, radius: float, min_flux: float,
                    freqs: np.ndarray, exclude: tuple[float, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources of ``catalog`` within ``radius`` (rad) of (ra0, dec0) brighter than
    ``min_flux`` (Jy at their reference frequency), not within 1' of ``exclude``:
    ra, dec and spectra at ``freqs``."""
    cat = read_catalog(catalog).strip(dec0 - radius, dec0 + radius)
    cat = with_known_sources(cat)  # calibrators: the VLA list's positions, PB2017 fluxes
    keep = (_separation(cat.ra, cat.dec, ra0, dec0) <= radius) & (cat.flux_jy >= min_flux)
    if exclude is not None:
        keep &= _separation(cat.ra, cat.dec, *exclude) > math.radians(1 / 60)
    cat = cat.select(keep)
    return cat.ra, cat.dec, cat.flux_at(freqs)


def field_sources(catalog: str, times: np.ndarray, ra0: float, pointing_dec: float,
                  freqs: np.ndarray, radius: float, min_flux: float, sidelobe_radius: float,
                  exclude: tuple[float, float] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A field model's sources: those within ``radius`` (rad) of (``ra0``, ``pointing_dec``)
    brighter than ``min_flux`` (Jy at their reference frequency), and those out to
    ``sidelobe_radius`` whose apparent flux through the drifting beam (mean over ``times``
    and ``freqs``) reaches ``min_flux``: a 33 Jy source 4 deg out, in the first sidelobe,
    is 0.55 Jy apparent, 7 % of a 7.5 Jy calibrator, and left out of the model it went
    into the gains (a cross of 5-10 sigma errors through 3C309.1 at dec +71.7; imaging
    README, session 15). ra, dec and intrinsic spectra, the inner sources first."""
    ra, dec, spec = catalog_sources(catalog, ra0, pointing_dec, sidelobe_radius, min_flux,
                                    freqs, exclude=exclude)
    inner = _separation(ra, dec, ra0, pointing_dec) <= radius
    keep = inner.copy()
    if (~inner).any():
        out = np.flatnonzero(~inner)
        lst, app_ra, app_dec = geometry(times, ra[out], dec[out])
        app = apparent_spectra(spec[out], lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
        keep[out] = app.mean(axis=(0, 2)) >= min_flux
    order = np.concatenate([np.flatnonzero(inner), np.flatnonzero(keep & ~inner)])
    return ra[order], dec[order], spec[order]


def sky_model(meta: msio.MSMeta, cube: msio.VisCube, ra: np.ndarray, dec: np.ndarray,
              spectra: np.ndarray, pointing_dec: float, n_pol: int = 1,
              threads: int | None = None, chans: np.ndarray | None = None) -> np.ndarray:
    """Model visibilities (n_time, n_bl, n_chan, n_pol) of point sources (ICRS ra, dec;
    intrinsic ``spectra`` (n_src, n_chan)) seen through the drifting primary beam, on the
    MS channels ``chans`` (None: all)."""
    freqs = meta.freqs if chans is None else meta.freqs[chans]
    lst, app_ra, app_dec = geometry(meta.times, ra, dec)
    app_flux = apparent_spectra(spectra if chans is None else spectra[:, chans],
                                lst[:, None] - app_ra, app_dec, pointing_dec, freqs)
    pra, pdec = meta.phase_dir
    nt, nb = cube.vis.shape[:2]
    lmn = np.broadcast_to(radec_to_lmn(ra, dec, pra, pdec), (nt, ra.size, 3))
    m = model_visibilities(cube.uvw.reshape(nt * nb, 3), np.repeat(np.arange(nt), nb),
                           freqs, np.ascontiguousarray(lmn), app_flux,
                           nthreads=threads, dtype=np.complex64)
    m = m.reshape(nt, nb, freqs.size, 1)
    return np.broadcast_to(m, m.shape[:3] + (n_pol,)) if n_pol > 1 else m


@dataclass(frozen=True)
class FieldModel:
    """The catalog and selection of a target's field model, and how its phases are solved."""

    catalog: str
    radius_deg: float = 3.0
    min_flux_jy: float = 0.02
    #: beyond ``radius_deg`` and out to this, sources whose apparent flux reaches
    #: ``min_flux_jy`` (see ``field_sources``)
    sidelobe_radius_deg: float = 10.0
    solve: FieldPhaseParams = FieldPhaseParams()
    #: the brightest this many sources refined from the data after a first phase solve,
    #: which then runs again on them (0: off), where their S/N reaches ``refine_snr``
    refine_max: int = 20
    refine_snr: float = 20.0


def field_phases(meta: msio.MSMeta, cube: msio.VisCube, vis: np.ndarray, flags: np.ndarray,
                  bp: Any, g: Any, field: FieldModel, threads: int | None) -> tuple[Any, dict]:
    """The target's gains with phases solved on its field model (the calibrator's where the
    field is too faint), and what was done."""
    pra, _ = meta.phase_dir
    _, _, app_dec = geometry(meta.times, np.array([pra]), np.array([meta.phase_dir[1]]))
    pointing_dec = float(np.mean(app_dec))
    ra, dec, spectra = field_sources(field.catalog, meta.times, pra, pointing_dec, meta.freqs,
                                     math.radians(field.radius_deg), field.min_flux_jy,
                                     math.radians(field.sidelobe_radius_deg))
    out: dict[str, Any] = {"field_sources": int(ra.size)}
    if ra.size == 0:
        return g, {**out, "field_phase": "no catalog sources: calibrator gains"}
    model = sky_model(meta, cube, ra, dec, spectra, pointing_dec, threads=threads)
    apparent = float(np.abs(model[..., 0]).mean(axis=(0, 1)).mean())
    if apparent < field.solve.min_model_flux_jy:
        return g, {**out, "field_phase": f"field model {apparent:.3g} Jy is too faint: "
                                         "calibrator gains"}
    refant = choose_refant(flags, cube.ant1, cube.ant2, meta.n_ant)
    new, m = refine_phases(vis, model, flags, cube.ant1, cube.ant2, meta.n_ant, meta.times,
                           meta.freqs, bp, g, refant, field.solve,
                           positions=meta.antenna_positions)
    if field.refine_max > 0:
        # the survey's errors went into those phases: refine the model on the data they
        # calibrate, and solve once more on it
        ra, dec, spectra, n_ref = refine_sky(meta, cube, vis, flags, bp, new, ra, dec, spectra,
                                              pointing_dec, field.refine_max, field.refine_snr,
                                              threads)
        out["field_sources_refined"] = n_ref
        if n_ref:
            del model
            model = sky_model(meta, cube, ra, dec, spectra, pointing_dec, threads=threads)
            new, m = refine_phases(vis, model, flags, cube.ant1, cube.ant2, meta.n_ant,
                                   meta.times, meta.freqs, bp, g, refant, field.solve,
                                   positions=meta.antenna_positions)
    return new, {**out, "field_phase": "refined", **m}
