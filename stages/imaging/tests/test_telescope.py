"""FITS products name the MS's telescope and use its dish diameter for the primary beam;
where no Airy beam fits the dishes there is no pb/pbcor image, and a note says why."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.instrument import SPEED_OF_LIGHT
from stages.imaging import ImagingStage
from stages.imaging.primary_beam import pb_image
from stages.imaging.telescope import TelescopeInfo, beam_diameter, pb_header_cards
from stages.imaging.tests._ms import write_test_ms
from stages.imaging.tests._sim import pixel_to_lm, point_source_vis, t_layout, uvw_tracks
from stages.validation import ValidationStage
from stages.validation.stage import pick_images

RA, DEC = np.radians(150.0), np.radians(37.2)
NPIX, CELL_AS = 128, 20.0
CELL = np.radians(CELL_AS / 3600)
FREQ = np.linspace(1.40e9, 1.42e9, 4)
#: (row, col, apparent flux Jy)
SOURCES = [(64, 64, 1.0), (80, 50, 0.5), (50, 76, 0.4)]


def test_beam_diameter():
    assert beam_diameter(np.full(5, 6.1)) == (6.1, "")
    assert beam_diameter(np.array([25.0, 25.0, 25.1]))[0] == pytest.approx(25.0)
    d, note = beam_diameter(np.array([25.0, 12.0, 25.0]))
    assert d is None and "differ (12 to 25 m)" in note
    d, note = beam_diameter(np.array([6.1, 0.0, np.nan]))
    assert d is None and "2 of 3 antennas have no DISH_DIAMETER" in note
    assert beam_diameter(np.array([]))[0] is None
    assert pb_header_cards(TelescopeInfo("ATA", 6.1))["PBDIAM"][0] == 6.1
    cards = pb_header_cards(TelescopeInfo("X", None, "why"))
    assert cards["PBMODEL"][0] == "NONE" and cards["PBNOTE"][0] == "why"


def _ms(path, telescope: str, diameters) -> str:
    enu = t_layout(12, 8, 4, seed=2) * 0.2
    na = len(enu)
    ha = np.linspace(-0.01, 0.01, 3)
    uvw = uvw_tracks(enu, DEC, ha)
    i, j = np.triu_indices(na, 1)
    vis = point_source_vis(uvw, FREQ, [(f, *pixel_to_lm(r, c, NPIX, CELL))
                                       for r, c, f in SOURCES])
    data = np.stack([vis, vis], axis=2).astype(np.complex64)
    write_test_ms(path, uvw=uvw, freq=FREQ, data=data, ant1=np.tile(i, 3), ant2=np.tile(j, 3),
                  time=np.repeat(5.2e9 + 10.0 * np.arange(3), len(i)), ra=RA, dec=DEC,
                  enu=enu, telescope=telescope, dish_diameter=np.asarray(diameters, float))
    return str(path)


def _run(ms: str, tmp_path) -> PipelineContext:
    stage = ImagingStage(dict(npix=NPIX, cell_arcsec=CELL_AS, clean=dict(niter=300), nthreads=2,
                              output_dir=str(tmp_path / "img"), memory_limit_gb=2.0,
                              pb_drift=False))
    ctx = PipelineContext(inputs={"ms": ProductRef(kind="ms", path=ms)})
    return stage.execute(ctx)


def test_vla_ms_gets_its_name_and_a_25m_beam(tmp_path):
    ms = _ms(tmp_path / "vla.ms", "VLA", np.full(24, 25.0))
    ctx = _run(ms, tmp_path)
    refs = {r.meta["role"]: r for r in ctx.outputs["images"]}
    assert sorted(refs) == sorted(["image", "residual", "model", "psf", "pb", "pbcor"])
    for r in refs.values():
        h = fits.getheader(r.path)
        assert h["TELESCOP"] == "VLA" and h["INSTRUME"] == "VLA"
        assert h["PBMODEL"] == "AIRY" and h["PBDIAM"] == 25.0
    pb = fits.getdata(refs["pb"].path)[0, 0]
    np.testing.assert_allclose(pb, pb_image(NPIX, NPIX, CELL, FREQ, diameter=25.0), rtol=1e-3)
    # 0.3 deg from the centre a 25 m dish sees ~0.6 where DSA-110's 4.65 m sees ~0.97
    r = int(round(np.radians(0.3) / CELL))
    assert pb[64 + r, 64] < 0.7 < 0.95 < pb_image(NPIX, NPIX, CELL, FREQ)[64 + r, 64]
    m = ctx.metrics["imaging"]
    assert m["telescope"] == "VLA" and m["dish_diameter_m"] == 25.0 and m["pb_note"] is None


def test_heterogeneous_dishes_give_no_pb_and_say_so(tmp_path):
    """No pb/pbcor image; the image says why (PBMODEL/PBNOTE), so do the metrics; the
    validation stage runs on the products and uses no primary beam."""
    ms = _ms(tmp_path / "mixed.ms", "MIXED", np.r_[np.full(12, 25.0), np.full(12, 12.0)])
    ctx = _run(ms, tmp_path)
    refs = {r.meta["role"]: r for r in ctx.outputs["images"]}
    assert sorted(refs) == sorted(["image", "residual", "model", "psf"])
    assert not list((tmp_path / "img").glob("*pb*.fits"))
    h = fits.getheader(refs["image"].path)
    assert h["TELESCOP"] == "MIXED" and h["PBMODEL"] == "NONE"
    assert "differ (12 to 25 m)" in h["PBNOTE"]
    assert "differ" in ctx.metrics["imaging"]["pb_note"]
    assert ctx.metrics["imaging"]["dish_diameter_m"] is None
    picked = pick_images(ctx.outputs["images"])
    assert "image" in picked and "pb" not in picked and "pbcor" not in picked
    cat = tmp_path / "ref.csv"
    rows = []
    for r, c, f in SOURCES:
        lm = pixel_to_lm(r, c, NPIX, CELL)
        dec = DEC + lm[1]
        rows.append(f"S{r},{np.degrees(RA - lm[0] / np.cos(DEC))},{np.degrees(dec)},{f}\n")
    cat.write_text("name,ra_deg,dec_deg,flux_jy\n" + "".join(rows))
    val = ValidationStage(dict(reference_catalog=str(cat), output_dir=str(tmp_path / "val")))
    out = val.execute(ctx.with_output("images", ctx.outputs["images"]))
    metrics = out.outputs["validation"].meta["metrics"]
    assert metrics["primary_beam"].startswith("none (dish diameters differ")


def test_frequency_scale_of_the_test():
    """The 25 m beam's FWHM at 1.41 GHz is ~0.5 deg (so 0.3 deg is well down the beam)."""
    fwhm = np.degrees(1.02 * SPEED_OF_LIGHT / FREQ.mean() / 25.0)
    assert 0.45 < fwhm < 0.55
