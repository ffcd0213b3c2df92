import math

import numpy as np

from dsa110_pipeline.catalogs import builtin_calibrators
from stages.calibration.selection import SIDEREAL_RATE, select_calibrators

CALS = builtin_calibrators()
NAMES = [c.name for c in CALS]
RA = np.array([c.ra for c in CALS])
DEC = np.array([c.dec for c in CALS])
FLUX = np.array([c.flux_jy for c in CALS])
C3454 = next(c for c in CALS if c.name == "J2253+1608")


def test_3c454_transits_in_beam():
    lst0 = C3454.ra - 150 * SIDEREAL_RATE  # transit 150 s after the start
    sel = select_calibrators(NAMES, RA, DEC, FLUX, t_start=1000.0, t_end=1309.0,
                             lst_start=lst0, pointing_dec=math.radians(16.15))
    assert sel.found and sel.best.name == "J2253+1608"
    assert abs(sel.best.transit_time - 1150.0) < 1e-6
    assert sel.best.beam > 0.99 and abs(sel.best.weighted_flux_jy - 10.0 * sel.best.beam) < 1e-9


def test_none_suitable_is_an_outcome_with_reason():
    lst0 = C3454.ra - 150 * SIDEREAL_RATE
    off = select_calibrators(NAMES, RA, DEC, FLUX, t_start=0.0, t_end=309.0, lst_start=lst0,
                             pointing_dec=math.radians(40.0))
    assert not off.found and off.best is None and "primary beam" in off.reason
    early = select_calibrators(NAMES, RA, DEC, FLUX, t_start=0.0, t_end=100.0,
                               lst_start=lst0, pointing_dec=math.radians(16.15))
    assert not early.found and "transits" in early.reason
    faint = select_calibrators(NAMES, RA, DEC, FLUX, t_start=0.0, t_end=309.0, lst_start=lst0,
                               pointing_dec=math.radians(16.15), min_weighted_flux_jy=50)
    assert not faint.found and "fainter" in faint.reason


def test_ranked_by_beam_weighted_flux():
    names = ["A", "B", "C"]
    ra = np.array([1.0, 1.001, 1.002])
    dec = np.radians([30.0, 31.2, 29.9])  # B is bright but 1.2 deg off the pointing
    flux = np.array([5.0, 8.0, 4.0])
    sel = select_calibrators(names, ra, dec, flux, t_start=0.0, t_end=3600.0, lst_start=0.99,
                             pointing_dec=math.radians(30.0), min_beam=0.1)
    w = [c.weighted_flux_jy for c in sel.candidates]
    assert w == sorted(w, reverse=True)
    assert [c.name for c in sel.candidates][0] == "A"
    assert sel.candidates[-1].name in ("B", "C")
    b = next(c for c in sel.candidates if c.name == "B")
    assert b.beam < 0.6 and [c.name for c in sel.candidates].index("B") > 0
