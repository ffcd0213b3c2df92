"""The science core's visibility predict (``dsa110_pipeline.dft``), checked against an
independent implementation: WSClean's ``-predict`` of a model image with off-centre point
sources into the same Measurement Set. The simulator, the calibration solver and the
imager all predict with that kernel, so a sign or convention error in it would cancel in
every test against the simulator's truth; here it cannot."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from casacore import tables

from dsa110_pipeline.dft import predict_visibilities_drift
from stages.imaging.tests._ms import write_test_ms
from stages.imaging.tests.test_ms_reader import CELL, DEC, _obs

#: (row offset north, column offset, Jy/pixel) of the model's point sources (columns run
#: west: a negative column offset is east)
SOURCES = ((10, -20, 1.0), (-15, 7, 0.5), (3, 25, 2.0), (-22, -9, 0.75))


@pytest.mark.wsclean
@pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed")
def test_predict_agrees_with_wsclean_predict(tmp_path):
    from astropy.io import fits

    obs = _obs(with_autos=False)
    ms = write_test_ms(tmp_path / "p.ms", uvw=obs["uvw"], freq=obs["freq"],
                       data=np.zeros_like(obs["data"]), ant1=obs["ant1"], ant2=obs["ant2"],
                       time=obs["time"], ra=1.0, dec=DEC, enu=obs["enu"])
    name = tmp_path / "ws"
    grid = ["-size", "128", "128", "-scale", "5asec"]
    subprocess.run(["wsclean", "-quiet", *grid, "-niter", "0", "-name", str(name),
                    "-no-update-model-required", "-data-column", "DATA", "-no-reorder",
                    str(ms)], check=True, capture_output=True)
    with fits.open(f"{name}-dirty.fits") as h:
        hdr, data = h[0].header, np.zeros_like(h[0].data)
    for dr, dc, s in SOURCES:
        data[0, 0, 64 + dr, 64 + dc] = s
    fits.writeto(f"{name}-model.fits", data, hdr, overwrite=True)
    subprocess.run(["wsclean", "-quiet", "-predict", *grid, "-name", str(name), "-no-reorder",
                    # ducc0's gridder at 1e-6, on the full grid: WSClean's default predicts on
                    # a Nyquist-sized grid ("small inversion"), good to ~1 % at 20 pixels out
                    "-use-wgridder", "-wgridder-accuracy", "1e-6", "-no-small-inversion",
                    str(ms)], check=True, capture_output=True)
    with tables.table(str(ms), ack=False) as t:
        theirs = t.getcol("MODEL_DATA")[:, :, 0]
        uvw = t.getcol("UVW")
        time = t.getcol("TIME")
    # the pixels' direction cosines (SIN: pixel offsets are l, m; l grows to the east)
    l = np.array([-dc * CELL for _, dc, _ in SOURCES])  # noqa: E741
    m = np.array([dr * CELL for dr, _, _ in SOURCES])
    lmn = np.stack([l, m, np.sqrt(1 - l * l - m * m)], axis=-1)[None]
    flux = np.array([s for _, _, s in SOURCES])[None, :, None] * np.ones(obs["freq"].size)
    ours = predict_visibilities_drift(uvw, np.zeros(len(time), np.int64), obs["freq"], lmn,
                                      flux, sign=1, unprojected=False, precision="double")
    total = sum(s for _, _, s in SOURCES)
    err = np.abs(ours - theirs) / total
    assert np.abs(theirs).max() > 0.5 * total  # WSClean did predict the model
    assert err.max() < 1e-5, err.max()
    # and the conjugate (a flipped sign or a transposed axis) is far off
    assert np.abs(np.conj(ours) - theirs).max() / total > 0.1
