import numpy as np

from stages.calibration.delays import fit_delays


def test_fit_delays_recovers_injected_delays():
    rng = np.random.default_rng(2)
    freqs = 1.31e9 + 244e3 * np.arange(768)
    tau = rng.normal(0, 20e-9, (5, 2))
    phi = rng.uniform(-3, 3, (5, 2))
    g = np.exp(1j * (phi[..., None] + 2 * np.pi * tau[..., None] * (freqs - freqs[0])))
    g = g * (1 + 0.05 * rng.standard_normal(g.shape))
    flags = np.zeros(g.shape, bool)
    flags[..., 100:140] = True
    g[..., 100:140] = 0
    t_fit, p_fit = fit_delays(g, flags, freqs)
    np.testing.assert_allclose(t_fit, tau, atol=0.02e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (p_fit - phi))), 0, atol=0.02)
