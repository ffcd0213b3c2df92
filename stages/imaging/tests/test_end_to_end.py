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
from stages.imaging.peaks import gaussian_peak

simulate = pytest.importorskip("dsa110_pipeline.simulate")
conversion = pytest.importorskip("stages.conversion.stage")


def _simulate_and_convert(cfg, out) -> tuple[PipelineContext, dict]:
    """Simulate one group and convert it to an MS under ``out``: (context, truth)."""
    group = simulate.simulate_observation(cfg).groups[0]
    ctx = PipelineContext(inputs={"subband_files": [ProductRef(kind="uvh5", path=str(f))
                                                    for f in group.files]})
    ctx = conversion.ConversionStage({"output_dir": str(out / "ms"), "scratch_dir": None,
                                      "expected_subbands": list(range(cfg.n_subbands))}
                                     ).execute(ctx)
    return ctx, simulate.read_truth(group.truth_npz)


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    from stages.imaging import ImagingStage

    out = tmp_path_factory.mktemp("e2e")
    cfg = simulate.SimulationConfig(out_dir=out / "sim", n_antennas=40, n_subbands=2,
                                    n_channels=4, n_sources=5, noise=False, rfi=False,
                                    gains=False, bandpass=False, beam=True, dead_antennas=0,
                                    nthreads=2, field_radius_deg=0.5, jitter_s=0, seed=3)
    ctx, truth = _simulate_and_convert(cfg, out)
    ctx = ImagingStage({"column": "DATA", "npix": 1536, "cell_arcsec": 6.0,
                        "clean": {"niter": 3000, "auto_threshold": 1.0}, "nthreads": 2,
                        "output_dir": str(out / "img"),
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
        _, py, px = gaussian_peak(img, yi, xi, half=4)
        # sub-pixel peak interpolation is itself good to ~0.2 pixel
        assert np.hypot(px - x, py - y) < max(0.1 * beam_pix, 0.3), (ra, dec)
        # the acceptance's measure: the peak flux after PB correction, within 2 %
        peak = gaussian_peak(pbcor, yi, xi, half=4)[0]
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


@pytest.mark.slow
def test_calibrated_group_fluxes_and_positions(tmp_path):
    """A calibrated group: gains, bandpass, noise, RFI and dead antennas injected; calibrated
    on 3C454.3 (9.6 Jy) by the calibration stage; CORRECTED_DATA imaged at Briggs 0 with the
    beam sampled by ~3.5 pixels. The calibrator and the field sources (SNR 300-6000) inside the
    primary beam have positions within 0.1 of the beam and PB-corrected peaks (a Gaussian
    through the 3x3 pixels at the brightest) within 2 % of the truth, 1 % on average. Seen:
    -1.8 % to +1.2 %, mean -0.6 %. The remaining spread is CLEAN's: a point source between
    pixel centres is split over its neighbours, and the restored peak is lower by up to ~2 %
    where it lies half a pixel off (see stages/imaging/README.md)."""
    from stages.calibration import CalibrationStage
    from stages.imaging import ImagingStage

    cat = tmp_path / "field.csv"
    rows = [(343.49 + dra, 16.148 + ddec, s) for dra, ddec, s in
            ((0.45, 0.2, 1.0), (-0.35, -0.3, 0.8), (0.2, -0.5, 0.6), (-0.55, 0.35, 0.7))]
    cat.write_text("name,ra_deg,dec_deg,flux_jy\n" + "".join(
        f"F{i},{ra},{dec},{s}\n" for i, (ra, dec, s) in enumerate(rows)))
    cfg = simulate.SimulationConfig(out_dir=tmp_path / "sim", n_antennas=40, n_subbands=2,
                                    n_channels=8, catalog=cat, calibrator="3C454.3",
                                    jitter_s=0, nthreads=2, seed=11)
    ctx, truth = _simulate_and_convert(cfg, tmp_path)
    cal = CalibrationStage({"output_dir": str(tmp_path / "cal"), "field_catalog": str(cat),
                            "nthreads": 2}).execute(ctx)
    ctx = PipelineContext(inputs={"ms": cal.outputs["ms_calibrated"]})
    ctx = ImagingStage({"column": "CORRECTED_DATA", "npix": 2048, "cell_arcsec": 3.0,
                        "clean": {"niter": 3000, "auto_threshold": 2.0}, "nthreads": 2,
                        "output_dir": str(tmp_path / "img")}).execute(ctx)
    refs = {r.meta["role"]: r.path for r in ctx.outputs["images"]}
    hdr = fits.getheader(refs["image"])
    pbcor = fits.getdata(refs["pbcor"])[0, 0].astype(np.float64)
    pb = fits.getdata(refs["pb"])[0, 0]
    resid = fits.getdata(refs["residual"])[0, 0]
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    w = WCS(hdr).celestial
    beam_pix = np.sqrt(hdr["BMAJ"] * hdr["BMIN"]) / abs(hdr["CDELT1"])
    intrinsic = truth["source_flux"].mean(axis=1)
    ratios, snrs = [], []
    for ra, dec, flux in zip(truth["source_ra"], truth["source_dec"], intrinsic):
        x, y = (float(v) for v in w.all_world2pix(np.degrees(ra), np.degrees(dec), 0))
        xi, yi = int(round(x)), int(round(y))
        assert 8 <= xi < pb.shape[1] - 8 and 8 <= yi < pb.shape[0] - 8 and pb[yi, xi] > 0.5
        peak, py, px = gaussian_peak(pbcor, yi, xi, half=4)
        assert np.hypot(px - x, py - y) < 0.1 * beam_pix, (ra, dec)
        ratios.append(peak / flux)
        snrs.append(flux * pb[yi, xi] / noise)
    print("peak/truth:", np.round(ratios, 4), "SNR:", np.round(snrs), "beam", round(beam_pix, 1))
    assert len(ratios) == 5 and min(snrs) > 50
    np.testing.assert_allclose(ratios, 1.0, atol=0.02)
    assert abs(np.mean(ratios) - 1) < 0.01
