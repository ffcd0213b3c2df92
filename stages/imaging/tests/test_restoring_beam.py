"""A PSF whose main lobe is a ridge (one snapshot of an east-west array): a clear input error,
or a fixed restoring beam (``imaging.restoring_beam``, WSClean's -beam-shape)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from stages.imaging import ImagingStage
from stages.imaging.beam import Beam, BeamFitError, fit_beam, gaussian_image
from stages.imaging.tests._ms import write_test_ms
from stages.imaging.tests._sim import point_source_vis, uvw_tracks

RA, DEC = np.radians(150.0), np.radians(37.2)
CELL = np.radians(10 / 3600)
SIGMA = 0.05  # Jy per visibility component
#: BMAJ/BMIN arcsec, BPA deg: the E-W resolution across the ridge, a long axis along it
FIXED = (300.0, 30.0, 0.0)


def test_fit_beam_rejects_a_ridge():
    """A PSF constant along one axis, or far longer than the fit window: BeamFitError."""
    ny = nx = 256
    x = (np.arange(nx) - nx // 2)[None, :]
    ridge = np.broadcast_to(np.exp(-0.5 * (x / 1.5) ** 2), (ny, nx)).copy()
    with pytest.raises(BeamFitError, match="ridge"):
        fit_beam(ridge, CELL)
    long = gaussian_image((ny, nx), CELL, Beam(400 * CELL, 3 * CELL, 0.0))
    with pytest.raises(BeamFitError, match="ridge"):
        fit_beam(long, CELL)
    # an ordinary elongated beam still fits
    fit = fit_beam(gaussian_image((ny, nx), CELL, Beam(40 * CELL, 3 * CELL, 30.0)), CELL)
    assert fit.bmaj == pytest.approx(40 * CELL, rel=1e-3) and fit.bpa == pytest.approx(30.0)


@pytest.fixture(scope="module")
def snapshot_ms(tmp_path_factory):
    """One integration at transit of a 24-antenna east-west line (2 m north-south scatter),
    a 1 Jy source at the phase centre, thermal noise. Returns (MS path, Stokes-I weighted
    mean of the visibilities)."""
    rng = np.random.default_rng(3)
    n = 24
    enu = np.stack([np.linspace(-600, 600, n) + rng.normal(0, 5, n), rng.normal(0, 2, n),
                    np.zeros(n)], axis=1)
    uvw = uvw_tracks(enu, DEC, np.array([0.0]))
    i, j = np.triu_indices(n, 1)
    freq = np.linspace(1.31e9, 1.49e9, 16)
    vis = point_source_vis(uvw, freq, [(1.0, 0.0, 0.0)])
    data = np.stack([vis, vis], axis=2)
    data = data + rng.normal(0, SIGMA, data.shape) + 1j * rng.normal(0, SIGMA, data.shape)
    weight = rng.uniform(0.5, 1.5, data.shape[:2])[:, :, None] / SIGMA**2
    weight = np.repeat(weight, 2, axis=2).astype(np.float32)
    ms = write_test_ms(tmp_path_factory.mktemp("snap") / "snapshot.ms", uvw=uvw, freq=freq,
                       data=data.astype(np.complex64), ant1=i, ant2=j,
                       time=np.full(len(i), 5.2e9), ra=RA, dec=DEC, enu=enu, weight=weight)
    stokes_i = 0.5 * (data[..., 0] + data[..., 1]).astype(np.complex64)
    w = weight[..., 0].astype(np.float64)
    return ms, float(np.sum(w * stokes_i.real) / np.sum(w))


def _stage(tmp_path, **kw):
    cfg = dict(npix=256, cell_arcsec=10.0, clean=dict(niter=500), nthreads=2, weighting="natural",
               output_dir=str(tmp_path), memory_limit_gb=2.0, pb_drift=False)
    return ImagingStage({**cfg, **kw})


def _ctx(ms):
    return PipelineContext(inputs={"ms": ProductRef(kind="ms", path=str(ms))})


def test_ridge_psf_is_an_input_error_naming_stage_and_ms(snapshot_ms, tmp_path):
    ms, _ = snapshot_ms
    with pytest.raises(InputError) as err:
        _stage(tmp_path).execute(_ctx(ms))
    e = err.value
    assert e.stage == "imaging" and e.files == (str(ms),)
    assert "restoring_beam" in str(e) and "ridge" in str(e) and "\n" not in str(e)
    assert not list(tmp_path.glob("*.fits"))


def _image(ctx) -> tuple[fits.Header, np.ndarray]:
    refs = {r.meta["role"]: r for r in ctx.outputs["images"]}
    with fits.open(refs["image"].path) as h:
        return h[0].header, h[0].data[0, 0]


def _assert_beam(hdr: fits.Header) -> None:
    assert hdr["BMAJ"] * 3600 == pytest.approx(FIXED[0])
    assert hdr["BMIN"] * 3600 == pytest.approx(FIXED[1])
    assert hdr["BPA"] == pytest.approx(FIXED[2])


def test_fixed_restoring_beam_images_a_single_snapshot(snapshot_ms, tmp_path):
    """The restored peak equals the weighted mean of the visibilities (the source is at the
    phase centre) within 1 %, and the products carry the configured beam."""
    ms, wmean = snapshot_ms
    ctx = _stage(tmp_path, restoring_beam=FIXED).execute(_ctx(ms))
    hdr, img = _image(ctx)
    _assert_beam(hdr)
    assert np.unravel_index(int(img.argmax()), img.shape) == (128, 128)
    assert abs(float(img.max()) / wmean - 1) < 0.01, (float(img.max()), wmean)
    m = ctx.metrics["imaging"]
    assert m["restoring_beam"] == "fixed" and m["bmaj_arcsec"] == pytest.approx(FIXED[0])


def test_fixed_restoring_beam_reaches_wsclean(snapshot_ms, tmp_path):
    """The WSClean backend passes the beam as -beam-shape. (WSClean's own CLEAN diverges on
    this ridge PSF, so only the beam is checked.)"""
    if shutil.which("wsclean") is None:
        pytest.skip("wsclean is not installed")
    ms, _ = snapshot_ms
    ctx = _stage(tmp_path, restoring_beam=FIXED, backend="wsclean",
                 clean=dict(niter=10)).execute(_ctx(ms))
    _assert_beam(_image(ctx)[0])
    log = ctx.metrics["imaging"]["wsclean_log"]
    assert "-beam-shape 300 30 0 " in Path(log).read_text().splitlines()[0]


def test_restoring_beam_config_is_checked():
    with pytest.raises(ValueError, match="restoring_beam"):
        ImagingStage({"restoring_beam": [10.0, 20.0, 0.0]})  # bmin > bmaj
    with pytest.raises(ValueError, match="restoring_beam"):
        ImagingStage({"restoring_beam": [10.0, 0.0, 0.0]})
    assert ImagingStage({"restoring_beam": [20, 10, 45]}).fixed_beam() == \
        Beam.from_arcsec(20.0, 10.0, 45.0)
