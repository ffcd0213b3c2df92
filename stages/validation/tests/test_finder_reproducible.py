"""The island finder gives the same catalog, bit for bit, on the same image: called twice,
called from two threads at once, and on a copy of the image at another memory alignment
(issue 20: 9-17 of 2199 sources were reported to differ between calls)."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from stages.validation.finder import find_sources
from stages.validation.image_io import read_fits_image

from ._synth import gaussian_stamp, make_image, write_fits

CENTRE = (150.0, 30.0)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """A 512^2 image with point sources, close pairs (blended islands) and extended,
    elongated blobs (complex islands measured by windowed fits and moments)."""
    rng = np.random.default_rng(5)
    n, k = 500, 120
    r = 0.55 * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec = CENTRE[1] + r * np.sin(phi)
    ra = CENTRE[0] + r * np.cos(phi) / np.cos(np.radians(dec))
    flux = 1e-3 * 10 ** rng.uniform(0.7, 2.5, n)
    i = rng.integers(0, n, k)
    sep, ang = rng.uniform(15, 45, k) / 3600, rng.uniform(0, 2 * np.pi, k)
    dec2 = dec[i] + sep * np.sin(ang)
    ra2 = ra[i] + sep * np.cos(ang) / np.cos(np.radians(dec2))
    s = make_image(np.r_[ra, ra2], np.r_[dec, dec2], np.r_[flux, flux[i] * 0.6],
                   centre=CENTRE, npix=512, cell_arcsec=8.0, noise_rms=1e-3, seed=3,
                   apply_pb=False)
    yy, xx = np.mgrid[0:512, 0:512]
    for _ in range(40):
        x0, y0 = rng.uniform(10, 502, 2)
        blob = gaussian_stamp(xx - x0, yy - y0, rng.uniform(2, 25), rng.uniform(1.5, 4),
                              rng.uniform(0, np.pi))
        s.data += (rng.uniform(3e-3, 3e-2) * blob).astype(np.float32)
    return read_fits_image(write_fits(tmp_path_factory.mktemp("crowd") / "crowded.fits",
                                      s.data, s))


def _catalog(image) -> dict[str, np.ndarray]:
    src = find_sources(image, method="islands", rms_box_beams=30).sources
    return {f.name: np.asarray(getattr(src, f.name)) for f in dataclasses.fields(src)
            if f.name != "finder"}


def _assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_finder_is_reproducible(crowded):
    first = _catalog(crowded)
    assert len(first["x"]) > 400 and {"gaussian", "moments", "point"} <= set(first["fit"])
    _assert_identical(first, _catalog(crowded))
    with ThreadPoolExecutor(2) as pool:  # as the runner's thread executor may run it
        for other in pool.map(_catalog, [crowded, crowded]):
            _assert_identical(first, other)
    data = crowded.data
    buf = np.empty(data.nbytes + 64, np.uint8)
    start = (-buf.ctypes.data) % 64 + 4  # 4 bytes past a 64-byte boundary
    moved = buf[start:start + data.nbytes].view(np.float32).reshape(data.shape)
    moved[...] = data
    _assert_identical(first, _catalog(dataclasses.replace(crowded, data=moved)))


def test_library_default_finder_is_the_pipelines(tmp_path):
    """Issue 20: the non-reproducible catalogs came from a library user's run, where
    ValidationConfig's default was "auto" (PyBDSF) while config/default.yaml says
    "islands". The library default is now the pipeline's, the tested deterministic one."""
    import yaml

    from stages.validation.config import ValidationConfig

    root = Path(__file__).resolve().parents[3]
    default = yaml.safe_load((root / "config" / "default.yaml").read_text())
    assert ValidationConfig().finder == default["validation"]["finder"] == "islands"


_BDSF_SCRIPT = """
import dataclasses, pickle, sys
import numpy as np
from stages.validation.finder import find_sources
from stages.validation.image_io import read_fits_image
src = find_sources(read_fits_image(sys.argv[1]), method="bdsf", rms_box_beams=30).sources
pickle.dump({f.name: np.asarray(getattr(src, f.name)) for f in dataclasses.fields(src)
             if f.name != "finder"}, open(sys.argv[2], "wb"))
"""


@pytest.mark.slow
def test_pybdsf_catalog_is_reproducible_in_and_across_processes(crowded, tmp_path):
    """PyBDSF on the crowded image: twice in one process and once in another process
    give the same catalog (the issue's 9-17 differing sources are not reproduced here)."""
    import pickle
    import subprocess
    import sys

    from stages.validation.finder_bdsf import bdsf_available

    if not bdsf_available():
        pytest.skip("bdsf is not installed")

    def cat():
        src = find_sources(crowded, method="bdsf", rms_box_beams=30).sources
        return {f.name: np.asarray(getattr(src, f.name)) for f in dataclasses.fields(src)
                if f.name != "finder"}

    first = cat()
    assert len(first["x"]) > 300
    _assert_identical(first, cat())
    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "other.pkl"
    subprocess.run([sys.executable, "-c", _BDSF_SCRIPT, str(crowded.path), str(out)],
                   cwd=root, check=True, timeout=300)
    with open(out, "rb") as fh:
        _assert_identical(first, pickle.load(fh))
