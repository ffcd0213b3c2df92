"""Variability statistics against light curves whose answer is known."""

from __future__ import annotations

import numpy as np

from stages.lightcurves.variability import dip_sigma, eta, modulation, statistics, two_epoch


def test_steady_sources_have_eta_near_one_and_v_near_err_over_flux():
    rng = np.random.default_rng(1)
    s = 10.0 + rng.normal(0, 0.5, (4000, 12))
    e = np.full_like(s, 0.5)
    assert abs(np.mean(eta(s, e)) - 1.0) < 0.02
    assert abs(np.median(modulation(s)) - 0.05) < 0.003


def test_eta_of_a_step_is_its_chi2():
    s = np.array([[1.0, 1.0, 3.0, 3.0]])
    e = np.ones_like(s)
    # weighted mean 2, chi2 = 4 x 1, over n - 1 = 3
    assert np.isclose(eta(s, e)[0], 4.0 / 3.0)
    vs, m = two_epoch(s, e)
    assert np.isclose(vs[0], 2 / np.sqrt(2)) and np.isclose(m[0], 1.0)


def test_missing_epochs_are_ignored():
    s = np.array([[1.0, np.nan, 3.0, np.nan]])
    e = np.array([[1.0, np.nan, 1.0, np.nan]])
    assert np.isclose(eta(s, e)[0], 2.0)
    assert np.isclose(modulation(s)[0], np.std([1.0, 3.0], ddof=1) / 2.0)


def test_a_dip_is_found_where_it_is_and_noise_gives_no_dip():
    rng = np.random.default_rng(2)
    n = 3000
    s = 10.0 + rng.normal(0, 1.0, (n, 14))
    e = np.ones_like(s)
    quiet = dip_sigma(s, e, 3)
    s[0, 5:8] -= 4.0  # a 4 sigma dip over 3 epochs: ~ 4 sqrt(3) sigma for the run
    loud = dip_sigma(s, e, 3)
    assert loud[0] > 4.5  # expected 4 / sqrt(1/3 + 1/11) = 6.2, less its noise
    assert np.mean(quiet > 4.0) < 0.01  # the false-alarm tail of noise alone
    st = statistics(s[:2], e[:2], 3)
    assert set(st) == {"n", "mean_flux", "eta", "eta_logp", "v", "vs_max", "m", "dip_sigma"}
    assert st["n"].tolist() == [14, 14]


def test_an_empty_store_has_empty_statistics():
    st = statistics(np.zeros((0, 5)), np.zeros((0, 5)), 3)
    assert all(len(v) == 0 for v in st.values())
    st = statistics(np.zeros((3, 0)), np.zeros((3, 0)), 3)
    assert st["n"].tolist() == [0, 0, 0] and np.isnan(st["eta"]).all()


def test_eta_significance_is_the_chi2_tail_for_any_length():
    from scipy.stats import chi2

    from stages.lightcurves.variability import eta_significance

    rng = np.random.default_rng(7)
    for n in (3, 10, 40):
        s = 1.0 + rng.normal(0, 0.1, (20000, n))
        logp = eta_significance(eta(s, np.full_like(s, 0.1)), np.full(20000, n))
        # steady sources: 10^-2 of them beyond 2, whatever the number of epochs
        assert abs(np.mean(logp > 2) - 0.01) < 0.003, n
    assert np.isclose(eta_significance(np.array([3.0]), np.array([5]))[0],
                      -np.log10(chi2.sf(12.0, 4)))
