"""Catalog point sources refined against visibilities: flux, spectral index, drift, position.

A survey catalog (NVSS-like) is good to ~3 % in flux and 1-7" in position and has no spectral
index. Wherever such a catalog stands in for the sky, its errors come back as artefacts:
- the imager subtracts sources outside the image as catalogued (CLEAN cannot reach them);
  seen through the primary beam's outer lobes, a 13.8 Jy source 3.5 deg south of the
  full-scale dec +16.1 calibrator field (0.61 Jy apparent), 2 % low and 2" off, drew a
  column of eleven false peaks of 5-11 sigma along the image's east edge;
- a gain solve absorbs what its model gets wrong, and DSA-110's regular arms turn that into
  ghosts at the calibrator's row and column.

:func:`refine_sources` fits, per source, a flux scale, a spectral-index change, a linear
change over the group's time span (the beam model's error as the source drifts through it)
and a shift (dl, dm) by Gauss-Newton steps, one source at a time, brightest first, each from
the residual of every other's current model (sources far apart on the sky have nearly
orthogonal fringes). With the source's predicted visibilities ``M``, each parameter's
derivative is ``M`` times a real factor (1, ln(nu/nu0), tau) or an imaginary one
(2 pi i nu/c (u - w l/n), the same for m), so the normal equations need only ``w |M|^2`` and
``w conj(M) r``, and flux and position decouple exactly.

Visibilities follow the MS convention ``V = sum S exp(+2 pi i (u l + v m + w (n - 1)) nu/c)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_pipeline.dft import predict_visibilities_drift
from dsa110_pipeline.instrument import SPEED_OF_LIGHT

#: Parameter names, in the order of :attr:`SourceFit.params`
PARAMS = ("scale", "d_alpha", "slope", "dl", "dm")


@dataclass(frozen=True)
class SourceFit:
    """Refined sources: ``lmn`` (nt, n, 3) and apparent ``flux`` (nt, n, nchan) on the
    fitted channels, ``params`` (n, 5) as :data:`PARAMS` (scale a multiplier, dl/dm in
    direction cosines), ``fitted`` (n,) which sources were refined (the rest kept their
    catalog values: too faint, or a step outside ``FitLimits``), ``snr`` (n,) each source's
    signal-to-noise ratio in the residual's weights, ``ref_freq`` (Hz) the reference of
    d_alpha (give both to :func:`refined` for other channels)."""

    lmn: np.ndarray
    flux: np.ndarray
    params: np.ndarray
    fitted: np.ndarray
    snr: np.ndarray
    ref_freq: float


@dataclass(frozen=True)
class FitLimits:
    """Refinements beyond these are refused (the source keeps its catalog values).

    The flux scale is wide open: the survey (NVSS: 1993-96) is decades older than the night,
    and a variable source outside the image that has doubled since, subtracted at its
    catalog flux, leaves a stripe of false sources along its row or column (dec +30.5,
    3C286, seed 77: a 0.54 Jy catalog entry at 1.0 Jy tonight, 205 px south of the image,
    drew ten false new sources when changes beyond 30 % were refused). The flux is a linear
    parameter, so any scale the data ask for at the fit's S/N is a measurement; only a
    negative one or one beyond ``max_scale`` (a different source) is refused. A shift beyond
    ``max_shift`` (about a fringe of the longest baselines) is beyond what Gauss-Newton steps
    from the catalog position can follow."""

    min_snr: float = 20.0
    max_scale: float = 10.0
    max_d_alpha: float = 1.5
    max_slope: float = 0.3
    max_shift: float = 4.85e-5  # rad (10")
    iterations: int = 3


def refined(lmn: np.ndarray, flux: np.ndarray, params: np.ndarray, freqs: np.ndarray,
            ref_freq: float, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lmn, flux) of sources (nt, n, 3) / (nt, n, nchan) at ``freqs`` after ``params`` (n, 5):
    flux x scale x (nu/ref_freq)^d_alpha x (1 + slope tau) at each time's ``tau`` (nt,), and
    the direction moved by (dl, dm)."""
    p = np.asarray(params, np.float64)
    spec = (np.asarray(freqs, np.float64)[None, :] / ref_freq) ** p[:, 1, None]  # (n, nf)
    tfac = 1.0 + p[None, :, 2] * np.asarray(tau, np.float64)[:, None]  # (nt, n)
    new_flux = flux * p[None, :, 0, None] * spec[None] * tfac[:, :, None]
    new_lmn = np.array(lmn, dtype=np.float64, copy=True)
    new_lmn[..., 0] += p[None, :, 3]
    new_lmn[..., 1] += p[None, :, 4]
    new_lmn[..., 2] = np.sqrt(np.maximum(0.0, 1.0 - new_lmn[..., 0] ** 2 - new_lmn[..., 1] ** 2))
    return np.ascontiguousarray(new_lmn), np.ascontiguousarray(new_flux)


