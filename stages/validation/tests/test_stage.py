"""ValidationStage wiring: reference kinds, primary-beam sources, bad inputs (clear errors or
an explicit NOT_VALIDATED, never a silent ACCEPT), timing rows and the night summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef, ProvenanceRecord
from dsa110_pipeline.errors import InputError
from stages.validation import ValidationStage, write_night_summary
from stages.validation.report import timing_rows

from ._synth import FREQ, make_image, theoretical_for, write_fits

CENTRE = (150.0, 30.0)
NOISE = 1e-3


def _sky(n: int = 40, seed: int = 4):
    """Random sources within 0.45 deg of the centre, 12-300 sigma at 1.4 GHz."""
    rng = np.random.default_rng(seed)
    r = 0.45 * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec = CENTRE[1] + r * np.sin(phi)
    ra = CENTRE[0] + r * np.cos(phi) / np.cos(np.radians(dec))
    flux = NOISE * np.geomspace(12, 300, n)
    return ra, dec, flux


def _flux_at_image(flux14: np.ndarray) -> np.ndarray:
    return flux14 * (FREQ / 1.4e9) ** -0.7


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("stagecase")
    ra, dec, flux = _sky()
    s = make_image(ra, dec, _flux_at_image(flux), centre=CENTRE, npix=512, noise_rms=NOISE,
                   seed=9)
    img = write_fits(d / "image.fits", s.data, s)
    pb = write_fits(d / "pb.fits", s.pb, s, beam=False)
    pbcor = write_fits(d / "pbcor.fits", (s.data / s.pb).astype(np.float32), s)
    nobeam = write_fits(d / "nobeam.fits", s.data, s, beam=False)
    csv = d / "cat.csv"
    csv.write_text("name,ra_deg,dec_deg,flux_jy\n" + "".join(
        f"S{i},{a:.8f},{b:.8f},{f:.8g}\n" for i, (a, b, f) in enumerate(zip(ra, dec, flux))))
    empty = d / "empty.csv"
    empty.write_text("name,ra_deg,dec_deg,flux_jy\n")
    meta = theoretical_for(NOISE, 1.1)
    return {"dir": d, "image": img, "pb": pb, "pbcor": pbcor, "nobeam": nobeam, "csv": csv,
            "empty": empty, "meta": meta}


def _ctx(case, roles: dict[str, str], group: str = "2026-01-25T12:00:00") -> PipelineContext:
    refs = [ProductRef.for_path("fits", case[key], role=role,
                                **(case["meta"] if role == "image" else {}))
            for role, key in roles.items()]
    return PipelineContext(group_id=group, inputs={"images": refs})


def _run(case, tmp_path, roles=None, finder="islands", **cfg):
    stage = ValidationStage({"output_dir": str(tmp_path), "finder": finder, **cfg})
    ctx = _ctx(case, roles or {"image": "image", "pb": "pb"})
    stage.validate(ctx)
    out = stage.execute(ctx)
    stage.validate_outputs(out)
    return out, out.outputs["validation"]


def test_catalog_reference_accepts_a_clean_image(case, tmp_path):
    out, ref = _run(case, tmp_path, reference_catalog=str(case["csv"]))
    m = ref.meta["metrics"]
    assert ref.meta["verdict"] == "ACCEPT", ref.meta["reasons"]
    assert m["n_reference_in_field"] == 40
    assert m["completeness"]["value"] == 1.0
    assert m["flux_scale"]["median_ratio"] == pytest.approx(1.0, abs=0.03)
    assert m["astrometry"]["rms_arcsec"] < 1.0
    assert m["noise"]["ratio"] == pytest.approx(1.1, rel=0.06)
    assert out.metrics["validation"]["verdict"] == "ACCEPT"
    assert ref.kind == "html" and ref.checksum
    assert Path(ref.path).name == "2026-01-25T12_00_00_validation.html"


@pytest.mark.parametrize("roles,source", [
    ({"image": "image", "pbcor": "pbcor"}, "image / pbcor"),
    ({"image": "image"}, "Airy model"),
])
def test_primary_beam_from_pbcor_or_model(case, tmp_path, roles, source):
    _, ref = _run(case, tmp_path, roles=roles, reference_catalog=str(case["csv"]))
    m = ref.meta["metrics"]
    assert m["primary_beam"] == source
    assert ref.meta["verdict"] == "ACCEPT", ref.meta["reasons"]
    assert m["flux_scale"]["median_ratio"] == pytest.approx(1.0, abs=0.03)


def test_flat_primary_beam_shows_the_attenuation(case, tmp_path):
    # without PB correction the fluxes stay apparent: low by the beam at the sources
    # (0.93-1.0 within 0.45 deg of the centre at 1.405 GHz)
    _, ref = _run(case, tmp_path, roles={"image": "image"}, reference_catalog=str(case["csv"]),
                  pb_model="none")
    assert ref.meta["metrics"]["primary_beam"] == "none (flat)"
    assert 0.93 < ref.meta["metrics"]["flux_scale"]["median_ratio"] < 0.975


def test_missing_image_is_a_clear_error(case, tmp_path):
    ghost = tmp_path / "ghost.fits"
    ctx = PipelineContext(inputs={"images": [ProductRef(kind="fits", path=str(ghost),
                                                        meta={"role": "image"})]})
    stage = ValidationStage({"output_dir": str(tmp_path), "reference_catalog": str(case["csv"])})
    with pytest.raises(InputError, match="missing file") as err:
        stage.validate(ctx)
    assert str(ghost) in str(err.value)


def test_no_restored_image_among_inputs_is_an_error(case, tmp_path):
    stage = ValidationStage({"output_dir": str(tmp_path)})
    ctx = _ctx(case, {"pb": "pb", "pbcor": "pbcor"})
    with pytest.raises(InputError, match="no restored image"):
        stage.validate(ctx)


def test_corrupt_image_is_a_clear_error(case, tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"SIMPLE  = this is not a FITS file")
    stage = ValidationStage({"output_dir": str(tmp_path), "reference_catalog": str(case["csv"])})
    ctx = PipelineContext(inputs={"images": [ProductRef.for_path("fits", bad, role="image")]})
    with pytest.raises(InputError, match="cannot read FITS") as err:
        stage.execute(ctx)
    assert err.value.stage == "validation" and str(bad) in str(err.value)


@pytest.mark.parametrize("what", ["nobeam", "empty", "noref"])
def test_not_validated_outcomes(case, tmp_path, what):
    roles = {"image": "nobeam" if what == "nobeam" else "image", "pb": "pb"}
    cfg = {} if what == "noref" else {
        "reference_catalog": str(case["empty" if what == "empty" else "csv"])}
    out, ref = _run(case, tmp_path, roles=roles, **cfg)
    assert ref.meta["verdict"] == "NOT_VALIDATED"
    assert out.metadata["qa_verdict"] == "NOT_VALIDATED"
    first = ref.meta["reasons"][0]
    assert first["level"] == "NOT_VALIDATED"
    expect = {"nobeam": "no restoring beam", "empty": "is empty",
              "noref": "no reference catalog"}[what]
    assert expect in first["message"]
    html = Path(ref.path).read_text()
    assert "NOT_VALIDATED" in html and expect in html
    doc = json.loads(Path(ref.meta["metrics_json"]).read_text())
    assert doc["verdict"] == "NOT_VALIDATED"


def test_timing_rows_from_metrics_and_provenance():
    prov = ProvenanceRecord(stage="imaging", stage_version="1", config_hash="x",
                            pipeline_version="0", started=100.0, finished=142.5)
    rows = timing_rows({"imaging": {"peak_rss_mb": 900.0, "cpu_user_s": 80.0},
                        "conversion": {"wall_s": 12.0}}, [prov])
    by = {r["stage"]: r for r in rows}
    assert by["imaging"]["wall_s"] == pytest.approx(42.5)
    assert by["imaging"]["peak_rss_mb"] == 900.0
    assert by["conversion"]["wall_s"] == 12.0


def test_night_summary_links_reports_with_verdicts(tmp_path):
    reports = []
    for g in ("g1", "g2", "g3"):
        p = tmp_path / "groups" / f"{g}.html"
        p.parent.mkdir(exist_ok=True)
        p.write_text("<html></html>")
        reports.append(p)
    path = write_night_summary(tmp_path / "night.html", [
        ("g1", "ACCEPT", reports[0]), ("g2", "REJECT", reports[1]),
        ("g3", "NOT_VALIDATED", reports[2])])
    html = path.read_text()
    links = re.findall(r'href="([^"]+)"', html)
    assert links == ["groups/g1.html", "groups/g2.html", "groups/g3.html"]
    assert all((tmp_path / link).is_file() for link in links)
    assert "ACCEPT: 1" in html and "REJECT: 1" in html and "NOT_VALIDATED: 1" in html
    rows = re.findall(r"<tr><td>(g\d)</td><td class='thumb'></td><td><span[^>]*>(\w+)</span>",
                      html)
    assert rows == [("g1", "ACCEPT"), ("g2", "REJECT"), ("g3", "NOT_VALIDATED")]


def test_config_branch_defaults_follow_the_issue():
    from dsa110_pipeline.config import config_model

    model = config_model({"validation": "stages.validation:ValidationStage"})
    cfg = model().validation
    t = cfg.thresholds
    assert (t.flux_scale_warn, t.flux_scale_reject) == (0.10, 0.15)
    assert (t.astrometry_warn_arcsec, t.astrometry_reject_arcsec) == (2.5, 5.0)
    assert (t.completeness_warn, t.completeness_reject) == (0.90, 0.70)
    assert (t.noise_warn, t.noise_reject) == (1.5, 2.0)
    with pytest.raises(ValueError):
        model(validation={"thresholds": {"noise_wran": 1.0}})


def test_runs_under_the_runner_after_an_imaging_stage(case, tmp_path):
    from dsa110_pipeline.runner import Runner
    from dsa110_pipeline.stage import FunctionStage

    def fake_imaging(ctx: PipelineContext) -> PipelineContext:
        refs = [ProductRef.for_path("fits", case["image"], role="image", **case["meta"]),
                ProductRef.for_path("fits", case["pb"], role="pb")]
        return ctx.with_output("images", refs)

    imaging = FunctionStage(fake_imaging, name="imaging", produces=["images"])
    validation = ValidationStage({"output_dir": str(tmp_path), "finder": "islands",
                                  "reference_catalog": str(case["csv"])})
    result = Runner([imaging, validation]).run(PipelineContext(group_id="night-g1"))
    assert result.ok, result.records
    ref = result.context.outputs["validation"]
    assert ref.meta["verdict"] == "ACCEPT"
    assert result.context.metadata["qa_verdict"] == "ACCEPT"
    html = Path(ref.path).read_text()
    timing = html.split('<section id="timing">')[1].split("</section>")[0]
    assert "<td>imaging</td>" in timing
    # the context (with the report's metrics in meta) serialises for the cache / state DB
    back = PipelineContext.from_json(result.context.to_json())
    assert back.outputs["validation"].meta["metrics"] == json.loads(
        json.dumps(ref.meta["metrics"]))
