"""Simulator: files, truth, corruptions and errors, on small configurations."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110_pipeline import instrument as ins
from dsa110_pipeline.errors import ConfigError, InputError
from dsa110_pipeline.simulate import (
    PYUVDATA_READ_KWARGS,
    SimulationConfig,
    read_truth,
    simulate_observation,
)
from dsa110_pipeline.simulate.__main__ import main

SMALL = dict(n_antennas=8, n_subbands=2, n_channels=8, n_integrations=4)
CLEAN = dict(noise=False, rfi=False, gains=False, bandpass=False, dead_antennas=0)


def _read(path):
    from pyuvdata import UVData

    uv = UVData()
    uv.read(str(path), **PYUVDATA_READ_KWARGS)
    return uv


def _cross(uv):
    return uv.ant_1_array != uv.ant_2_array


@pytest.fixture(scope="module")
def full_corrupt(tmp_path_factory):
    """A small simulation with every corruption on."""
    cfg = SimulationConfig(out_dir=tmp_path_factory.mktemp("sim"), n_sources=5, seed=4,
                           **SMALL)
    return simulate_observation(cfg)


def test_files_shapes_and_metadata(full_corrupt):
    res = full_corrupt
    cfg = res.config
    (grp,) = res.groups
    assert len(grp.files) == cfg.n_subbands
    start = datetime.fromisoformat(grp.start_iso)
    times_in_files = []
    for sb, f in enumerate(grp.files):
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)_sb(\d\d)\.hdf5", f.name)
        assert m and int(m.group(2)) == sb
        jitter = (datetime.fromisoformat(m.group(1)) - start).total_seconds()
        assert abs(jitter) <= cfg.jitter_s + 1
        with h5py.File(f, "r") as h:
            hd = h["Header"]
            assert hd["uvw_array"].dtype == np.float32
            assert int(hd["Nants_telescope"][()]) == ins.N_STATIONS
            assert int(hd["Nants_data"][()]) == cfg.n_antennas
            nbl = cfg.n_antennas * (cfg.n_antennas + 1) // 2
            assert int(hd["Nbls"][()]) == nbl
            assert int(hd["Nblts"][()]) == nbl * cfg.n_integrations
            assert h["Data/visdata"].shape == (nbl * cfg.n_integrations, 1, cfg.n_channels, 2)
            freqs = hd["freq_array"][0]
            np.testing.assert_allclose(freqs, ins.subband_frequencies(sb, cfg.n_channels))
            assert np.all(np.diff(freqs) < 0)
            assert hd["channel_width"][()] == pytest.approx(ins.channel_width(cfg.n_channels))
            np.testing.assert_allclose(hd["integration_time"][:], ins.INTEGRATION_TIME)
            assert hd["phase_type"][()] == b"drift"
            assert hd["extra_keywords/phase_center_dec"][()] == pytest.approx(
                np.deg2rad(cfg.dec_deg))
            times_in_files.append(hd["time_array"][:])
    # the same times in every file of the group, spaced by the integration time
    for t in times_in_files[1:]:
        np.testing.assert_array_equal(t, times_in_files[0])
    ut = np.unique(times_in_files[0])
    np.testing.assert_allclose(np.diff(ut) * 86400, ins.INTEGRATION_TIME, atol=1e-4)
    assert (ut[0] * 86400 - (datetime.fromisoformat(grp.start_iso)
                             - datetime(1858, 11, 17)).total_seconds()
            - 2400000.5 * 86400) == pytest.approx(ins.INTEGRATION_TIME / 2, abs=1e-3)
    # like real DSA-110 files (float32 uvw), pyuvdata's default read refuses them ...
    from pyuvdata import UVData

    with pytest.raises(ValueError, match="uvw_array"):
        UVData().read(str(grp.files[0]), file_type="uvh5")
    # ... and reads them with the DSA-110 read options; autos included
    uv = _read(grp.files[0])
    assert uv.Nants_data == cfg.n_antennas and uv.telescope.Nants == ins.N_STATIONS
    assert (uv.ant_1_array == uv.ant_2_array).sum() == cfg.n_antennas * cfg.n_integrations
    assert uv.phase_center_catalog[0]["cat_type"] == "unprojected"
    uv.uvw_array = uv.uvw_array.astype(np.float64)
    uv.check()  # passes pyuvdata's full check once uvw is float64


def test_phase_with_pyuvdata_recovers_beam_attenuated_flux(tmp_path):
    """Noise-free, uncorrupted, one source (a calibrator in transit): pyuvdata's phase()
    to the source makes its visibilities real and equal to the truth's apparent flux."""
    cfg = SimulationConfig(out_dir=tmp_path, n_sources=0, calibrator="3C454.3",
                           jitter_s=0.0, **SMALL, **CLEAN)
    res = simulate_observation(cfg)
    tr = read_truth(res.groups[0].truth_npz)
    assert tr["source_name"].tolist() == ["J2253+1608"]
    apparent = tr["source_flux"][0][None, :] * tr["source_beam"][0]  # (ntime, nfreq)
    # it transits mid-group: the beam is near 1 there and symmetric about the middle
    assert tr["source_beam"][0].max() > 0.98
    for sb, f in enumerate(res.groups[0].files):
        uv = _read(f)
        uv.phase(ra=float(tr["source_ra"][0]), dec=float(tr["source_dec"][0]), epoch="J2000",
                 cat_name="cal")
        x = _cross(uv)
        tix = np.searchsorted(tr["time_array"], uv.time_array[x])
        expect = apparent[tix][:, sb * cfg.n_channels:(sb + 1) * cfg.n_channels]
        for p in range(2):
            d = uv.data_array[x][:, :, p]
            np.testing.assert_allclose(d.real, expect, rtol=1e-3)
            assert np.abs(d.imag).max() < 1e-3 * expect.max()


