"""The mosaic of drift-scan group images of a known sky: fluxes in the overlaps, noise
against the inverse-variance expectation, REJECTed groups left out."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.night import GroupSpec, NightOrchestrator
from dsa110_pipeline.stage import FunctionStage
from dsa110_pipeline.state import StateDB
from stages.mosaic import MosaicStage
from stages.mosaic.combine import accumulate, finish

N, CELL, DEC = 200, 20.0 / 3600, 30.0
BEAM = 150.0 / 3600  # restoring beam FWHM, deg (7.5 pixels)
PB_SIGMA = 0.5  # deg
MJD0 = 61065.0 + 22 / 24
SKY = [(150.0, 30.0, 1.0), (150.6, 30.3, 0.5), (149.4, 29.8, 0.8), (150.3, 30.0, 0.3)]


def _header(ra0):
    from astropy.io import fits

    h = fits.Header()
    h.update(NAXIS=2, NAXIS1=N, NAXIS2=N, CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CRVAL1=ra0,
             CRVAL2=DEC, CRPIX1=N / 2 + 0.5, CRPIX2=N / 2 + 0.5, CDELT1=-CELL, CDELT2=CELL,
             CUNIT1="deg", CUNIT2="deg", BMAJ=BEAM, BMIN=BEAM, BPA=0.0, TELESCOP="OVRO_MMA")
    return h


def _beam_noise(rng, sigma):
    """Noise correlated over the restoring beam, of rms ``sigma``: an image's noise."""
    white = rng.normal(size=(N, N))
    f = np.fft.fftfreq(N)
    s = BEAM / CELL / np.sqrt(8 * np.log(2))  # beam sigma, pixels
    taper = np.exp(-2 * np.pi ** 2 * s ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    n = np.fft.ifft2(np.fft.fft2(white) * taper).real
    return sigma * n / n.std()


def _group_images(ra0, sigma, seed, out, extra=()):
    from astropy.io import fits
    from astropy.wcs import WCS

    h = _header(ra0)
    w = WCS(h)
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    ra, dec = w.pixel_to_world_values(xx, yy)
    d2 = ((ra - ra0) * np.cos(np.radians(DEC))) ** 2 + (dec - DEC) ** 2
    pb = np.exp(-d2 / (2 * PB_SIGMA ** 2))
    img = _beam_noise(np.random.default_rng(seed), sigma)
    residual = img.copy()
    for sra, sdec, flux in SKY:
        x, y = w.world_to_pixel_values(sra, sdec)
        r2 = ((xx - x) ** 2 + (yy - y) ** 2) * CELL ** 2
        sd2 = ((sra - ra0) * np.cos(np.radians(DEC))) ** 2 + (sdec - DEC) ** 2
        img += flux * np.exp(-sd2 / (2 * PB_SIGMA ** 2)) * np.exp(-4 * np.log(2) * r2 / BEAM ** 2)
    for sra, sdec, app in extra:  # in this group's image only (an artefact of it)
        x, y = w.world_to_pixel_values(sra, sdec)
        img += app * np.exp(-4 * np.log(2) * ((xx - x) ** 2 + (yy - y) ** 2) * CELL ** 2
                            / BEAM ** 2)
    refs = []
    for role, data in (("image", img), ("pb", pb), ("residual", residual)):
        path = out / f"g{ra0:.1f}-{role}.fits"
        fits.writeto(path, data.astype(np.float32), h, overwrite=True)
        refs.append(ProductRef.for_path("fits", path, role=role))
    return refs


def _run(tmp_path, earlier: list[tuple[float, float]] = (), artefact=None,
         cfg: dict | None = None, want: str = "done", earlier_window: str | None = None):
    """The mosaic of five groups (the last REJECTed). The reference catalog lacks the
    0.3 Jy source: a new source, unless ``earlier`` (ra, dec) mosaics found it.
    ``artefact`` (group index, ra, dec, apparent Jy): a blob in that group's image only."""
    out = tmp_path / "out"
    out.mkdir()
    ref = tmp_path / "reference.csv"
    ref.write_text("name,ra_deg,dec_deg,flux_jy,spectral_index\n" + "".join(
        f"S{i},{ra},{dec},{flux},0\n" for i, (ra, dec, flux) in enumerate(SKY[:3])))
    if earlier:
        (out / "mosaics").mkdir()
        (out / "mosaics" / "mosaic_2026-01-25T210000-new_sources.csv").write_text(
            "name,ra_deg,dec_deg,flux_jy,window\n" + "".join(
                f"E,{ra},{dec},0.3,{earlier_window or ''}\n" for ra, dec in earlier))
    centres = [149.4, 149.8, 150.2, 150.6, 151.0]
    sigmas = [0.010, 0.012, 0.010, 0.008, 0.010]

    def images(ctx):
        k = ctx.metadata["index"]
        extra = [artefact[1:]] if artefact is not None and artefact[0] == k else []
        return ctx.with_output("images", _group_images(centres[k], sigmas[k], k, out, extra))

    def validation(ctx):
        k = ctx.metadata["index"]
        p = out / f"v{k}.html"
        p.write_text("report")
        return ctx.with_output("validation", ProductRef.for_path(
            "html", p, verdict="REJECT" if k == 4 else "ACCEPT",
            metrics={"noise": {"image_rms_jy": sigmas[k]}}, reference=str(ref)))

    mosaic = MosaicStage({"pb_cut": 0.2, "output_dir": str(out / "mosaics"),
                          "validator": "stages.validation.mosaic:validate_arrays",
                          **(cfg or {})})
    mosaic.run_output_dir = str(out)  # what bind_run takes from paths.output_dir
    stages = [FunctionStage(images, name="imaging", produces=("images",)),
              FunctionStage(validation, name="validation", produces=("validation",)), mosaic]
    specs = [GroupSpec(f"2026-01-25T22:{5 * k:02d}:00", {}, start_mjd=MJD0 + k * 0.0036,
                       metadata={"index": k}) for k in range(5)]
    with StateDB(tmp_path / "state.sqlite") as db:
        res = NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".c")).run(
            specs, lambda s: stages, PipelineContext())
        assert list(res.windows.values()) == [want]
    if want != "done":
        return res, sigmas
    return res.result.context.get("mosaic@2026-01-25T22:00:00/mosaic"), sigmas