def _normal_equations(uvw: np.ndarray, tidx: np.ndarray, freqs: np.ndarray, model: np.ndarray,
                      resid: np.ndarray, weight: np.ndarray, lmn: np.ndarray,
                      ref_freq: float, tau: np.ndarray, rows: int = 16384
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(A (5, 5), b (5,)) of one source's Gauss-Newton step, in row blocks."""
    a = np.zeros((5, 5))
    b = np.zeros(5)
    lnf = np.log(freqs / ref_freq)
    k = 2 * np.pi * freqs / SPEED_OF_LIGHT
    for r0 in range(0, uvw.shape[0], rows):
        sl = slice(r0, r0 + rows)
        m = model[sl]
        w = weight[sl].astype(np.float64)
        p = w * (m.real.astype(np.float64) ** 2 + m.imag.astype(np.float64) ** 2)
        q = w * np.conj(m).astype(np.complex128) * resid[sl].astype(np.complex128)
        s_lmn = lmn[tidx[sl]]  # (rows, 3)
        u, v, ww = uvw[sl, 0], uvw[sl, 1], uvw[sl, 2]
        n = np.maximum(s_lmn[:, 2], 1e-6)
        phi_l = (u - ww * s_lmn[:, 0] / n)[:, None] * k[None]
        phi_m = (v - ww * s_lmn[:, 1] / n)[:, None] * k[None]
        real_g = (np.ones_like(p), np.broadcast_to(lnf[None], p.shape),
                  np.broadcast_to(tau[tidx[sl]][:, None], p.shape))
        for i, gi in enumerate(real_g):
            b[i] += float(np.sum(gi * q.real))
            for j in range(i, 3):
                a[i, j] += float(np.sum(p * gi * real_g[j]))
        for i, gi in enumerate((phi_l, phi_m)):
            b[3 + i] += float(np.sum(gi * q.imag))
            for j, gj in enumerate((phi_l, phi_m)[i:]):
                a[3 + i, 3 + i + j] += float(np.sum(p * gi * gj))
    return np.triu(a) + np.triu(a, 1).T, b


def _solve(a: np.ndarray, b: np.ndarray, n_free: int) -> np.ndarray | None:
    """The Gauss-Newton step (5,) with the first ``n_free`` parameters free (the rest 0),
    or None where the normal equations are singular."""
    step = np.zeros(5)
    sub = a[:n_free, :n_free]
    try:
        step[:n_free] = np.linalg.solve(sub + 1e-9 * np.diag(np.diag(sub)), b[:n_free])
    except np.linalg.LinAlgError:
        return None
    return step


def refine_sources(uvw: np.ndarray, time_index: np.ndarray, freqs: np.ndarray,
                 resid: np.ndarray, weight: np.ndarray, lmn: np.ndarray, flux: np.ndarray,
                 tau: np.ndarray, limits: FitLimits = FitLimits(), nthreads: int = 1,
                 subtracted: np.ndarray | None = None, fit: np.ndarray | None = None
                 ) -> SourceFit:
    """Refine sources (``lmn`` (nt, n, 3), apparent ``flux`` (nt, n, nchan) at ``freqs``)
    from ``resid`` (nrow, nchan): the visibilities minus the current model of the sources
    marked ``subtracted`` (n,) (default: all). ``weight`` (nrow, nchan) weights the fit
    (zero: unused); ``tau`` (nt,) the times scaled to [-1, 1] for the slope. ``resid`` is
    not modified. Only sources marked ``fit`` (n,) (default: all) are refined; the rest are
    taken out of the residual as they are. Sources are refined brightest first, each from
    the residual of every other's current model, so a bright source that is not
    subtracted (one inside the image, given as a nuisance) does not bias the fainter
    ones."""
    freqs = np.asarray(freqs, np.float64)
    n_src = lmn.shape[1]
    if flux.shape != (lmn.shape[0], n_src, freqs.size):
        raise ValueError(f"flux has shape {flux.shape}, expected "
                         f"{(lmn.shape[0], n_src, freqs.size)}")
    if resid.shape != weight.shape or resid.shape != (uvw.shape[0], freqs.size):
        raise ValueError(f"resid {resid.shape} / weight {weight.shape} do not match "
                         f"{uvw.shape[0]} rows x {freqs.size} channels")
    wsum = np.sum(weight, axis=0, dtype=np.float64)
    ref_freq = float(np.sum(wsum * freqs) / max(wsum.sum(), 1e-300))
    params = np.zeros((n_src, 5))
    params[:, 0] = 1.0
    fitted = np.zeros(n_src, bool)
    snr = np.zeros(n_src)
    r = np.array(resid, dtype=np.complex64)
    tidx = np.asarray(time_index, np.int64)
    todo = np.zeros(n_src, bool) if subtracted is None else ~np.asarray(subtracted, bool)
    if todo.any():  # every source's current model out of the residual
        r -= predict_visibilities_drift(uvw, tidx, freqs, lmn[:, todo], flux[:, todo], sign=1,
                                        unprojected=False, dtype=np.complex64,
                                        nthreads=nthreads)
    # noise per unit weight: the residual's scatter (sources are a small part of it)
    sigma2 = float(np.sum(weight * (r.real ** 2 + r.imag ** 2)) / max(np.count_nonzero(weight), 1))
    mean_app = np.abs(flux).mean(axis=(0, 2))
    wanted = np.ones(n_src, bool) if fit is None else np.asarray(fit, bool)
    for s in np.argsort(-mean_app):
        if not wanted[s]:
            continue
        one = slice(s, s + 1)
        cur = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
        m_cur = predict_visibilities_drift(uvw, tidx, freqs, lmn[:, one], flux[:, one],
                                           sign=1, unprojected=False, dtype=np.complex64,
                                           nthreads=nthreads)
        w_m2 = float(np.sum(weight * (m_cur.real ** 2 + m_cur.imag ** 2)))
        # the flux's S/N from the residual's weights: sqrt(sum w |M|^2 / noise per weight)
        snr[s] = np.sqrt(w_m2 / sigma2) if w_m2 > 0 and sigma2 > 0 else 0.0
        if snr[s] < limits.min_snr:
            continue
        m_start = m_cur
        cur_lmn = lmn[:, one]
        ok = True
        for _ in range(limits.iterations):
            # d M / d slope = M tau / (1 + slope tau)
            a, b = _normal_equations(uvw, tidx, freqs, m_cur, r + m_start - m_cur, weight,
                                     cur_lmn[:, 0], ref_freq, tau / (1.0 + cur[2] * tau))
            step = _solve(a, b, 5)
            if step is not None and cur[0] * (1 + step[0]) * snr[s] < limits.min_snr:
                # faded below the fit's S/N: only its flux is measured; its spectrum, drift
                # and position, which the data no longer tell, stay catalogued
                step = _solve(a, b, 1)
            if step is None:
                ok = False
                break
            cur = np.array([cur[0] * (1 + step[0]), cur[1] + step[1], cur[2] + step[2],
                            cur[3] + step[3], cur[4] + step[4]])
            cur_lmn, cur_flux = refined(lmn[:, one], flux[:, one], cur[None], freqs, ref_freq,
                                        tau)
            m_cur = predict_visibilities_drift(uvw, tidx, freqs, cur_lmn, cur_flux, sign=1,
                                               unprojected=False, dtype=np.complex64,
                                               nthreads=nthreads)
        if not ok or not 0.0 <= cur[0] <= limits.max_scale \
                or abs(cur[1]) > limits.max_d_alpha or abs(cur[2]) > limits.max_slope \
                or np.hypot(cur[3], cur[4]) > limits.max_shift:
            continue
        r -= m_cur - m_start
        params[s] = cur
        fitted[s] = True
    new_lmn, new_flux = refined(lmn, flux, params, freqs, ref_freq, tau)
    return SourceFit(lmn=new_lmn, flux=new_flux, params=params, fitted=fitted, snr=snr,
                      ref_freq=ref_freq)