def test_noise_matches_radiometer_equation(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_sources=0, n_antennas=10, n_subbands=1,
                           n_channels=16, n_integrations=6, noise=True, rfi=False, gains=False,
                           bandpass=False, dead_antennas=0, sefd_jy=5000.0)
    res = simulate_observation(cfg)
    uv = _read(res.groups[0].files[0])
    sigma = ins.radiometer_noise(5000.0, ins.channel_width(16), ins.INTEGRATION_TIME)
    d = uv.data_array[_cross(uv)]
    assert np.std(d.real) == pytest.approx(sigma, rel=0.05)
    assert np.std(d.imag) == pytest.approx(sigma, rel=0.05)
    assert abs(np.mean(d.real)) < 0.05 * sigma
    autos = uv.data_array[~_cross(uv)]
    assert np.mean(autos.real) == pytest.approx(5000.0, rel=1e-3)
    assert np.std(autos.real) == pytest.approx(np.sqrt(2) * sigma, rel=0.1)
    assert np.all(autos.imag == 0)
    assert read_truth(res.groups[0].truth_npz)["noise_rms_jy"] == pytest.approx(sigma)


def test_gains_bandpass_and_dead_antennas_as_in_truth(tmp_path):
    base = dict(n_sources=0, calibrator="3C454.3", jitter_s=0.0, noise=False, rfi=False,
                seed=11, **SMALL)
    clean = simulate_observation(SimulationConfig(out_dir=tmp_path / "c", gains=False,
                                                  bandpass=False, dead_antennas=0, **base))
    dirty = simulate_observation(SimulationConfig(out_dir=tmp_path / "d", dead_antennas=1,
                                                  **base))
    tr = read_truth(dirty.groups[0].truth_npz)
    assert tr["antenna_dead"].sum() == 1
    dead_num = tr["antenna_numbers"][tr["antenna_dead"]][0]
    nch = base["n_channels"]
    for sb in range(base["n_subbands"]):
        uc, ud = _read(clean.groups[0].files[sb]), _read(dirty.groups[0].files[sb])
        tix = np.searchsorted(tr["time_array"], ud.time_array)
        i = np.searchsorted(tr["antenna_numbers"], ud.ant_1_array)
        j = np.searchsorted(tr["antenna_numbers"], ud.ant_2_array)
        bp = tr["bandpass"][:, sb * nch:(sb + 1) * nch]
        gi = tr["gains"][tix, i][:, None, :] * bp[i]
        gj = tr["gains"][tix, j][:, None, :] * bp[j]
        expect = gi * uc.data_array * np.conj(gj)
        np.testing.assert_allclose(ud.data_array, expect, rtol=1e-4,
                                   atol=1e-5 * np.abs(expect).max())
        has_dead = (ud.ant_1_array == dead_num) | (ud.ant_2_array == dead_num)
        assert np.all(ud.data_array[has_dead] == 0)
        assert np.all(np.abs(ud.data_array[~has_dead]) > 0)
    # the gains vary slowly but do vary; amplitudes are near 1
    g = tr["gains"][:, tr["antenna_active"] & ~tr["antenna_dead"]]
    assert np.abs(g).min() >= 0.5 and np.abs(g).max() <= 1.6
    assert np.abs(np.diff(g, axis=0)).max() > 0


