"""Reliability from the image's sign: kernels, and the verdict on an under-cleaned image.

The under-cleaned image is the clean synthetic image plus, around its brightest sources,
the uncleaned part of their flux seen through the sidelobes of a real synthesized beam
(the FFT of a T-shaped array's uv coverage, as DSA-110's), which is what a CLEAN stopped
early leaves. Its catalog is mostly sidelobes; the QA must say WARN or REJECT, and its
estimate must track the truth (which positive peaks are real sources).
"""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef
from stages.validation import ValidationStage
from stages.validation.metrics.reliability import (
    artefact_metrics,
    local_peaks,
    sign_reliability,
)

from ._synth import FWHM_PER_SIGMA, make_image, theoretical_for, write_fits

CENTRE = (150.0, 30.0)
NOISE = 1e-3
NPIX, CELL = 512, 8.0


def test_noise_alone_has_no_5_sigma_peaks_and_a_balanced_sign():
    rng = np.random.default_rng(0)
    snr = rng.standard_normal((512, 512)).astype(np.float32)
    valid = np.ones(snr.shape, bool)
    pos = local_peaks(snr, valid, 3.0, 3.0)
    neg = local_peaks(-snr, valid, 3.0, 3.0)
    # independent pixels: P(>3σ) = 1.35e-3 of 262144 ≈ 354, a few merged by the window
    assert 250 < pos.above(3.0) < 400 and 250 < neg.above(3.0) < 400
    assert pos.above(5.0) == neg.above(5.0) == 0
    rel = sign_reliability(pos, neg, levels=(3.0, 5.0))
    assert rel.estimate(3.0) == pytest.approx(max(0.0, 1 - neg.above(3) / pos.above(3)))
    assert abs(rel.estimate(3.0)) < 0.2  # noise: as many negative as positive peaks
    assert rel.estimate(5.0) is None


def test_one_peak_per_beam():
    yy, xx = np.mgrid[0:64, 0:64]
    img = 10 * np.exp(-0.5 * ((xx - 30) ** 2 + (yy - 20) ** 2) / 2.0 ** 2)
    p = local_peaks(img, np.ones(img.shape, bool), 5.0, 5.0)
    assert p.above(5.0) == 1 and (p.x[0], p.y[0]) == (30.0, 20.0)


