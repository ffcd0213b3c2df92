"""The photometry stage on FITS images made here: a known sky, primary beam and noise."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from stages.photometry import PhotometryStage
from stages.photometry.forced import beam_kernel

N, CELL = 256, 4.0 / 3600  # pixels, deg
BMAJ, BMIN = 16.0 / 3600, 12.0 / 3600


def _header(role):
    from astropy.io import fits

    h = fits.Header()
    h.update(NAXIS=2, NAXIS1=N, NAXIS2=N, CTYPE1="RA---SIN", CTYPE2="DEC--SIN",
             CRVAL1=150.0, CRVAL2=30.0, CRPIX1=N / 2 + 1, CRPIX2=N / 2 + 1, CDELT1=-CELL,
             CDELT2=CELL, CUNIT1="deg", CUNIT2="deg", BUNIT="JY/BEAM")
    h["MJD-OBS"] = 61000.5
    if role != "pb":
        h.update(BMAJ=BMAJ, BMIN=BMIN, BPA=0.0)
    return h


def _night(tmp_path, sources):
    """FITS image/residual/pb and a catalog; ``sources``: (ra, dec, flux) in deg, Jy."""
    from astropy.io import fits
    from astropy.wcs import WCS

    rng = np.random.default_rng(3)
    wcs = WCS(_header("image")).celestial
    yy, xx = np.mgrid[0:N, 0:N].astype(float)
    r2 = ((xx - N / 2) ** 2 + (yy - N / 2) ** 2) * CELL ** 2
    pb = np.exp(-r2 / (2 * 0.2 ** 2))
    noise = 0.001 * rng.normal(size=(N, N))
    image = noise.copy()
    for ra, dec, flux in sources:
        x, y = wcs.all_world2pix(ra, dec, 0)
        pbv = np.exp(-(((x - N / 2) ** 2 + (y - N / 2) ** 2) * CELL ** 2) / (2 * 0.2 ** 2))
        image += flux * pbv * beam_kernel(xx - x, yy - y, BMAJ / CELL, BMIN / CELL, 0.0)
    refs = []
    for role, data in (("image", image), ("residual", noise), ("pb", pb)):
        path = tmp_path / f"g-{role}.fits"
        fits.writeto(path, data.astype(np.float32), _header(role))
        refs.append(ProductRef.for_path("fits", path, role=role))
    cat = tmp_path / "survey.csv"
    with open(cat, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "ra_deg", "dec_deg", "flux_jy"])
        for i, (ra, dec, flux) in enumerate(sources):
            w.writerow([f"S{i}", ra, dec, flux])
    return refs, cat


def test_fluxes_are_primary_beam_corrected_and_flags_set(tmp_path):
    sources = [(150.0, 30.0, 0.5), (150.1, 30.05, 0.2),  # bright, at the centre and off it
               (150.1004, 30.0502, 0.05),  # within a beam of the second: blended
               (149.5, 30.0, 1.0)]  # far out in the primary beam: left out
    refs, cat = _night(tmp_path, sources)
    stage = PhotometryStage({"output_dir": str(tmp_path / "out"), "pb_cut": 0.2})
    ctx = PipelineContext(group_id="2026-01-25T22:00:00",
                          metadata={"survey_catalog": str(cat)}).with_output("images", refs)
    out = stage.execute(ctx).get("photometry")
    with open(out.path, newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"S0", "S1", "S2"}
    s0 = rows["S0"]
    assert abs(float(s0["flux_jy"]) - 0.5) < 5 * float(s0["err_jy"])
    assert abs(float(s0["pb"]) - 1.0) < 1e-3 and s0["blended"] == "0"
    s1 = rows["S1"]
    assert float(s1["pb"]) < 0.95  # corrected: the apparent flux is lower
    assert float(s1["flux_app_jy"]) < float(s1["flux_jy"])
    assert rows["S2"]["blended"] == "1" and s1["blended"] == "1"
    assert float(s0["snr"]) > 60 and s0["artefact"] == "0"  # at most 1 / systematic_frac
    assert float(s0["flux_app_jy"]) / float(s0["noise_err_app_jy"]) > 100
    assert out.meta["n_sources"] == 3


def test_missing_images_are_an_input_error(tmp_path):
    refs, cat = _night(tmp_path, [(150.0, 30.0, 0.5)])
    ctx = PipelineContext(metadata={"survey_catalog": str(cat)}).with_output(
        "images", [r for r in refs if r.meta["role"] != "pb"])
    with pytest.raises(InputError, match="missing \\['pb'\\]"):
        PhotometryStage({"output_dir": str(tmp_path)}).execute(ctx)


def test_new_sources_found_earlier_are_measured_once(tmp_path):
    sources = [(150.0, 30.0, 0.5), (150.05, 29.98, 0.1)]
    refs, cat = _night(tmp_path, sources)
    with open(cat, "w", newline="") as fh:  # the survey lacks the second source
        fh.write(f"name,ra_deg,dec_deg,flux_jy\nS0,{sources[0][0]},{sources[0][1]},0.5\n")
    mosaics = tmp_path / "run" / "mosaics"
    mosaics.mkdir(parents=True)
    ra, dec, _ = sources[1]
    (mosaics / "mosaic_2026-01-25T220000-new_sources.csv").write_text(
        "name,ra_deg,dec_deg,flux_jy,snr\n"
        f"DSA J100012.0+295848,{ra},{dec},0.11,20\n"
        f"DSA J100000.0+300000,150.0002,30.0001,0.5,90\n")  # the survey's S0: not again
    (mosaics / "mosaic_2026-01-25T230000-new_sources.csv").write_text(
        f"name,ra_deg,dec_deg,flux_jy\nDSA J100012.1+295849,{ra + 0.0005},{dec},0.1\n")
    stage = PhotometryStage({"output_dir": str(tmp_path / "out")})
    stage.run_output_dir = str(tmp_path / "run")  # bind_run: paths.output_dir
    ctx = PipelineContext(group_id="2026-01-25T23:30:00",
                          metadata={"survey_catalog": str(cat)}).with_output("images", refs)
    out = stage.execute(ctx).get("photometry")
    with open(out.path, newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"S0", "DSA J100012.0+295848"}
    new = rows["DSA J100012.0+295848"]
    assert abs(float(new["flux_jy"]) - 0.1) < 5 * float(new["err_jy"])
    stage = PhotometryStage({"output_dir": str(tmp_path / "out2"), "new_sources": None})
    with open(stage.execute(ctx).get("photometry").path, newline="") as fh:
        assert {r["name"] for r in csv.DictReader(fh)} == {"S0"}


def test_first_of_each_drops_later_repeats_only():
    from stages.photometry.positions import first_of_each

    arcsec = np.radians(1 / 3600)
    ra = np.radians(np.array([150.0, 150.0, 151.0, 150.0 + 5 / 3600, 151.0 + 30 / 3600]))
    dec = np.radians(np.array([30.0, 30.0, 30.0, 30.0, 30.0]))
    assert first_of_each(ra, dec, 10 * arcsec).tolist() == [True, False, True, False, True]
    assert first_of_each(ra[:1], dec[:1], 10 * arcsec).tolist() == [True]
