"""Unit tests of the metric kernels, the cross-match and the verdict rules."""

from __future__ import annotations

import numpy as np
import pytest

from stages.validation.config import Thresholds
from stages.validation.crossmatch import crossmatch
from stages.validation.metrics import (
    astrometric_offsets,
    beam_summary,
    binned_fraction,
    dynamic_range,
    flux_scale,
    fraction_above,
    image_noise,
    theoretical_image_noise,
)
from stages.validation.verdict import Verdict, decide, not_validated, worst

ARCSEC = np.radians(1 / 3600)


def test_flux_scale_median_and_bootstrap_interval():
    rng = np.random.default_rng(3)
    ref = rng.uniform(0.05, 5, 400)
    meas = ref * 0.9 * (1 + rng.normal(0, 0.05, ref.size))
    fs = flux_scale(meas, ref, n_boot=1000, seed=1)
    assert fs.n == 400
    assert fs.median == pytest.approx(0.9, abs=0.01)
    assert fs.ci_low < 0.9 < fs.ci_high
    assert fs.ci_high - fs.ci_low < 0.02
    # bad pairs ignored; none at all -> NaN and n = 0
    fs2 = flux_scale(np.array([1.0, 2.0, np.nan]), np.array([1.0, 0.0, 1.0]))
    assert fs2.n == 1 and fs2.median == 1.0
    assert flux_scale(np.zeros(0), np.zeros(0)).n == 0
    with pytest.raises(ValueError):
        flux_scale(np.ones(2), np.ones(3))


def test_astrometric_offsets_counts_a_common_shift():
    dra = np.full(50, 3.0) * ARCSEC
    ddec = np.full(50, -4.0) * ARCSEC
    a = astrometric_offsets(dra, ddec)
    assert a.median_dra / ARCSEC == pytest.approx(3.0)
    assert a.median_ddec / ARCSEC == pytest.approx(-4.0)
    assert a.rms / ARCSEC == pytest.approx(5.0)
    assert a.rms_dra / ARCSEC == pytest.approx(3.0)
    assert astrometric_offsets(np.zeros(0), np.zeros(0)).n == 0


def test_completeness_bins_and_fraction_above():
    snr = np.array([3, 6, 6, 8, 12, 20, 50.0])
    found = np.array([0, 0, 1, 1, 1, 1, 1], bool)
    b = binned_fraction(snr, found, np.array([5, 10, 100.0]))
    assert b.total.tolist() == [3, 3]
    assert b.flagged.tolist() == [2, 3]
    assert b.fraction[0] == pytest.approx(2 / 3)
    assert fraction_above(snr, found, 10) == (1.0, 3)
    assert fraction_above(snr, found, 5) == (pytest.approx(5 / 6), 6)
    assert np.isnan(fraction_above(snr, found, 1000)[0])
    with pytest.raises(ValueError):
        binned_fraction(snr, found, np.array([5.0]))


def test_theoretical_noise_matches_radiometer_equation():
    # 96 antennas, 187.5 MHz, one 309 s file, two polarisations, nothing flagged:
    # SEFD / sqrt(2 * n_pol * n_bl * dnu * t)
    sefd, n, bw, t = 6500.0, 96, 187.5e6, 309.237648
    expected = sefd / np.sqrt(2 * 2 * (n * (n - 1) / 2) * bw * t)
    got = theoretical_image_noise(sefd, n, bw, t)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(2.0e-4, rel=0.05)  # ~0.2 mJy/beam
    assert theoretical_image_noise(sefd, n, bw, t, flagged_fraction=0.75) == pytest.approx(
        2 * expected)
    assert theoretical_image_noise(sefd, n, bw, t, weighting_factor=1.3) == pytest.approx(
        1.3 * expected)
    with pytest.raises(ValueError):
        theoretical_image_noise(sefd, n, bw, t, flagged_fraction=1.0)


