"""The light-curve stage's figures, with and without data."""

from __future__ import annotations

import numpy as np

from stages.lightcurves.plots import eta_v_plot, light_curve_plot


def test_the_eta_v_plot_with_data_and_without(tmp_path):
    rng = np.random.default_rng(0)
    eta, v = rng.lognormal(0, 1, 50), rng.lognormal(-3, 1, 50)
    assert eta_v_plot(tmp_path / "a.png", eta, v, eta > 5, None, 0.05).stat().st_size > 1000
    empty = np.full(4, np.nan)  # a night whose groups were all left out
    assert eta_v_plot(tmp_path / "b.png", empty, empty, np.zeros(4, bool), None, 0.05).exists()
    assert light_curve_plot(tmp_path / "c.png", "S", np.array([1.0, 2.0]),
                            np.array([0.01, 0.02]), np.array([0.001, 0.001])).exists()
