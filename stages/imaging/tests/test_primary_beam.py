import numpy as np
import pytest

from dsa110_pipeline.instrument import airy_beam, primary_beam_fwhm
from stages.imaging.primary_beam import pb_correct, pb_image


def test_pb_image_matches_airy_beam_on_the_grid():
    cell = np.radians(60 / 3600)
    freqs = np.array([1.32e9, 1.40e9, 1.49e9])
    fw = np.array([1.0, 2.0, 1.0])
    pb = pb_image(128, 96, cell, freqs, fw)
    assert pb.shape == (128, 96)
    assert pb[64, 48] == pytest.approx(1.0)
    # pixel (row 64+10, col 48-30): l = 30 cells east, m = 10 cells north
    theta = np.arcsin(np.hypot(30 * cell, 10 * cell))
    expect = np.sum(fw * airy_beam(theta, freqs)) / fw.sum()
    assert pb[74, 18] == pytest.approx(expect, rel=1e-4)
    assert pb[54, 78] == pytest.approx(expect, rel=1e-4)  # symmetric


def test_half_power_at_half_fwhm():
    f = 1.4e9
    cell = np.radians(10 / 3600)
    pb = pb_image(2048, 2048, cell, np.array([f]))
    half = primary_beam_fwhm(f) / 2 / cell
    prof = pb[1024, 1024:]
    assert np.interp(0.5, prof[::-1], np.arange(len(prof))[::-1]) == pytest.approx(half, rel=2e-3)


def test_pb_correct_cuts_and_divides():
    img = np.full((4, 4), 2.0, np.float32)
    pb = np.array([[1.0, 0.5, 0.2, 0.05]] * 4, np.float32)
    out = pb_correct(img, pb, cut=0.2)
    np.testing.assert_allclose(out[0, :3], [2.0, 4.0, 10.0])
    assert np.isnan(out[:, 3]).all()
    with pytest.raises(ValueError, match="cut"):
        pb_correct(img, pb, cut=0.0)