def test_image_noise_is_robust_to_sources():
    rng = np.random.default_rng(0)
    pix = rng.normal(0, 2e-3, 200_000)
    pix[:500] += 1.0  # bright sources
    ns = image_noise(pix)
    assert ns.rms == pytest.approx(2e-3, rel=0.02)
    assert ns.std > 10 * ns.rms


def test_dynamic_range_and_beam():
    img = np.zeros((10, 10))
    img[3, 3] = 5.0
    assert dynamic_range(img, 0.01) == pytest.approx(500.0)
    assert np.isnan(dynamic_range(img, 0.0))
    b = beam_summary(30 * ARCSEC, 20 * ARCSEC, 45.0, 5 * ARCSEC)
    assert b["bmaj_arcsec"] == pytest.approx(30.0)
    assert b["pixels_per_bmin"] == pytest.approx(4.0)
    assert b["area_sr"] == pytest.approx(np.pi * 600 * ARCSEC**2 / (4 * np.log(2)))


def test_crossmatch_unique_nearest():
    dec0 = np.radians(60.0)
    ra_ref = np.radians([10.0, 10.01, 20.0])
    dec_ref = np.full(3, dec0)
    # two detections near ref 0 (5" and 2" away in RA*cos dec); one near ref 1; one far away
    off = np.array([5.0, 2.0, -3.0]) * ARCSEC / np.cos(dec0)
    ra_det = np.r_[ra_ref[0] + off[0], ra_ref[0] + off[1], ra_ref[1] + off[2], np.radians(30)]
    dec_det = np.r_[dec_ref[:2].repeat([2, 1]), dec0]
    m = crossmatch(ra_det, dec_det, ra_ref, dec_ref, 10 * ARCSEC)
    pairs = dict(zip(m.ref.tolist(), m.det.tolist()))
    assert pairs == {0: 1, 1: 2}  # ref 0 takes the nearer detection; each used once
    k = m.ref.tolist().index(0)
    assert m.dra[k] / ARCSEC == pytest.approx(2.0, abs=1e-6)
    assert m.ddec[k] == pytest.approx(0.0, abs=1e-12)
    assert m.sep[k] / ARCSEC == pytest.approx(2.0, rel=1e-6)
    assert len(crossmatch(ra_det, dec_det, ra_ref, dec_ref, 1 * ARCSEC)) == 0
    assert len(crossmatch(np.zeros(0), np.zeros(0), ra_ref, dec_ref, ARCSEC)) == 0
    # RA wrap-around at 0/2pi
    m2 = crossmatch(np.array([2 * np.pi - 1 * ARCSEC]), np.zeros(1), np.array([1 * ARCSEC]),
                    np.zeros(1), 5 * ARCSEC)
    assert len(m2) == 1 and m2.dra[0] / ARCSEC == pytest.approx(-2.0, abs=1e-6)


def test_verdict_rules():
    t = Thresholds()
    ok = dict(flux_ratio=1.02, n_flux=20, astrometric_rms_arcsec=0.8, n_astrometry=20,
              completeness=0.98, n_completeness=30, noise_ratio=1.1, thresholds=t)
    assert decide(**ok).verdict == Verdict.ACCEPT
    cases = {
        "flux_scale": ({"flux_ratio": 1.12}, {"flux_ratio": 0.84}),
        "astrometry": ({"astrometric_rms_arcsec": 3.0}, {"astrometric_rms_arcsec": 6.0}),
        "completeness": ({"completeness": 0.85}, {"completeness": 0.6}),
        "noise": ({"noise_ratio": 1.7}, {"noise_ratio": 2.2}),
    }
    for metric, (warn, reject) in cases.items():
        v = decide(**{**ok, **warn})
        assert v.verdict == Verdict.WARN and [r.metric for r in v.failing] == [metric]
        v = decide(**{**ok, **reject})
        assert v.verdict == Verdict.REJECT and [r.metric for r in v.failing] == [metric]
    # too few matches: never a silent ACCEPT
    v = decide(**{**ok, "n_flux": 1})
    assert v.verdict == Verdict.NOT_VALIDATED and v.failing[0].metric == "flux_scale"
    # a REJECT still wins over metrics that could not be judged
    assert decide(**{**ok, "n_flux": 0, "noise_ratio": 3.0}).verdict == Verdict.REJECT
    assert not_validated("x").verdict == Verdict.NOT_VALIDATED
    assert worst([Verdict.ACCEPT, Verdict.WARN]) == Verdict.WARN
    with pytest.raises(ValueError):
        Thresholds(noise_warn=3.0, noise_reject=2.0)


