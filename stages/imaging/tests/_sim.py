"""Small DSA-110-like simulations for the imaging tests (numpy only, no files)."""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.instrument import SITE_LATITUDE_DEG, SPEED_OF_LIGHT


def t_layout(n_ew: int = 30, n_ns: int = 20, n_out: int = 8, seed: int = 0) -> np.ndarray:
    """ENU antenna positions (m) of a T-shaped array: an E-W arm, a N-S arm, outriggers."""
    rng = np.random.default_rng(seed)
    ew = np.stack([np.linspace(-1200, 1200, n_ew) + rng.normal(0, 5, n_ew),
                   rng.normal(0, 2, n_ew), np.zeros(n_ew)], axis=1)
    ns = np.stack([rng.normal(0, 2, n_ns), np.linspace(40, 1000, n_ns) + rng.normal(0, 5, n_ns),
                   np.zeros(n_ns)], axis=1)
    ang = rng.uniform(0, 2 * np.pi, n_out)
    rad = rng.uniform(1000, 2400, n_out)
    out = np.stack([rad * np.cos(ang), rad * np.sin(ang), np.zeros(n_out)], axis=1)
    return np.concatenate([ew, ns, out])


def uvw_tracks(enu: np.ndarray, dec: float, hour_angles: np.ndarray,
               lat_deg: float = SITE_LATITUDE_DEG) -> np.ndarray:
    """uvw (m) of all cross baselines at each hour angle (rad), rows ordered time-major."""
    i, j = np.triu_indices(len(enu), k=1)
    b = enu[j] - enu[i]
    lat = np.radians(lat_deg)
    e, n, u_ = b.T
    x = -np.sin(lat) * n + np.cos(lat) * u_
    y = e
    z = np.cos(lat) * n + np.sin(lat) * u_
    out = []
    for h in hour_angles:
        sh, ch = np.sin(h), np.cos(h)
        sd, cd = np.sin(dec), np.cos(dec)
        out.append(np.stack([sh * x + ch * y, -sd * ch * x + sd * sh * y + cd * z,
                             cd * ch * x - cd * sh * y + sd * z], axis=1))
    return np.concatenate(out)


def point_source_vis(uvw: np.ndarray, freq: np.ndarray, sources: list[tuple[float, float, float]],
                     dtype: type = np.complex128) -> np.ndarray:
    """Visibilities of point sources (flux Jy, l, m) in the MS convention (see gridding.py):
    V = S exp(+2 pi i (u l + v m + w (n - 1)))."""
    vis = np.zeros((uvw.shape[0], len(freq)), dtype=np.complex128)
    for flux, l, m in sources:
        n1 = np.sqrt(1 - l * l - m * m) - 1
        phase = uvw[:, 0:1] * l + uvw[:, 1:2] * m + uvw[:, 2:3] * n1
        vis += flux * np.exp(2j * np.pi * phase * (freq[None, :] / SPEED_OF_LIGHT))
    return vis.astype(dtype)


def pixel_to_lm(row: float, col: float, npix: int, cell: float) -> tuple[float, float]:
    """(l, m) of a pixel in FITS orientation (row north, col west)."""
    return -(col - npix // 2) * cell, (row - npix // 2) * cell