def test_mosaic_fluxes_noise_and_provenance(tmp_path):
    from astropy.io import fits
    from astropy.wcs import WCS

    refs, sigmas = _run(tmp_path)
    planes = {r.meta["role"]: r.path for r in refs}
    img = fits.getdata(planes["image"]).astype(float)
    noise = fits.getdata(planes["noise"]).astype(float)
    hdr = fits.getheader(planes["image"])
    assert hdr["NGROUPS"] == 4 and hdr["NLEFTOUT"] == 1 and hdr["OUT001"].endswith("22:20:00")
    assert hdr["TELESCOP"] == "OVRO_MMA" and hdr["BUNIT"] == "JY/BEAM"
    w = WCS(hdr)
    for ra, dec, flux in SKY:  # every source, in the overlaps of two or more groups
        x, y = w.world_to_pixel_values(ra, dec)
        iy, ix = int(round(float(y))), int(round(float(x)))
        peak = np.nanmax(img[iy - 2:iy + 3, ix - 2:ix + 3])
        assert abs(peak - flux) < max(0.02 * flux, 5 * noise[iy, ix]), (ra, peak, flux)
    # the noise map against the measured scatter, away from the sources
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    far = np.isfinite(img)
    for ra, dec, _ in SKY:
        x, y = w.world_to_pixel_values(ra, dec)
        far &= np.hypot(xx - x, yy - y) > 8
    z = img[far] / noise[far]
    assert 0.9 < np.std(z) < 1.1
    # a pixel seen by one group only has that group's noise / pb there
    assert np.nanmin(noise) < min(sigmas[:4])  # overlaps beat any single group
    # the residual mosaic: the noise alone
    res = fits.getdata(planes["residual"]).astype(float)
    assert 0.9 < np.nanstd(res / noise) < 1.1


def test_the_mosaic_is_validated_and_its_new_source_found(tmp_path):
    import csv

    refs, _ = _run(tmp_path)
    roles = {r.meta["role"]: r for r in refs}
    m = roles["validation"].meta["metrics"]
    # the residual's rms against the inverse-variance expectation of the groups' noise
    assert 0.9 < m["noise"]["ratio"] < 1.1, m["noise"]
    assert abs(m["flux_scale"]["median_ratio"] - 1) < 0.02, m["flux_scale"]
    assert m["n_sources"] == 4
    with open(roles["new_sources"].path) as fh:
        new = list(csv.DictReader(fh))
    assert len(new) == 1, new
    ra, dec, flux = SKY[3]
    assert abs(float(new[0]["ra_deg"]) - ra) < 0.1 * BEAM and \
        abs(float(new[0]["dec_deg"]) - dec) < 0.1 * BEAM
    assert abs(float(new[0]["flux_jy"]) - flux) < 0.05 * flux
    assert new[0]["name"].startswith("DSA J1001")


