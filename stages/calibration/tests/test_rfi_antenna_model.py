import numpy as np

from stages.calibration.rfi_antenna_model import antenna_amplitude_factors


def test_antenna_model_absorbs_antenna_gains():
    """The fitted factors undo |g_p||g_q| exactly on noiseless, antenna-based amplitudes."""
    rng = np.random.default_rng(1)
    n_ant, nt, nc = 7, 3, 5
    a1, a2 = np.triu_indices(n_ant, 1)
    g = rng.uniform(0.5, 2.0, (nt, n_ant, nc, 2))
    vis = (300.0 * g[:, a1] * g[:, a2] * np.exp(1j * rng.uniform(0, 6, (nt, a1.size, nc, 2)))
           ).astype(np.complex64)
    fac = antenna_amplitude_factors(vis, np.zeros(vis.shape, bool), a1, a2, n_ant,
                                    iterations=40)
    ratio = np.abs(vis) * fac[:, a1] * fac[:, a2]
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-3)
