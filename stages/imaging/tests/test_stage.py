import shutil

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import ConfigError, InputError
from dsa110_pipeline.instrument import airy_beam
from stages.imaging import ImagingStage
from stages.imaging.peaks import parabolic_peak
from stages.imaging.tests._ms import write_test_ms
from stages.imaging.tests._sim import pixel_to_lm, point_source_vis, t_layout, uvw_tracks

DEC = np.radians(37.2)
RA = np.radians(150.0)
NPIX = 256
CELL_AS = 20.0
CELL = np.radians(CELL_AS / 3600)
SIGMA = 0.02  # Jy per visibility component (per polarization)
#: (row, col, true flux Jy): inside the primary beam, on pixel centres
SOURCES = [(128, 128, 1.0), (160, 80, 0.6), (90, 190, 0.4), (200, 150, 0.3)]


def _make_obs(seed=0, flux_scale=1.0, noise=True):
    rng = np.random.default_rng(seed)
    enu = t_layout(30, 20, 8, seed=11) * 0.25  # compact: ~600 m, beam ~ 1 arcmin
    na = len(enu)
    ha = np.linspace(-0.011, 0.011, 6)
    uvw = uvw_tracks(enu, DEC, ha)
    i, j = np.triu_indices(na, 1)
    a1, a2 = np.tile(i, len(ha)), np.tile(j, len(ha))
    time = np.repeat(5.2e9 + np.arange(len(ha)) * 12.884902, len(i))
    freq = np.linspace(1.4987e9, 1.3113e9, 8)  # descending, like the raw subbands
    vis = np.zeros((len(uvw), len(freq)), complex)
    for r, c, f in SOURCES:
        l, m = pixel_to_lm(r, c, NPIX, CELL)
        theta = np.arcsin(np.hypot(l, m))
        for k, nu in enumerate(freq):  # apparent flux: true flux x Airy beam at each channel
            vis[:, k] += point_source_vis(uvw, freq[k:k + 1],
                                          [(f * flux_scale * airy_beam(theta, nu), l, m)])[:, 0]
    data = np.stack([vis, vis], axis=2)
    if noise:
        data = data + rng.normal(0, SIGMA, data.shape) + 1j * rng.normal(0, SIGMA, data.shape)
    return dict(uvw=uvw, freq=freq, data=data.astype(np.complex64), ant1=a1, ant2=a2, time=time,
                enu=enu)


@pytest.fixture(scope="module")
def sky_ms(tmp_path_factory):
    obs = _make_obs()
    p = tmp_path_factory.mktemp("ms") / "2026-01-01T00:00:00.ms"
    write_test_ms(p, uvw=obs["uvw"], freq=obs["freq"], data=obs["data"], ant1=obs["ant1"],
                  ant2=obs["ant2"], time=obs["time"], ra=RA, dec=DEC, enu=obs["enu"],
                  weight=1 / SIGMA**2, field_name="TESTFIELD")
    return p


def _ctx(ms, **extra):
    return PipelineContext(inputs={"ms": ProductRef(kind="ms", path=str(ms)), **extra})


def _cfg(tmp_path, **kw):
    base = dict(npix=NPIX, cell_arcsec=CELL_AS,
                clean=dict(niter=2000, auto_threshold=2.0, auto_mask=4.0),
                epsilon=1e-4, nthreads=2, output_dir=str(tmp_path), memory_limit_gb=2.0)
    return {**base, **kw}