def test_an_artefact_of_one_group_is_not_a_new_source(tmp_path):
    import csv

    # 0.25 Jy (21 sigma in that group) where three groups overlap, in one of them only
    refs, _ = _run(tmp_path, artefact=(1, 149.9, 29.8, 0.25))
    roles = {r.meta["role"]: r for r in refs}
    with open(roles["new_sources"].path) as fh:
        new = list(csv.DictReader(fh))
    with open(roles["unconfirmed_sources"].path) as fh:
        unconfirmed = list(csv.DictReader(fh))
    # the real one, in every group that covers it, stays new
    assert len(new) == 1 and abs(float(new[0]["ra_deg"]) - SKY[3][0]) < 0.1 * BEAM
    assert float(new[0]["snr_without_best_group"]) > 10
    assert len(unconfirmed) == 1, unconfirmed
    u = unconfirmed[0]
    assert abs(float(u["ra_deg"]) - 149.9) < 0.2 * BEAM and float(u["snr"]) >= 7
    assert float(u["snr_without_best_group"]) < 3


def test_a_source_only_one_group_covers_stays_a_new_source(tmp_path):
    """At the window's edge (RA 148.85: in the first group's image only) no other group can
    test a detection: it is a new source, its expected S/N without the best group 0."""
    import csv

    refs, _ = _run(tmp_path, artefact=(0, 148.85, 30.0, 0.25))
    roles = {r.meta["role"]: r for r in refs}
    with open(roles["new_sources"].path) as fh:
        new = list(csv.DictReader(fh))
    with open(roles["unconfirmed_sources"].path) as fh:
        assert list(csv.DictReader(fh)) == []
    edge = [r for r in new if abs(float(r["ra_deg"]) - 148.85) < 0.2 * BEAM]
    assert len(new) == 2 and len(edge) == 1, new
    assert float(edge[0]["snr_without_best_group"]) == 0.0
    assert float(edge[0]["snr_expected_without_best_group"]) == 0.0


def test_snr_without_best_group():
    from stages.mosaic.new_sources import snr_without_best_group

    sigma = np.array([1.0, 1.0, 2.0, 1.0])
    # a 10-unit source seen by groups 0-2 at pb 1, 0.5, 1 (group 3 does not cover it); and
    # an 8-sigma blob in group 0 alone
    values = np.array([[10.0, 5.0, 10.0, np.nan], [8.0, 0.0, 0.0, np.nan]])
    pb = np.array([[1.0, 0.5, 1.0, np.nan], [1.0, 0.5, 1.0, np.nan]])
    snr, loo, expected = snr_without_best_group(values, pb, sigma)
    w = np.array([1.0, 0.25, 0.25])  # pb^2 / sigma^2
    assert snr[0] == pytest.approx(10 * w.sum() / np.sqrt(w.sum()))
    assert loo[0] == pytest.approx(10 * w[1:].sum() / np.sqrt(w[1:].sum()))
    assert expected[0] == pytest.approx(loo[0])  # steady: seen as expected
    assert snr[1] == pytest.approx(8 / np.sqrt(w.sum())) and loo[1] == 0.0
    # the blob: the others would have seen its combined flux (8 / 1.5) at 3.8 sigma
    assert expected[1] == pytest.approx(8 / w.sum() * np.sqrt(w[1:].sum()))
    # a detection only one group covers: nothing to test it against
    _, loo1, exp1 = snr_without_best_group(np.array([[30.0, np.nan]]),
                                           np.array([[0.9, np.nan]]), np.array([1.0, 1.0]))
    assert loo1[0] == 0.0 and exp1[0] == 0.0


def test_a_later_windows_new_source_file_does_not_count_as_earlier(tmp_path):
    """A ``--rerun`` finds the first run's files of later windows: not earlier."""
    refs, _ = _run(tmp_path, earlier=[SKY[3][:2]], earlier_window="mosaic@2026-01-25T23:00:00")
    roles = {r.meta.get("role"): r for r in refs}
    assert roles["new_sources"].meta["n"] == 1
    refs, _ = _run(_fresh(tmp_path / "b"), earlier=[SKY[3][:2]],
                   earlier_window="mosaic@2026-01-25T21:00:00")
    assert {r.meta.get("role"): r for r in refs}["new_sources"].meta["n"] == 0


def test_a_source_an_earlier_mosaic_found_is_not_new_again(tmp_path):
    refs, _ = _run(tmp_path, earlier=[SKY[3][:2]])
    roles = {r.meta["role"]: r for r in refs}
    assert roles["new_sources"].meta["n"] == 0


def test_accumulate_is_inverse_variance_weighting():
    num, den = np.zeros((1, 4)), np.zeros(4)
    pb = np.array([1.0, 0.5, 0.1, np.nan])
    for sigma, truth in ((1.0, 2.0), (2.0, 2.0)):
        accumulate(num, den, truth * pb[None], pb, sigma, pb_cut=0.2)
    m, n = finish(num, den)
    assert np.allclose(m[0, :2], 2.0) and np.isnan(m[0, 2:]).all()
    assert np.isclose(n[0], 1 / np.sqrt(1 + 1 / 4))