def test_rfi_mask_and_signal(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_sources=0, n_antennas=6, n_subbands=16,
                           n_channels=8, n_integrations=8, noise=False, rfi=True, gains=False,
                           bandpass=False, dead_antennas=0, seed=2)
    res = simulate_observation(cfg)
    tr = read_truth(res.groups[0].truth_npz)
    mask = tr["rfi_mask"]
    freqs = tr["freq_array"].ravel()
    # every known line lies in a masked channel
    for f0 in ins.KNOWN_RFI_FREQUENCIES:
        assert mask[:, np.argmin(np.abs(freqs - f0))].any()
    nch = cfg.n_channels
    for sb, f in enumerate(res.groups[0].files):
        uv = _read(f)
        tix = np.searchsorted(tr["time_array"], uv.time_array)
        m = mask[tix][:, sb * nch:(sb + 1) * nch]
        x = _cross(uv)
        amp = np.abs(uv.data_array[x][..., 0])
        assert np.all(amp[~m[x]] == 0)
        np.testing.assert_allclose(amp[m[x]], tr["rfi_power_jy"][tix][x][:, sb * nch:(sb + 1)
                                   * nch][m[x]], rtol=1e-5)


def test_missing_and_truncated_subbands(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_sources=1, missing_subband=1,
                           truncate_subband=2, n_antennas=4, n_subbands=3, n_channels=4,
                           n_integrations=2)
    res = simulate_observation(cfg)
    names = [f.name[-9:] for f in res.groups[0].files]
    assert names == ["sb00.hdf5", "sb02.hdf5"]
    assert not list(tmp_path.glob("*_sb01.hdf5"))
    with pytest.raises(OSError):
        h5py.File(res.groups[0].files[1], "r")
    with h5py.File(res.groups[0].files[0], "r") as h:
        assert h["Data/visdata"].shape[0] == 4 * 5 // 2 * 2


def test_two_groups_are_consecutive(tmp_path):
    cfg = SimulationConfig(out_dir=tmp_path, n_groups=2, n_sources=3, jitter_s=0.0,
                           n_antennas=4, n_subbands=1, n_channels=4, n_integrations=3)
    res = simulate_observation(cfg)
    t0 = read_truth(res.groups[0].truth_npz)["time_array"]
    t1 = read_truth(res.groups[1].truth_npz)["time_array"]
    assert (t1[0] - t0[-1]) * 86400 == pytest.approx(ins.INTEGRATION_TIME, abs=1e-3)
    assert len(set(f.name for g in res.groups for f in g.files)) == 2


def test_catalog_sky(tmp_path, shared_data):
    cat = shared_data / "catalogs" / "nvss_3c454_field_dsa110_forced_phot.csv"
    cfg = SimulationConfig(out_dir=tmp_path, catalog=cat, start="2026-01-25T22:45:00",
                           n_antennas=4, n_subbands=1, n_channels=4, n_integrations=2)
    res = simulate_observation(cfg)
    tr = read_truth(res.groups[0].truth_npz)
    assert len(tr["source_name"]) > 20
    i = list(tr["source_name"]).index("J343.4904+16.1482")
    assert tr["source_flux_ref"][i] == pytest.approx(12.6568)


