"""Night role hook: which groups hold a calibrator transit, and which solutions targets use.

Configured as ``pipeline.assign_roles: stages.calibration.night:assign_roles``. A
group during which a usable calibrator transits inside the primary beam becomes a
calibrator group (a listed calibrator counts only where the night's survey catalog
confirms it: :mod:`.survey_check`); every other group is a target that uses the
solutions of the calibrator group nearest in time whose declination strip covers it. A target with
no such group tonight falls back to the state DB's calibration registry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dsa110_pipeline import instrument
from dsa110_pipeline.catalogs import find_calibrator, read_vla_calibrators
from dsa110_pipeline.night import GroupSpec, key

from .registry import CALTABLES
from .selection import select_calibrators
from .sky import geometry, in_tonights_sky


def _apparent(ra: np.ndarray, dec: np.ndarray, mjd: float) -> tuple[float, np.ndarray,
                                                                     np.ndarray]:
    """LST (rad) at ``mjd`` and the apparent RA/Dec of ICRS positions then.

    Apparent coordinates matter: precession since J2000 moves a transit by about a
    minute, a good part of a 309 s group.
    """
    lst, app_ra, app_dec = geometry(np.array([mjd * 86400.0]), ra, dec)
    return float(lst[0]), app_ra[0], app_dec[0]


def assign_roles(specs: Sequence[GroupSpec], cfg: Any) -> list[GroupSpec]:
    cal_cfg = cfg.stage_config("calibration")
    if cal_cfg.calibrator:
        cals = [find_calibrator(cal_cfg.calibrator, cal_cfg.calibrator_list)]
        min_flux = 0.0
    else:
        cals = [c for c in read_vla_calibrators(cal_cfg.calibrator_list) if c.flux_jy]
        min_flux = cal_cfg.min_calibrator_flux_jy
        # only those near the night's declinations that its survey catalog confirms
        decs = {math.radians(s.dec_deg) for s in specs if s.dec_deg is not None}
        survey = next((s.metadata.get("survey_catalog") for s in specs
                       if s.metadata.get("survey_catalog")), None)
        cals = in_tonights_sky(
            [c for c in cals if decs and min(abs(c.dec - d) for d in decs) < math.radians(10)],
            survey, cal_cfg.survey_check_arcsec, cal_cfg.survey_min_fraction)
    names = [c.name for c in cals]
    ra = np.array([c.ra for c in cals])
    dec = np.array([c.dec for c in cals])
    flux = np.array([c.flux_jy or 1e-9 for c in cals])
    calibrators: list[GroupSpec] = []
    for spec in specs:
        if spec.start_mjd is None or spec.dec_deg is None:
            continue
        t0 = spec.start_mjd * 86400.0
        near = np.flatnonzero(np.abs(dec - math.radians(spec.dec_deg)) < math.radians(10))
        lst0, app_ra, app_dec = _apparent(ra[near], dec[near], spec.start_mjd)
        sel = select_calibrators([names[i] for i in near], app_ra, app_dec, flux[near],
                                 t_start=t0, t_end=t0 + instrument.FILE_DURATION,
                                 lst_start=lst0, pointing_dec=math.radians(spec.dec_deg),
                                 min_beam=cal_cfg.min_beam, min_weighted_flux_jy=min_flux)
        if sel.found:
            spec.role = "calibrator"
            spec.metadata["calibrator"] = sel.best.name
            spec.metadata["transit_mjd"] = sel.best.transit_time / 86400.0
            calibrators.append(spec)
    for spec in specs:
        if spec.role == "calibrator" or spec.start_mjd is None:
            continue
        usable = [c for c in calibrators
                  if abs(c.dec_deg - (spec.dec_deg or 0.0)) <= cal_cfg.dec_halfwidth_deg
                  and -cal_cfg.valid_after_s <= (c.metadata["transit_mjd"] - spec.start_mjd)
                  * 86400.0 <= cal_cfg.valid_before_s]
        if usable:
            best = min(usable, key=lambda c: abs(c.metadata["transit_mjd"] - spec.start_mjd))
            spec.shared[CALTABLES] = key(best.group_id, CALTABLES)
            spec.metadata["calibrator"] = best.metadata["calibrator"]
    return list(specs)