def test_reprojection_keeps_blanks_local_and_a_smooth_image_exact():
    from astropy.wcs import WCS

    from stages.mosaic.resample import pixel_map, resample

    w_in = WCS(_header(150.0)).celestial
    w_out = WCS(_header(150.2)).celestial
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    smooth = np.exp(-((xx - 100) ** 2 + (yy - 90) ** 2) / (2 * 8.0 ** 2))
    blanked = smooth.copy()
    blanked[:, :30] = np.nan  # a blank edge: must not spread along the rows
    out = resample(np.stack([smooth, blanked]), pixel_map(w_in, w_out, (N, N)))
    ra, dec = w_out.pixel_to_world_values(xx, yy)
    x, y = w_in.world_to_pixel_values(ra, dec)
    truth = np.exp(-((x - 100) ** 2 + (y - 90) ** 2) / (2 * 8.0 ** 2))
    inside = (x > 2) & (x < N - 3) & (y > 2) & (y < N - 3)
    assert np.nanmax(abs(out[0] - truth)[inside]) < 1e-3  # bicubic: peaks kept
    far = (x > 33) & (x < N - 6) & (y > 5) & (y < N - 6)
    assert np.isfinite(out[1][far]).all() and np.isnan(out[1][x < 29]).all()
    assert np.allclose(out[1][far], out[0][far])


def test_the_apparent_form_has_uniform_noise():
    from stages.mosaic.combine import apparent

    rng = np.random.default_rng(1)
    noise = np.linspace(1.0, 4.0, 10000).reshape(100, 100)
    mosaic = rng.normal(size=noise.shape) * noise  # PB-corrected: noise grows outwards
    app, sens, sigma0 = apparent(mosaic[None], noise)
    assert sigma0 == 1.0 and np.isclose(sens.max(), 1.0) and np.isclose(sens.min(), 0.25)
    assert abs(np.std(app[0][:, :50]) - 1) < 0.05 and abs(np.std(app[0][:, 50:]) - 1) < 0.05


def test_assembled_mosaic_takes_the_runs_products_tree_and_validation_settings(tmp_path):
    """Assembly hands the stage the typed run config (no ``ctx.config`` look-ups): the
    products tree and the group validation's settings, ``--set`` overrides included."""
    from dsa110_pipeline.assemble import build_stage
    from dsa110_pipeline.config import load_config

    cfg = load_config(environ={}, overrides=[f"paths.output_dir={tmp_path}",
                                             "validation.point_fit_snr=12.5"])
    stage = build_stage(cfg, "mosaic")
    assert stage.output_root() == tmp_path
    assert stage.validator_settings["point_fit_snr"] == 12.5
    assert stage.validator_settings == cfg.validation.model_dump(mode="json")
    cfg = load_config(environ={}, overrides=["mosaic.validation_settings=null"])
    assert build_stage(cfg, "mosaic").validator_settings is None


def test_car_mosaics_of_different_windows_share_one_pixel_lattice():
    """Two windows' CAR grids (an hour apart, and across 0h) put their pixel centres on
    each other: a night's strip is their tiles, joined without resampling."""
    from astropy.wcs import WCS

    from stages.mosaic.grid import mosaic_header

    cell = 6.0 / 3600
    tiles = []
    for ra in (12.34513, 27.10037, 359.20071):
        centres = np.array([[ra - 0.4, 30.0], [ra + 0.4, 30.2]])
        corners = np.array([[ra - 2.0, 28.3], [ra + 2.0, 31.9]])
        tiles.append(WCS(mosaic_header(centres, corners, cell, "CAR")))
    for a in tiles[1:]:
        ra, dec = a.pixel_to_world_values([0.0, 517.0], [0.0, 33.0])
        x, y = tiles[0].world_to_pixel_values(ra, dec)
        assert np.allclose(x, np.round(x), atol=1e-6) and np.allclose(y, np.round(y),
                                                                       atol=1e-6)
    # SIN grids stay centred on their window (no lattice)
    sin = WCS(mosaic_header(np.array([[12.345, 30.0]]), np.array([[10.0, 28.0]]), cell))
    assert sin.wcs.crval[0] == pytest.approx(12.345)


def test_a_window_too_large_to_hold_fails_with_what_to_do(tmp_path):
    """A grid beyond ``max_pixels`` (a night's strip in one image) fails before any plane is
    allocated, naming the grid, the key and the way out (hourly CAR tiles)."""
    res, _ = _run(tmp_path, cfg={"max_pixels": 10_000}, want="failed")
    rec = next(r for n, r in res.result.records.items() if n.endswith("/mosaic"))
    assert rec.error_type == "ConfigError"
    assert "mosaic.max_pixels" in rec.error and "CAR" in rec.error and " x " in rec.error


def _fresh(path):
    path.mkdir()
    return path