def test_bad_options_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="dec_deg -70.0 is impossible"):
        SimulationConfig(out_dir=tmp_path, dec_deg=-70.0)
    with pytest.raises(ConfigError, match="dec_deg 95"):
        SimulationConfig(out_dir=tmp_path, dec_deg=95)
    with pytest.raises(ConfigError, match="n_subbands must be in 1..16"):
        SimulationConfig(out_dir=tmp_path, n_subbands=17)
    with pytest.raises(ConfigError, match="missing_subband"):
        SimulationConfig(out_dir=tmp_path, n_subbands=2, missing_subband=5)
    with pytest.raises(ConfigError, match="start"):
        SimulationConfig(out_dir=tmp_path, start="yesterday")
    with pytest.raises(ConfigError, match="does not exist"):
        SimulationConfig(out_dir=tmp_path, catalog=tmp_path / "none.csv")
    cfg = SimulationConfig(out_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dec_deg = 3.0  # type: ignore[misc]
    nofl = tmp_path / "noflux.csv"
    nofl.write_text("name,ra_deg,dec_deg\nA,340.0,16.0\n")
    with pytest.raises(InputError, match="flux"):
        simulate_observation(SimulationConfig(out_dir=tmp_path / "o", catalog=nofl,
                                              n_antennas=4, n_subbands=1, n_channels=2,
                                              n_integrations=1))
    with pytest.raises(InputError, match="not in the VLA calibrator list"):
        simulate_observation(SimulationConfig(out_dir=tmp_path / "o2", calibrator="3CXYZ",
                                              n_antennas=4, n_subbands=1, n_channels=2,
                                              n_integrations=1))


def test_cli(tmp_path, capsys):
    rc = main(["--out", str(tmp_path), "--antennas", "4", "--subbands", "2", "--channels", "4",
               "--integrations", "2", "--sources", "3", "--no-noise", "--no-rfi", "--seed", "5"])
    assert rc == 0
    assert len(list(tmp_path.glob("*_sb*.hdf5"))) == 2
    assert len(list(tmp_path.glob("*_truth.json"))) == 1
    assert main(["--out", str(tmp_path / "x"), "--dec", "-80"]) == 2
    assert "impossible" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--sources", "3", "--catalog", "x.csv"])


def test_station_csv_positions_in_files(tmp_path, shared_data):
    from dsa110_pipeline.array_layout import read_station_csv

    csv = shared_data / "dsa110" / "DSA110_Station_Coordinates.csv"
    cfg = SimulationConfig(out_dir=tmp_path, station_csv=csv, n_sources=1, n_antennas=6,
                           n_subbands=1, n_channels=2, n_integrations=1)
    res = simulate_observation(cfg)
    uv = _read(res.groups[0].files[0])
    lay = read_station_csv(csv, 6)
    np.testing.assert_allclose(uv.telescope.antenna_positions, lay.ecef_rel, atol=1e-6)
    assert list(uv.telescope.antenna_names) == list(lay.names)
    # uvw are the ENU baselines (antenna 2 - antenna 1)
    enu = dict(zip(lay.numbers, lay.enu))
    expect = np.array([enu[b] - enu[a] for a, b in zip(uv.ant_1_array, uv.ant_2_array)])
    np.testing.assert_allclose(uv.uvw_array, expect, atol=1e-3)


def test_defaults_are_full_scale():
    from dsa110_pipeline.simulate.__main__ import build_parser

    a = build_parser().parse_args(["--out", "x"])
    assert (a.antennas, a.subbands, a.channels, a.integrations) == (
        ins.N_ACTIVE_ANTENNAS, ins.N_SUBBANDS, ins.N_CHANNELS_PER_SUBBAND, ins.N_INTEGRATIONS)
    assert a.noise and a.rfi and a.sources == 200 and a.sefd == ins.SEFD
    cfg = SimulationConfig(out_dir=Path("x"))
    assert (cfg.n_antennas, cfg.n_subbands, cfg.n_channels, cfg.n_integrations) == (
        96, 16, 48, 24)
