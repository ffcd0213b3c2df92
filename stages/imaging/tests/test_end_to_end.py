"""Simulator -> conversion stage -> imaging stage: positions and fluxes against the truth.

This checks the whole chain of conventions (UVH5 -> MS conjugation and uvw sign, the
gridder orientation, the WCS) on data made by the project's own simulator.
"""

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_pipeline.context import PipelineContext, ProductRef
from stages.imaging.beam import Beam, gaussian_image

simulate = pytest.importorskip("dsa110_pipeline.simulate")
conversion = pytest.importorskip("stages.conversion.stage")


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    from stages.imaging import ImagingStage

    out = tmp_path_factory.mktemp("e2e")
    cfg = simulate.SimulationConfig(out_dir=out / "sim", n_antennas=40, n_subbands=2,
                                    n_channels=4, n_sources=5, noise=False, rfi=False,
                                    gains=False, bandpass=False, beam=True, dead_antennas=0,
                                    nthreads=2, field_radius_deg=0.5, jitter_s=0, seed=3)
    group = simulate.simulate_observation(cfg).groups[0]
    truth = simulate.read_truth(group.truth_npz)
    ctx = PipelineContext(inputs={"subband_files": [ProductRef(kind="uvh5", path=str(f))
                                                    for f in group.files]})
    ctx = conversion.ConversionStage({"output_dir": str(out / "ms"),
                                      "scratch_dir": None}).execute(ctx)
    ctx = ImagingStage({"column": "DATA", "npix": 1536, "cell_arcsec": 6.0, "niter": 3000,
                        "auto_threshold": 1.0, "nthreads": 2, "output_dir": str(out / "img"),
                        "weighting": "natural"}).execute(ctx)
    return ctx, truth


def test_sources_at_their_true_positions_with_their_fluxes(imaged):
    ctx, truth = imaged
    refs = {r.meta["role"]: r.path for r in ctx.outputs["images"]}
    hdr = fits.getheader(refs["image"])
    img = fits.getdata(refs["image"])[0, 0]
    pbcor = fits.getdata(refs["pbcor"])[0, 0]
    w = WCS(hdr).celestial
    beam = Beam(np.radians(hdr["BMAJ"]), np.radians(hdr["BMIN"]), hdr["BPA"])
    cell = np.radians(abs(hdr["CDELT1"]))
    beam_pix = np.sqrt(beam.bmaj * beam.bmin) / cell
    intrinsic = truth["source_flux"].mean(axis=1)
    checked = 0
    for ra, dec, flux in zip(truth["source_ra"], truth["source_dec"], intrinsic):
        x, y = (float(v) for v in w.all_world2pix(np.degrees(ra), np.degrees(dec), 0))
        xi, yi = int(round(x)), int(round(y))
        if not (8 <= xi < img.shape[1] - 8 and 8 <= yi < img.shape[0] - 8) or flux < 0.05:
            continue
        win = img[yi - 4:yi + 5, xi - 4:xi + 5]
        r, c = np.unravel_index(np.argmax(win), win.shape)
        yy, xx = win[r - 1:r + 2, c], win[r, c - 1:c + 2]
        py = yi - 4 + r + 0.5 * (yy[0] - yy[2]) / (yy[0] - 2 * yy[1] + yy[2])
        px = xi - 4 + c + 0.5 * (xx[0] - xx[2]) / (xx[0] - 2 * xx[1] + xx[2])
        # sub-pixel peak interpolation is itself good to ~0.2 pixel
        assert np.hypot(px - x, py - y) < max(0.1 * beam_pix, 0.3), (ra, dec)
        # the acceptance's measure: the peak flux after PB correction, within 2 %
        pw = pbcor[yi - 4:yi + 5, xi - 4:xi + 5]
        yy, xx = pw[r - 1:r + 2, c], pw[r, c - 1:c + 2]
        peak = pw[r, c] - 0.125 * ((yy[0] - yy[2]) ** 2 / (yy[0] - 2 * yy[1] + yy[2])
                                   + (xx[0] - xx[2]) ** 2 / (xx[0] - 2 * xx[1] + xx[2]))
        assert peak == pytest.approx(flux, rel=0.02), (ra, dec)
        # forced photometry at the true position with the restoring beam
        g = _beam_at(img.shape, cell, beam, x, y)[yi - 8:yi + 9, xi - 8:xi + 9]
        cut = pbcor[yi - 8:yi + 9, xi - 8:xi + 9]
        fitted = float(np.sum(cut * g) / np.sum(g * g))
        assert fitted == pytest.approx(flux, rel=0.02), (ra, dec)
        print(f"source {flux:.4f} Jy: peak {peak / flux:.4f}, beam fit {fitted / flux:.4f}")
        checked += 1
    assert checked >= 3


def _beam_at(shape, cell, beam, x, y):
    """The restoring beam (peak 1) centred on the fractional pixel (x, y)."""
    ny, nx = shape
    g = gaussian_image((ny, nx), cell, beam)  # centred on (ny//2, nx//2)
    from scipy.ndimage import shift

    return shift(g, (y - ny // 2, x - nx // 2), order=3)
