"""Reference catalogs: NVSS-format files; the simulator's truth as a catalog (judges only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsa110_pipeline.errors import InputError
from dsa110_pipeline.simulate.truth import truth_catalog as read_truth_catalog
from stages.validation.reference import load_reference


def test_nvss_catalog(shared_data):
    cat = load_reference(shared_data / "catalogs/nvss_3c454_field_dsa110_forced_phot.csv")
    assert len(cat) == 170
    i = list(cat.name).index("J343.4904+16.1482")
    assert np.degrees(cat.ra[i]) == pytest.approx(343.49042)
    assert cat.flux_jy[i] == pytest.approx(12.6568)


def test_truth_variants_agree(tmp_path):
    ra, dec, flux = np.radians([10.0, 11.0]), np.radians([-5.0, 20.0]), np.array([1.0, 0.5])
    np.savez(tmp_path / "g.npz", source_ra=ra, source_dec=dec, source_flux_ref=flux,
             source_spectral_index=np.array([-0.7, 0.0]),
             source_ref_freq_hz=np.array([1.4e9, 1.4e9]), source_name=np.array(["a", "b"]))
    variants = {
        "cols.json": {"sources": {"ra_deg": [10.0, 11.0], "dec_deg": [-5.0, 20.0],
                                  "flux_jy": [1.0, 0.5], "spectral_index": [-0.7, 0.0]}},
        "rows.json": [{"name": "a", "ra": ra[0], "dec": dec[0], "flux_jy": 1.0,
                       "spectral_index": -0.7},
                      {"name": "b", "ra": ra[1], "dec": dec[1], "flux_jy": 0.5,
                       "spectral_index": 0.0}],
        "pointer.json": {"group": "g", "truth_npz": "g.npz"},
    }
    cats = [read_truth_catalog(tmp_path / "g.npz")]
    for name, doc in variants.items():
        (tmp_path / name).write_text(json.dumps(doc))
        cats.append(read_truth_catalog(tmp_path / name))
    (tmp_path / "g.json").write_text(json.dumps({"group": "g"}))  # sibling npz of same stem
    cats.append(read_truth_catalog(tmp_path / "g.json"))
    for c in cats:
        assert np.allclose(c.ra, ra) and np.allclose(c.dec, dec)
        assert np.allclose(c.flux_at(2.8e9), flux * np.array([2.0**-0.7, 1.0]))


def test_truth_errors_and_empty(tmp_path):
    (tmp_path / "empty.json").write_text(json.dumps({"sources": []}))
    assert len(read_truth_catalog(tmp_path / "empty.json")) == 0
    (tmp_path / "nothing.json").write_text(json.dumps({"group": "x"}))
    with pytest.raises(InputError, match="names no sources"):
        read_truth_catalog(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read truth JSON"):
        read_truth_catalog(tmp_path / "bad.json")
    with pytest.raises(InputError, match="does not exist"):
        read_truth_catalog(tmp_path / "absent.json")