def test_reliability_gate_allows_for_small_counts():
    """1 - neg/pos from a handful of peaks is a count: 2 negative against 6 positive peaks
    (0.67) is WARN, not REJECT (1σ-optimistic: 1 - 0.71/6 = 0.88); the same fraction
    from 200 against 600 peaks is REJECT; Gehrels' limits against tabulated values."""
    from stages.validation.verdict import poisson_lower

    assert poisson_lower(0) == 0.0
    # Gehrels (1986) table 2, S = 1: 0.173, 0.708, 1.367, 6.891 (n = 1, 2, 3, 10)
    for n, want in ((1, 0.173), (2, 0.708), (3, 1.367), (10, 6.891)):
        assert poisson_lower(n) == pytest.approx(want, rel=0.02)
    t = Thresholds()
    ok = dict(flux_ratio=1.0, n_flux=20, astrometric_rms_arcsec=0.8, n_astrometry=20,
              completeness=0.98, n_completeness=30, noise_ratio=1.0, thresholds=t)
    few = decide(**ok, reliability=1 - 2 / 6, n_peaks=6, n_neg_peaks=2)
    assert few.verdict == Verdict.WARN and "88%" in few.failing[0].message
    many = decide(**ok, reliability=1 - 200 / 600, n_peaks=600, n_neg_peaks=200)
    assert many.verdict == Verdict.REJECT
    assert decide(**ok, reliability=0.1, n_peaks=10, n_neg_peaks=9).verdict == Verdict.REJECT


def test_reliability_gate_forgives_negatives_that_the_noise_explains():
    """One negative 5σ peak against eight positive (estimate 0.875) where Gaussian noise
    gives 1.2 per image is noise, not artefacts: ACCEPT. Five against 1.2 (P = 0.008), or
    the same one where noise gives 0.01, stays WARN; many stay REJECT."""
    from stages.validation.verdict import poisson_tail

    assert poisson_tail(0, 1.2) == 1.0
    assert poisson_tail(1, 1.2) == pytest.approx(1 - np.exp(-1.2))
    assert poisson_tail(5, 1.2) == pytest.approx(0.00775, rel=0.01)  # 1 - sum_{k<5}
    t = Thresholds()
    ok = dict(flux_ratio=1.0, n_flux=20, astrometric_rms_arcsec=0.8, n_astrometry=20,
              completeness=0.98, n_completeness=30, noise_ratio=1.0, thresholds=t)
    one = decide(**ok, reliability=1 - 1 / 8, n_peaks=8, n_neg_peaks=1, noise_peaks=1.2)
    assert one.verdict == Verdict.ACCEPT
    assert "Gaussian noise" in next(r.message for r in one.reasons if r.metric == "reliability")
    assert decide(**ok, reliability=1 - 1 / 8, n_peaks=8, n_neg_peaks=1,
                  noise_peaks=0.01).verdict == Verdict.WARN
    assert decide(**ok, reliability=1 - 5 / 40, n_peaks=40, n_neg_peaks=5,
                  noise_peaks=1.2).verdict == Verdict.WARN
    assert decide(**ok, reliability=0.1, n_peaks=100, n_neg_peaks=90,
                  noise_peaks=1.2).verdict == Verdict.REJECT
    off = Thresholds(reliability_noise_p=0.0)
    assert decide(**{**ok, "thresholds": off}, reliability=1 - 1 / 8, n_peaks=8,
                  n_neg_peaks=1, noise_peaks=1.2).verdict == Verdict.WARN
