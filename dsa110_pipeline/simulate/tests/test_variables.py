"""Injected variable sources: the per-group flux factors the truth records."""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.simulate.config import SimulationConfig
from dsa110_pipeline.simulate.injections import variability


def test_flares_dips_and_steps_with_their_amplitudes(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_groups=12, n_variables=6,
                           variable_amplitudes=(0.3, 0.6), variable_duration_groups=3)
    flux = np.r_[np.full(20, 0.1), 0.001, 10.0]
    factor, kind = variability(np.random.default_rng(0), flux, cfg, exclude={21})
    assert factor.shape == (12, 22)
    var = np.flatnonzero(kind != "")
    assert len(var) == 6 and 20 not in var and 21 not in var  # too faint; the calibrator
    assert (factor[:, kind == ""] == 1).all()
    for i in var:
        f = factor[:, i]
        if kind[i] == "flare":
            assert np.sum(f > 1) == 3 and f[0] == 1 and f[-1] == 1
        elif kind[i] == "dip":
            assert np.sum(f < 1) == 3 and f[0] == 1 and f[-1] == 1
        else:
            assert f[0] == 1 and f[-1] > 1 and np.all(np.diff(f) >= 0)
    amps = sorted({round(abs(f - 1), 3) for i in var for f in factor[:, i] if f != 1})
    assert amps == [0.3, 0.6]


def test_no_variables_by_default(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_groups=3)
    factor, kind = variability(np.random.default_rng(0), np.ones(5), cfg, exclude=set())
    assert (factor == 1).all() and (kind == "").all()


def test_variability_between_nights_is_the_same_draw_every_night(tmp_path):
    flux = np.full(30, 0.1)
    nights = []
    for k in range(6):
        cfg = SimulationConfig(out_dir=tmp_path, n_groups=4, n_variables=6,
                               variable_nights=6, variable_night=k,
                               variable_duration_groups=2)
        factor, kind = variability(np.random.default_rng(3), flux, cfg, exclude=set())
        assert factor.shape == (4, 30) and (factor == factor[0]).all()  # one per night
        nights.append(factor[0])
    f = np.array(nights)  # (night, source)
    var = np.flatnonzero(kind != "")
    assert len(var) == 6 and (f[:, kind == ""] == 1).all()
    assert all((f[:, i] != 1).any() and (f[:, i] == 1).any() for i in var)


def test_unsurveyed_sources_are_bright_enough_and_never_variables_or_the_calibrator(tmp_path):
    from dsa110_pipeline.simulate.injections import unsurveyed

    cfg = SimulationConfig(out_dir=tmp_path, n_groups=3, n_unsurveyed=4,
                           unsurveyed_min_flux_jy=0.05)
    flux = np.r_[np.full(10, 0.1), np.full(10, 0.01), 10.0]
    keep = unsurveyed(np.random.default_rng(0), flux, cfg, exclude={0, 1, 20})
    left_out = np.flatnonzero(~keep)
    assert len(left_out) == 4 and set(left_out) <= set(range(2, 10))
    assert unsurveyed(np.random.default_rng(0), flux, SimulationConfig(out_dir=tmp_path),
                      exclude=set()).all()


def test_changes_fall_at_each_variables_transit(tmp_path):
    """Within a night, only sources that transit are chosen, and each change starts the
    group after the transit: the groups that measure the source see it change."""
    cfg = SimulationConfig(out_dir=tmp_path, n_groups=12, n_variables=9,
                           variable_duration_groups=3)
    flux = np.full(12, 0.1)
    transit = np.array([-1, -1, -1, 0, 2, 5, 7, 9, 10, 11, 4, 6])
    factor, kind = variability(np.random.default_rng(1), flux, cfg, exclude=set(),
                               transit_group=transit)
    var = np.flatnonzero(kind != "")
    assert len(var) == 9 and not set(var) & {0, 1, 2}
    for i in var:
        first = int(np.flatnonzero(factor[:, i] != 1)[0])
        # a steady group precedes every change; a flare or dip ends within the night
        last_start = 11 if kind[i] == "step" else 12 - 3 - 1
        assert first == min(int(transit[i]) + 1, last_start), (kind[i], transit[i])


def test_transit_groups_of_a_sky(tmp_path):
    """A source transiting in the middle of group 5 at the pointing declination is in group
    5; one 3 deg off the declination, or transiting before the night, is in none."""
    import math

    from dsa110_pipeline import coordinates as coords
    from dsa110_pipeline import instrument as ins
    from dsa110_pipeline.array_layout import load_layout
    from dsa110_pipeline.catalogs import SourceCatalog
    from dsa110_pipeline.simulate.injections import transit_groups
    from dsa110_pipeline.simulate.observation import _iso_to_jd

    cfg = SimulationConfig(out_dir=tmp_path, n_groups=8, dec_deg=40.0, n_variables=1)
    layout = load_layout(cfg.station_csv, cfg.n_antennas)
    loc = coords.earth_location(layout.site_lat_rad, layout.site_lon_rad,
                                layout.site_height_m)
    jd0 = _iso_to_jd(cfg.start)
    dur = cfg.n_integrations * ins.INTEGRATION_TIME
    lst5 = float(coords.local_sidereal_time(np.array([jd0 + 5.5 * dur / 86400]), loc)[0])
    lst0 = float(coords.local_sidereal_time(np.array([jd0]), loc)[0])
    dec = math.radians(40.0)
    ra = np.array([lst5, lst5, lst0 - 0.2])
    sky = SourceCatalog(name=np.array(["a", "b", "c"]), ra=ra,
                        dec=np.array([dec, dec + math.radians(3), dec]),
                        flux_jy=np.full(3, 0.1), spectral_index=np.zeros(3),
                        ref_freq_hz=np.full(3, 1.4e9))
    assert list(transit_groups(sky, cfg, jd0, dur, loc)) == [5, -1, -1]