def _t_array_pattern(beam_px: float, phase_errors: bool) -> np.ndarray:
    """On the image grid, centred at (NPIX/2, NPIX/2), peak 1: the snapshot beam of a
    T-shaped array with its main lobe removed (what an uncleaned source leaves: ridges along
    the arms, mostly positive), or with ``phase_errors`` the error beam of antenna phase
    errors (the image of i (phi_i - phi_j): odd, positive and negative lobes alike)."""
    rng = np.random.default_rng(5)
    ew = np.stack([rng.uniform(-1, 1, 47), np.zeros(47)], 1)
    ns = np.stack([np.zeros(35), rng.uniform(-1, 0.2, 35)], 1)
    ant = np.concatenate([ew, ns])
    phi = rng.normal(0, 0.1, len(ant))
    i, j = np.nonzero(~np.eye(len(ant), dtype=bool))
    uv = ant[i] - ant[j]
    w = 1j * (phi[i] - phi[j]) if phase_errors else np.ones(len(i), complex)
    # longest baseline at ~1/(2.2 beam) cycles per pixel
    scale = 1.0 / (2.2 * beam_px) / np.abs(uv).max()
    grid = np.zeros((NPIX, NPIX), complex)
    iu = np.round(uv[:, 0] * scale * NPIX).astype(int) % NPIX
    iv = np.round(uv[:, 1] * scale * NPIX).astype(int) % NPIX
    np.add.at(grid, (iv, iu), w)
    pat = np.fft.fftshift(np.real(np.fft.ifft2(grid)))
    if not phase_errors:
        yy, xx = np.mgrid[0:NPIX, 0:NPIX]
        pat[np.hypot(xx - NPIX // 2, yy - NPIX // 2) < 2 * beam_px] = 0.0
    return pat / np.abs(pat).max()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("reliability")
    rng = np.random.default_rng(11)
    n = 30
    r = 0.45 * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    dec = CENTRE[1] + r * np.sin(phi)
    ra = CENTRE[0] + r * np.cos(phi) / np.cos(np.radians(dec))
    flux = NOISE * np.geomspace(12, 300, n)
    flux[:3] = [2.0, 1.2, 0.8]  # bright sources whose sidelobes remain
    s = make_image(ra, dec, flux, centre=CENTRE, npix=NPIX, cell_arcsec=CELL, noise_rms=NOISE,
                   beam=(30.0, 30.0, 0.0), seed=3)
    x0, y0 = s.wcs.all_world2pix(ra[:3], dec[:3], 0)
    bad = {}
    for kind, frac in (("phase", 0.05), ("ridges", 0.1)):
        pat = _t_array_pattern(30.0 / CELL, phase_errors=kind == "phase")
        dirty = s.data.copy()
        for xs, ys, f in zip(x0, y0, flux[:3]):
            # a few % of the flux in calibration-error lobes, or 10 % left uncleaned
            dirty += frac * f * np.roll(np.roll(pat, int(round(ys)) - NPIX // 2, 0),
                                        int(round(xs)) - NPIX // 2, 1)
        bad[kind] = write_fits(d / f"{kind}.fits", dirty, s)
    # a source outside the image subtracted too faintly: a column of positive blobs (its
    # sidelobe ridge along the north-south arm), far from the bright sources, none negative
    stripe = s.data.copy()
    yy, xx = np.mgrid[0:NPIX, 0:NPIX]
    sig = 30.0 / CELL / FWHM_PER_SIGMA
    for k, yk in enumerate(range(70, 450, 32)):
        stripe += NOISE * (7.0 + k % 3) * np.exp(-0.5 * ((xx - 0.3 * NPIX) ** 2
                                                         + (yy - yk) ** 2) / sig ** 2)
    bad["stripe"] = write_fits(d / "stripe.fits", stripe.astype(np.float32), s)
    csv = d / "cat.csv"
    csv.write_text("name,ra_deg,dec_deg,flux_jy\n" + "".join(
        f"S{i},{a:.8f},{b:.8f},{f / (s.freq / 1.4e9) ** -0.7:.8g}\n"
        for i, (a, b, f) in enumerate(zip(ra, dec, flux))))
    return {"clean": write_fits(d / "clean.fits", s.data, s),
            "phase": bad["phase"], "ridges": bad["ridges"], "stripe": bad["stripe"],
            "pb": write_fits(d / "pb.fits", s.pb, s, beam=False), "csv": csv,
            "wcs": s.wcs, "ra": ra, "dec": dec}


def _validate(images, key, tmp_path):
    stage = ValidationStage({"output_dir": str(tmp_path), "finder": "islands",
                             "reference_catalog": str(images["csv"])})
    refs = [ProductRef.for_path("fits", images[key], role="image",
                                **theoretical_for(NOISE, 1.0)),
            ProductRef.for_path("fits", images["pb"], role="pb")]
    out = stage.execute(PipelineContext(group_id=key, inputs={"images": refs}))
    return out.outputs["validation"].meta


def _truth_reliability(images, meta, level):
    peaks = meta["metrics"]["sign_reliability"]["peaks"]
    sel = np.asarray(peaks["snr"]) >= level
    px, py = np.asarray(peaks["x"])[sel], np.asarray(peaks["y"])[sel]
    tx, ty = images["wcs"].all_world2pix(images["ra"], images["dec"], 0)
    d = np.hypot(px[:, None] - tx[None], py[:, None] - ty[None])
    return float((d.min(axis=1) <= 30.0 / CELL).mean())


def test_clean_image_is_reliable(images, tmp_path):
    meta = _validate(images, "clean", tmp_path)
    sign = meta["metrics"]["sign_reliability"]
    assert sign["estimate"]["5sigma"] >= 0.95
    assert _truth_reliability(images, meta, 5.0) >= 0.95
    assert meta["verdict"] == "ACCEPT", meta["reasons"]


def test_calibration_error_lobes_are_not_accepted(images, tmp_path):
    meta = _validate(images, "phase", tmp_path)
    m = meta["metrics"]
    est = m["sign_reliability"]["estimate"]["5sigma"]
    truth = _truth_reliability(images, meta, 5.0)
    assert truth < 0.7  # most peaks are error lobes
    assert est == pytest.approx(truth, abs=0.15)  # 28 peaks: one is 0.036
    assert meta["verdict"] in ("WARN", "REJECT")
    rel = next(r for r in meta["reasons"] if r["metric"] == "reliability")
    assert rel["level"] in ("WARN", "REJECT") and "negative" in rel["message"]
    assert m["artefacts"]["most_negative_over_peak"] < -0.01


def test_under_cleaned_ridges_are_not_accepted(images, tmp_path):
    # uncleaned flux leaves the beam's positive ridges: few negative peaks, so the sign
    # estimate misses them; the rms around the bright sources does not
    meta = _validate(images, "ridges", tmp_path)
    m = meta["metrics"]
    assert _truth_reliability(images, meta, 5.0) < 0.7
    assert m["artefacts"]["worst_annulus_rms_ratio"] > 3.0
    assert meta["verdict"] in ("WARN", "REJECT")
    art = next(r for r in meta["reasons"] if r["metric"] == "artefacts")
    assert art["level"] in ("WARN", "REJECT")


def test_positive_only_artefacts_are_caught_against_the_survey(images, tmp_path):
    # a positive stripe leaves the negative image clean: the sign says 100 %; the survey,
    # complete far below the stripe's peaks, lists none of them
    meta = _validate(images, "stripe", tmp_path)
    m = meta["metrics"]
    truth = _truth_reliability(images, meta, 5.0)
    assert truth < 0.8
    assert m["sign_reliability"]["estimate"]["5sigma"] == 1.0
    surv = m["reliability"]["survey"]
    assert surv["n_unlisted"] >= 10
    assert m["reliability_estimate"] == surv["value"]
    assert m["reliability_estimate"] == pytest.approx(truth, abs=0.1)
    assert meta["verdict"] in ("WARN", "REJECT")
    r = next(r for r in meta["reasons"] if r["metric"] == "survey_reliability")
    assert r["level"] in ("WARN", "REJECT") and "not" in r["message"]
    # and the clean image's survey check passes: every listable detection is listed
    clean = _validate(images, "clean", tmp_path / "c")["metrics"]
    assert clean["reliability"]["survey"]["n_unlisted"] == 0


def test_artefact_metrics_on_a_clean_field():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((256, 256)).astype(np.float32)
    img[100, 100] = 100.0
    pos = local_peaks(img, np.ones(img.shape, bool), 5.0, 3.0)
    art = artefact_metrics(img, np.ones(img.shape, bool), pos, img[pos.y.astype(int),
                                                                      pos.x.astype(int)], 3.0)
    assert art.annulus_ratio[0] == pytest.approx(1.0, abs=0.15)
    assert art.far_rms_jy == pytest.approx(1.0, abs=0.05)
    assert -0.06 < art.neg_to_peak < -0.03
    assert FWHM_PER_SIGMA > 2  # (the synthetic helper's constant is shared)