def test_stage_products_fluxes_positions_and_noise(sky_ms, tmp_path):
    caltab = tmp_path / "g.cal"
    caltab.write_text("x")
    stage = ImagingStage(_cfg(tmp_path))
    ctx = stage.execute(_ctx(sky_ms, caltables=ProductRef.for_path("caltable", caltab)))
    stage.validate_outputs(ctx)
    refs = {r.meta["role"]: r for r in ctx.outputs["images"]}
    assert sorted(refs) == sorted(["image", "residual", "model", "psf", "pb", "pbcor"])
    assert all(r.kind == "fits" and r.checksum for r in refs.values())
    with fits.open(refs["pbcor"].path) as h:
        hdr, pbcor = h[0].header, h[0].data[0, 0]
    assert hdr["BUNIT"] == "Jy/beam" and hdr["OBJECT"] == "TESTFIELD"
    assert hdr["TELESCOP"] == "DSA-110" and hdr["MSNAME"] == sky_ms.name
    assert hdr["CALTAB1"].startswith("g.cal:") and hdr["CFGHASH"] == stage.config_hash()
    assert hdr["DATE-OBS"].startswith("2023") or "T" in hdr["DATE-OBS"]
    assert fits.getheader(refs["model"].path)["BUNIT"] == "Jy/pixel"
    psf = fits.getdata(refs["psf"].path)[0, 0]
    assert psf[NPIX // 2, NPIX // 2] == pytest.approx(1.0)
    bmaj, bmin = np.radians(hdr["BMAJ"]), np.radians(hdr["BMIN"])
    fwhm_pix = np.sqrt(bmaj * bmin) / CELL
    w = WCS(hdr).celestial
    for r, c, f in SOURCES:
        assert np.nanmax(pbcor[r - 3:r + 4, c - 3:c + 4]) == pytest.approx(f, rel=0.02), (r, c)
        _, rr, cc = parabolic_peak(pbcor, r, c, half=3)
        assert np.hypot(rr - r, cc - c) < 0.1 * fwhm_pix
        # the WCS puts the true source position (from l, m) on that pixel
        l, m = pixel_to_lm(r, c, NPIX, CELL)
        ra = RA + np.arctan2(l, np.cos(DEC) * np.sqrt(1 - l * l - m * m) - m * np.sin(DEC))
        dec = np.arcsin(m * np.cos(DEC) + np.sin(DEC) * np.sqrt(1 - l * l - m * m))
        px, py = w.all_world2pix(np.degrees(ra), np.degrees(dec), 0)
        assert np.hypot(px - c, py - r) < 0.1
    m = ctx.metrics["imaging"]
    assert m["residual_rms_jy"] < 1.2 * m["expected_rms_jy"]
    # drift scan: the beam centre moves by +-omega*T/2 in l; the PB is its average there
    pb = fits.getdata(refs["pb"].path)[0, 0]
    t = np.linspace(-1, 1, 9) * 0.5 * np.ptp(_make_obs(noise=False)["time"])
    dl = np.cos(DEC) * np.sin(2 * np.pi / 86164.0905 * t)
    f = np.sort(_make_obs(noise=False)["freq"])
    expect = np.mean([airy_beam(np.arcsin(abs(x)), f).mean() for x in dl])
    assert pb[NPIX // 2, NPIX // 2] == pytest.approx(expect, rel=1e-3)
    assert expect < 1.0


def test_streaming_equals_in_memory(tmp_path):
    obs = _make_obs(seed=1)
    ms = write_test_ms(tmp_path / "s.ms", uvw=obs["uvw"], freq=obs["freq"], data=obs["data"],
                       ant1=obs["ant1"], ant2=obs["ant2"], time=obs["time"], ra=RA, dec=DEC,
                       weight=1 / SIGMA**2)
    kw = dict(npix=128, clean=dict(niter=0, auto_mask=None), weighting="briggs")
    a = ImagingStage(_cfg(tmp_path / "a", in_memory="always", **kw)).execute(_ctx(ms))
    b = ImagingStage(_cfg(tmp_path / "b", in_memory="never", rows_per_chunk=1000, **kw)
                     ).execute(_ctx(ms))
    assert a.metrics["imaging"]["in_memory"] and not b.metrics["imaging"]["in_memory"]
    for ra_, rb in zip(a.outputs["images"], b.outputs["images"]):
        x = fits.getdata(ra_.path)
        y = fits.getdata(rb.path)
        np.testing.assert_allclose(np.nan_to_num(x), np.nan_to_num(y),
                                   atol=1e-3 * np.nanmax(np.abs(x)))


@pytest.fixture()
def no_heavy_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("heavy work started before the input was checked")

    monkeypatch.setattr("stages.imaging.stage.make_images", boom)
    monkeypatch.setattr("stages.imaging.stage.MSChunkSource.load", boom)


def test_fully_flagged_ms_fails_early(tmp_path, no_heavy_work):
    obs = _make_obs(noise=False)
    ms = write_test_ms(tmp_path / "flagged.ms", uvw=obs["uvw"], freq=obs["freq"],
                       data=obs["data"], ant1=obs["ant1"], ant2=obs["ant2"], time=obs["time"],
                       ra=RA, dec=DEC, flag=np.ones(obs["data"].shape, bool))
    with pytest.raises(InputError, match="flagged") as e:
        ImagingStage(_cfg(tmp_path)).execute(_ctx(ms))
    assert str(ms) in str(e.value)


def test_empty_ms_and_missing_column_fail_early(tmp_path, no_heavy_work):
    obs = _make_obs(noise=False)
    ms = write_test_ms(tmp_path / "empty.ms", uvw=obs["uvw"][:0], freq=obs["freq"],
                       data=obs["data"][:0], ant1=obs["ant1"][:0], ant2=obs["ant2"][:0],
                       time=obs["time"][:0], ra=RA, dec=DEC, enu=obs["enu"])
    with pytest.raises(InputError, match="no rows"):
        ImagingStage(_cfg(tmp_path)).execute(_ctx(ms))
    ms2 = write_test_ms(tmp_path / "raw.ms", uvw=obs["uvw"], freq=obs["freq"], data=obs["data"],
                        ant1=obs["ant1"], ant2=obs["ant2"], time=obs["time"], ra=RA, dec=DEC,
                        corrected=False)
    with pytest.raises(InputError, match="CORRECTED_DATA is absent"):
        ImagingStage(_cfg(tmp_path)).execute(_ctx(ms2))


def test_nonsense_cell_and_oversized_image_fail_early(sky_ms, tmp_path, no_heavy_work):
    with pytest.raises(ConfigError, match="undersamples"):
        ImagingStage(_cfg(tmp_path, cell_arcsec=300.0)).execute(_ctx(sky_ms))
    with pytest.raises(ConfigError, match="smaller than 4 synthesized beams"):
        ImagingStage(_cfg(tmp_path, cell_arcsec=0.01, npix=64)).execute(_ctx(sky_ms))
    with pytest.raises(ConfigError, match="memory limit"):
        ImagingStage(_cfg(tmp_path, npix=16384, cell_arcsec=1.0,
                          memory_limit_gb=4)).execute(_ctx(sky_ms))
    with pytest.raises(ValueError):
        ImagingStage({"cell_arcsec": 0.0})
    with pytest.raises(ValueError):
        ImagingStage({"npix": 1001})
    # CLEAN's keys live in the imaging.clean section; an old flat key says where it went
    with pytest.raises(ValueError, match=r"imaging\.niter is now imaging\.clean\.niter; "
                                         r"imaging\.threshold_jy is now imaging\.clean\.threshold"):
        ImagingStage({"niter": 5, "threshold_jy": 0.1})
    with pytest.raises(ValueError, match="auto_mask must be >= auto_threshold"):
        ImagingStage({"clean": {"auto_mask": 2.0, "auto_threshold": 3.0}})
    assert ImagingStage({"clean": {"niter": 7}}).config.clean.niter == 7


def test_wrong_input_kind(tmp_path):
    ctx = PipelineContext(inputs={"ms": ProductRef(kind="fits", path=str(tmp_path))})
    with pytest.raises(InputError, match="not a Measurement Set"):
        ImagingStage(_cfg(tmp_path)).execute(ctx)


@pytest.mark.wsclean
@pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed")
def test_wsclean_backend_gives_the_same_products(sky_ms, tmp_path):
    ctx = ImagingStage(_cfg(tmp_path, backend="wsclean")).execute(_ctx(sky_ms))
    refs = {r.meta["role"]: r for r in ctx.outputs["images"]}
    assert sorted(refs) == sorted(["image", "residual", "model", "psf", "pb", "pbcor"])
    hdr = fits.getheader(refs["image"].path)
    assert hdr["IMBACKND"] == "wsclean" and hdr["BMAJ"] > 0
    pbcor = fits.getdata(refs["pbcor"].path)[0, 0]
    r, c, f = SOURCES[1]
    assert np.nanmax(pbcor[r - 2:r + 3, c - 2:c + 3]) == pytest.approx(f, rel=0.05)
    assert (tmp_path / f"{sky_ms.name.removesuffix('.ms')}-wsclean.log").exists()
