"""Issue 7 acceptance on synthetic images of the NVSS 3C454.3 field: a clean image is
accepted with the right numbers; deliberate faults are rejected for the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages.validation import ValidationStage
from stages.validation.finder_bdsf import bdsf_available

from .conftest import stage_context, write_case

_CACHE: dict[str, object] = {}


def _run(tmp_path_factory, nvss_csv: Path, name: str, finder: str = "auto", **case_kw):
    key = f"{name}-{finder}"
    if key not in _CACHE:
        folder = tmp_path_factory.mktemp(name)
        case = write_case(folder, nvss_csv, **case_kw)
        stage = ValidationStage({"reference_catalog": str(nvss_csv), "finder": finder,
                                 "output_dir": str(folder / "out")})
        ctx = stage_context(case, group=name)
        stage.validate(ctx)
        out = stage.execute(ctx)
        stage.validate_outputs(out)
        _CACHE[key] = (out, case)
    return _CACHE[key]


FINDERS = ["auto", "islands"]


@pytest.mark.parametrize("finder", FINDERS)
def test_clean_image_is_accepted(tmp_path_factory, nvss_csv, finder):
    out, case = _run(tmp_path_factory, nvss_csv, "clean", finder)
    ref = out.outputs["validation"]
    m = ref.meta["metrics"]
    expected = "pybdsf" if (finder == "auto" and bdsf_available()) else "islands"
    assert m["finder"] == expected
    assert ref.meta["verdict"] == "ACCEPT", ref.meta["reasons"]
    assert out.metadata["qa_verdict"] == "ACCEPT"
    assert out.metadata["not_for_science"] is False
    # completeness >= 95 % above 10 sigma, on enough sources to mean something
    assert m["completeness"]["n_above_10sigma"] >= 15
    assert m["completeness"]["above_10sigma"] >= 0.95
    # flux ratio 1.00 +- 0.03, and the bootstrap interval brackets it
    fs = m["flux_scale"]
    assert fs["n"] >= 15
    assert abs(fs["median_ratio"] - 1.0) <= 0.03
    assert fs["ci95_low"] <= fs["median_ratio"] <= fs["ci95_high"]
    assert fs["ci95_high"] - fs["ci95_low"] < 0.1
    # astrometric rms <= 1 arcsec; no systematic offset
    ast = m["astrometry"]
    assert ast["n"] >= 10
    assert ast["rms_arcsec"] <= 1.0
    assert abs(ast["median_dra_arcsec"]) < 0.5 and abs(ast["median_ddec_arcsec"]) < 0.5
    # noise measured near the injected rms, 1.15x the theoretical value
    assert m["noise"]["image_rms_jy"] == pytest.approx(2.5e-3, rel=0.05)
    assert m["noise"]["ratio"] == pytest.approx(1.15, rel=0.05)
    assert m["beam"]["bmaj_arcsec"] == pytest.approx(30.0)
    assert m["dynamic_range"] > 1000
    assert all(r["level"] == "ACCEPT" for r in ref.meta["reasons"])
    # products exist and agree
    doc = json.loads(Path(ref.meta["metrics_json"]).read_text())
    assert doc["verdict"] == "ACCEPT"
    assert doc["metrics"]["flux_scale"]["median_ratio"] == fs["median_ratio"]
    assert Path(ref.meta["sources_csv"]).is_file() and Path(ref.meta["sources_fits"]).is_file()


def _reasons(ref) -> dict[str, str]:
    return {r["metric"]: r["level"] for r in ref.meta["reasons"]}


def test_flux_scale_error_rejected_for_flux(tmp_path_factory, nvss_csv):
    out, _ = _run(tmp_path_factory, nvss_csv, "flux20", flux_scale=0.8)
    ref = out.outputs["validation"]
    lv = _reasons(ref)
    assert ref.meta["verdict"] == "REJECT"
    assert lv["flux_scale"] == "REJECT"
    assert lv["astrometry"] == "ACCEPT" and lv["noise"] == "ACCEPT"
    assert ref.meta["metrics"]["flux_scale"]["median_ratio"] == pytest.approx(0.8, abs=0.03)
    assert out.metadata["not_for_science"] is True


def test_position_shift_rejected_for_astrometry(tmp_path_factory, nvss_csv):
    out, _ = _run(tmp_path_factory, nvss_csv, "shift10", shift_arcsec=(6.0, 8.0))
    ref = out.outputs["validation"]
    lv = _reasons(ref)
    assert ref.meta["verdict"] == "REJECT"
    assert lv["astrometry"] == "REJECT"
    assert lv["flux_scale"] == "ACCEPT" and lv["completeness"] == "ACCEPT"
    ast = ref.meta["metrics"]["astrometry"]
    assert ast["rms_arcsec"] == pytest.approx(10.0, abs=1.0)
    assert ast["median_dra_arcsec"] == pytest.approx(6.0, abs=0.7)
    assert ast["median_ddec_arcsec"] == pytest.approx(8.0, abs=0.7)


def test_doubled_noise_rejected_for_noise(tmp_path_factory, nvss_csv):
    out, _ = _run(tmp_path_factory, nvss_csv, "noise2x", noise=5e-3)
    ref = out.outputs["validation"]
    lv = _reasons(ref)
    assert ref.meta["verdict"] == "REJECT"
    assert lv["noise"] == "REJECT"
    assert lv["flux_scale"] != "REJECT" and lv["astrometry"] != "REJECT"
    assert ref.meta["metrics"]["noise"]["ratio"] == pytest.approx(2.3, rel=0.05)


def test_noise_only_image_has_no_sources_above_6sigma(tmp_path_factory, nvss_csv):
    # (the island finder's noise-only case is in test_finder.py)
    out, _ = _run(tmp_path_factory, nvss_csv, "noiseonly", with_sources=False)
    ref = out.outputs["validation"]
    from stages.validation.sources import read_sources_fits

    src = read_sources_fits(ref.meta["sources_fits"])
    assert np.all(src.snr < 6.0)
    # every reference source expected in the field is missed: never an ACCEPT
    assert ref.meta["verdict"] == "REJECT"
    assert _reasons(ref)["completeness"] == "REJECT"
