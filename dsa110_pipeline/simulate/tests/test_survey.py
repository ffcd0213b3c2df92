"""The survey view of a simulated sky: blending, completeness, flux and position errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsa110_pipeline.catalogs import SourceCatalog, read_catalog
from dsa110_pipeline.simulate.survey import SurveyModel, blend, survey_view, write_survey_catalog

AS = math.pi / (180 * 3600)


def test_blend_merges_only_within_the_radius():
    dec0 = math.radians(40.0)
    ra = np.array([1.0, 1.0 + 20 * AS / math.cos(dec0), 1.0 + 200 * AS / math.cos(dec0)])
    dec = np.full(3, dec0)
    flux = np.array([3.0, 1.0, 2.0])
    rb, db, fb, group = blend(ra, dec, flux, 45 * AS)
    assert fb.size == 2 and group[0] == group[1] != group[2]
    k = group[0]
    assert fb[k] == pytest.approx(4.0)
    # flux-weighted: 5″ east of the brighter source (a quarter of the 20″)
    assert (rb[k] - ra[0]) * math.cos(dec0) / AS == pytest.approx(5.0, abs=0.01)
    assert db[k] == pytest.approx(dec0, abs=0.01 * AS)


def test_survey_view_errors_and_limit_are_nvss_like():
    rng = np.random.default_rng(3)
    n = 4000
    ra = rng.uniform(0, 0.5, n)
    dec = np.arcsin(rng.uniform(0.2, 0.6, n))
    flux = np.concatenate([np.full(n // 2, 0.2), np.full(n // 2, 1e-3)])  # bright, too faint
    sky = SourceCatalog.from_arrays(ra, dec, flux, spectral_index=-0.7, ref_freq_hz=1.4e9)
    m = SurveyModel()
    cat = survey_view(sky, np.random.default_rng(4), m)
    # faint sources (1 mJy, 3.3 sigma below the 2.5 mJy limit) are absent
    assert len(cat) < n // 2 + 5
    assert np.all(cat.spectral_index == -0.7) and np.all(cat.ref_freq_hz == 1.4e9)
    bright = (cat.flux_jy > 0.05) & (cat.flux_jy < 0.3)  # not the few blended pairs
    err = math.hypot(0.03 * 0.2, 0.45e-3)
    assert np.std(cat.flux_jy[bright]) == pytest.approx(err, rel=0.1)
    assert (cat.flux_jy > 0.3).sum() < 40
    assert np.median(cat.flux_jy[bright]) == pytest.approx(0.2, rel=0.01)


def test_survey_catalog_reads_back(tmp_path):
    sky = SourceCatalog.from_arrays(np.array([0.1, 0.2]), np.array([0.3, 0.4]),
                                    np.array([0.5, 0.01]), spectral_index=-1.0,
                                    ref_freq_hz=1.0e9)
    cat = survey_view(sky, np.random.default_rng(0))
    path = write_survey_catalog(cat, tmp_path / "survey_catalog.csv")
    back = read_catalog(path)
    assert len(back) == 2
    assert np.allclose(np.sort(back.flux_jy), np.sort(cat.flux_jy), rtol=1e-5)
    # 1.4 GHz fluxes of a spectral index -1 source given at 1 GHz
    assert back.flux_jy.max() == pytest.approx(0.5 / 1.4, rel=0.1)
    assert "spectral_index" not in path.read_text().splitlines()[0]
    # the position errors, as NVSS lists them: 1" bright, growing at low SNR
    order = np.argsort(cat.flux_jy)
    assert np.allclose(np.sort(back.pos_err), cat.pos_err[order][np.argsort(
        cat.pos_err[order])], atol=np.radians(0.01 / 3600))
    arcsec = np.degrees(back.pos_err[np.argsort(back.flux_jy)]) * 3600
    assert arcsec[1] == pytest.approx(1.0, abs=0.05)  # the 0.36 Jy source: the floor
    assert arcsec[0] == pytest.approx(math.hypot(1.0, 25.0 / (0.01 / 1.4 / 0.45e-3)),
                                      rel=0.3)
