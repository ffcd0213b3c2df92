"""Variability statistics of light curves: pure functions on arrays.

Per source, from fluxes ``s`` and errors ``e`` (one value per epoch, NaN where none):

- ``eta``: the weighted reduced chi^2 about the weighted mean (Swinbank et al. 2015), and
  ``eta_logp``, -log10 of its chance probability for a steady source (chi^2, n - 1 dof);
- ``v``: the fractional modulation, sample standard deviation over mean;
- ``vs_max`` and ``m``: the two-epoch statistics (Mooley et al. 2016) of the pair with the
  largest |Vs|, ``Vs = (s_a - s_b) / sqrt(e_a^2 + e_b^2)``, ``m = 2 (s_a - s_b) / (s_a + s_b)``;
- ``dip_sigma``: the most significant dip (an extreme-scattering-event-like drop) lasting
  ``k`` consecutive epochs: the weighted mean of those epochs below the weighted mean of
  the rest, in units of its error.

Arrays are (sources, epochs); every statistic is vectorised over sources.
"""

from __future__ import annotations

import numpy as np


def weighted_mean(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    w = _weights(s, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(w * s, axis=-1) / np.sum(w, axis=-1)


def _weights(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    ok = np.isfinite(s) & np.isfinite(e) & (e > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, 1.0 / np.where(ok, e, 1.0) ** 2, 0.0)


def eta(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Weighted reduced chi^2 about the weighted mean; NaN with fewer than 2 epochs."""
    w = _weights(s, e)
    n = np.sum(w > 0, axis=-1)
    xi = weighted_mean(s, e)
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.sum(np.where(w > 0, w * (np.nan_to_num(s) - xi[..., None]) ** 2, 0.0), axis=-1)
        return np.where(n > 1, chi2 / (n - 1), np.nan)


def eta_significance(eta_values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """-log10 of the probability that a steady source with right errors has an ``eta`` this
    large over ``n`` epochs (chi^2 with n - 1 degrees of freedom): comparable across light
    curves of any length, unlike ``eta`` itself."""
    from scipy.stats import chi2

    dof = np.asarray(n, dtype=float) - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = chi2.logsf(np.asarray(eta_values, float) * dof, np.maximum(dof, 1.0))
        return np.where(dof >= 1, -logp / np.log(10.0), np.nan)


def modulation(s: np.ndarray) -> np.ndarray:
    """V: sample standard deviation over mean; NaN with fewer than 2 epochs."""
    n = np.sum(np.isfinite(s), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(n[..., None] > 0, s, 0.0), axis=-1)
        sd = np.sqrt(np.nansum((s - mean[..., None]) ** 2, axis=-1) / np.maximum(n - 1, 1))
        return np.where(n > 1, sd / mean, np.nan)


def two_epoch(s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|Vs| largest over epoch pairs, m of that pair), NaN with fewer than 2 epochs."""
    d = s[..., :, None] - s[..., None, :]
    q = np.sqrt(e[..., :, None] ** 2 + e[..., None, :] ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        vs = np.abs(d / q)
        m = 2 * d / (s[..., :, None] + s[..., None, :])
    vs = np.where(np.isfinite(vs), vs, -np.inf)
    shape = (*vs.shape[:-2], vs.shape[-1] * vs.shape[-2])
    if 0 in shape:  # no source, or no epoch
        return np.full(shape[:-1], np.nan), np.full(shape[:-1], np.nan)
    flat = vs.reshape(shape)
    best = np.argmax(flat, axis=-1)
    vmax = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    mbest = np.take_along_axis(m.reshape(shape), best[..., None], axis=-1)[..., 0]
    none = ~np.isfinite(vmax)
    return np.where(none, np.nan, vmax), np.where(none, np.nan, np.abs(mbest))


def dip_sigma(s: np.ndarray, e: np.ndarray, k: int) -> np.ndarray:
    """The most significant run of ``k`` consecutive epochs below the rest of the light
    curve: ``(mean_rest - mean_run) / sqrt(err_run^2 + err_rest^2)`` with weighted means;
    NaN where the curve has fewer than ``k + 2`` epochs."""
    s = np.atleast_2d(s)
    e = np.atleast_2d(e)
    w = _weights(s, e)
    ws = w * np.nan_to_num(s)
    n_ep = s.shape[-1]
    best = np.full(s.shape[0], np.nan)
    if n_ep < k + 2:
        return best
    cw = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(w, axis=-1)], axis=-1)
    cws = np.concatenate([np.zeros((s.shape[0], 1)), np.cumsum(ws, axis=-1)], axis=-1)
    tw, tws = cw[:, -1:], cws[:, -1:]
    run_w = cw[:, k:] - cw[:, :-k]
    run_ws = cws[:, k:] - cws[:, :-k]
    rest_w, rest_ws = tw - run_w, tws - run_ws
    with np.errstate(invalid="ignore", divide="ignore"):
        sig = (rest_ws / rest_w - run_ws / run_w) / np.sqrt(1 / run_w + 1 / rest_w)
    sig = np.where((run_w > 0) & (rest_w > 0), sig, -np.inf)
    out = np.max(sig, axis=-1)
    return np.where(np.isfinite(out), out, np.nan)


def statistics(s: np.ndarray, e: np.ndarray, dip_k: int) -> dict[str, np.ndarray]:
    """Every statistic of the module, per source (row)."""
    s = np.atleast_2d(np.asarray(s, dtype=np.float64))
    e = np.atleast_2d(np.asarray(e, dtype=np.float64))
    vs, m = two_epoch(s, e)
    n = np.sum(np.isfinite(s) & np.isfinite(e), axis=-1)
    et = eta(s, e)
    return {"n": n, "mean_flux": weighted_mean(s, e), "eta": et,
            "eta_logp": eta_significance(et, n), "v": modulation(s), "vs_max": vs, "m": m,
            "dip_sigma": dip_sigma(s, e, dip_k)}
