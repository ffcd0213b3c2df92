"""Sky model from the source counts, and the corruption kernels, against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.simulate.corruptions import corrupt, draw_bandpasses, draw_gains, rfi_power
from dsa110_pipeline.simulate.sky import (
    box_area_deg2,
    draw_fluxes,
    flux_for_density,
    integral_counts,
    random_sky,
)


def test_counts_inverse_and_slope():
    for s in (3e-3, 0.05, 0.9, 2.0, 20.0):
        assert flux_for_density(float(integral_counts(s))) == pytest.approx(s, rel=1e-9)
    assert integral_counts(2.5e-3) == pytest.approx(53.0)
    # the bright anchor: 3CRR, 173 sources above ~2.3 Jy (1.4 GHz) on 4.24 sr
    assert integral_counts(2.3) == pytest.approx(173 / (4.24 * (180 / np.pi) ** 2), rel=0.05)
    fl = draw_fluxes(np.random.default_rng(0), 40000, 0.01)
    assert fl.min() >= 0.01
    frac = (fl > 0.02).mean()
    assert frac == pytest.approx(2 ** -0.85, abs=0.01)


def test_random_sky_box_and_density():
    rng = np.random.default_rng(1)
    ra0, ra1, d0, d1 = 5.8, 6.0, 0.2, 0.35
    cat = random_sky(rng, 300, ra0, ra1, d0, d1)
    assert len(cat) == 300
    assert np.all((cat.ra >= ra0) & (cat.ra <= ra1) & (cat.dec >= d0) & (cat.dec <= d1))
    # the flux floor gives the requested number of sources in the box
    s_min = cat.flux_jy.min()
    assert integral_counts(s_min) * box_area_deg2(ra0, ra1, d0, d1) == pytest.approx(300, rel=0.05)
    assert np.mean(cat.spectral_index) == pytest.approx(-0.7, abs=0.05)


def test_gains_and_bandpass_shapes_and_smoothness():
    rng = np.random.default_rng(2)
    t = np.arange(24) * 12.9
    g = draw_gains(rng, 5, 2, t)
    assert g.shape == (24, 5, 2)
    # slowly varying: phase changes by < 0.1 rad over one integration
    assert np.abs(np.angle(g[1:] / g[:-1])).max() < 0.1
    f = 1.4e9 + np.arange(64) * 244e3
    b = draw_bandpasses(rng, 5, 2, f)
    assert b.shape == (5, 64, 2)
    assert np.all(np.abs(np.abs(b) - 1) < 0.5)


def test_rfi_power_lines_and_mask():
    f = 1.39e9 + np.arange(100) * 244140.625
    p = rfi_power(np.random.default_rng(3), f, 10, (1.395e9, 1.405e9), bursts_per_file=0)
    on = (p > 0).any(axis=0)
    assert on[np.argmin(np.abs(f - 1.395e9))] and on[np.argmin(np.abs(f - 1.405e9))]
    far = np.abs(f - 1.40e9) < 1e6  # between the lines
    assert not on[far].any()


def test_corrupt_matches_numpy():
    rng = np.random.default_rng(4)
    nblt, nch, npol, nant, nt = 30, 5, 2, 4, 3
    model = (rng.standard_normal((nblt, nch)) + 1j * rng.standard_normal((nblt, nch))
             ).astype(np.complex64)
    tidx = rng.integers(0, nt, nblt)
    a1 = rng.integers(0, nant, nblt)
    a2 = rng.integers(0, nant, nblt)
    a2[:5] = a1[:5]  # some autos
    g = (rng.standard_normal((nt, nant, npol)) + 1j).astype(np.complex64)
    bp = (1 + 0.1j * rng.standard_normal((nant, nch, npol))).astype(np.complex64)
    rp = rng.uniform(0, 3, (nt, nch))
    ph = rng.uniform(-np.pi, np.pi, nant)
    noise = rng.standard_normal((nblt, nch, npol, 2)).astype(np.float32)
    out = np.empty((nblt, nch, npol), np.complex64)
    corrupt(model, tidx, a1, a2, g, bp, rp, ph, noise, 100.0, out)
    auto = (a1 == a2)[:, None, None]
    sky = model[:, :, None] + (rp[tidx] * np.exp(1j * (ph[a1] - ph[a2]))[:, None])[:, :, None]
    n = noise[..., 0] + 1j * noise[..., 1]
    x = np.where(auto, sky.real + 100.0 + np.sqrt(2) * noise[..., 0], sky + n)
    gi = g[tidx, a1][:, None, :] * bp[a1]
    gj = g[tidx, a2][:, None, :] * bp[a2]
    np.testing.assert_allclose(out, gi * x * np.conj(gj), rtol=1e-4, atol=1e-3)
