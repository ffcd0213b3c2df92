"""Phasing kernels against pyuvdata's own uvw calculation and phase rotation."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.instrument import SPEED_OF_LIGHT
from stages.conversion.phasing import antenna_uvw, baseline_uvw, rotate_visibilities


def test_baseline_uvw_matches_pyuvdata_calc_uvw() -> None:
    from pyuvdata.utils.phasing import calc_uvw

    rng = np.random.default_rng(3)
    nants, ntimes = 9, 5
    pos = rng.normal(size=(nants, 3)) * 1500.0
    a1, a2 = np.triu_indices(nants, 1)
    tidx = np.repeat(np.arange(ntimes), a1.size)
    a1, a2 = np.tile(a1, ntimes), np.tile(a2, ntimes)
    lst = rng.uniform(0, 2 * np.pi, ntimes)
    app_ra = rng.uniform(0, 2 * np.pi, ntimes)
    app_dec = rng.uniform(-1.2, 1.2, ntimes)
    pa = rng.uniform(-0.01, 0.01, ntimes)
    lat, lon = 0.65, -2.06
    ref = calc_uvw(app_ra=app_ra[tidx], app_dec=app_dec[tidx], frame_pa=pa[tidx],
                   lst_array=lst[tidx], use_ant_pos=True, antenna_positions=pos,
                   antenna_numbers=np.arange(nants), ant_1_array=a1, ant_2_array=a2,
                   telescope_lat=lat, telescope_lon=lon)
    gha = lst - app_ra - lon
    ours = baseline_uvw(pos, a1, a2, tidx, gha, app_dec, pa)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_antenna_uvw_w_points_at_source() -> None:
    # at hour angle 0 and dec = 90 deg, w is the polar (z) component
    pos = np.array([[1.0, 2.0, 3.0]])
    uvw = antenna_uvw(pos, np.array([0.0]), np.array([np.pi / 2]), np.array([0.0]))
    np.testing.assert_allclose(uvw[0, 0], [2.0, -1.0, 3.0], atol=1e-12)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_rotate_visibilities(dtype) -> None:
    rng = np.random.default_rng(0)
    vis = (rng.normal(size=(6, 5, 2)) + 1j * rng.normal(size=(6, 5, 2))).astype(dtype)
    dw = rng.uniform(-2000, 2000, 6)
    f = np.linspace(1.3e9, 1.5e9, 5)
    expect = vis * np.exp(-2j * np.pi * np.outer(dw, f) / SPEED_OF_LIGHT)[:, :, None]
    got = rotate_visibilities(vis, dw, f)
    tol = 1e-6 if dtype == np.complex64 else 1e-9
    np.testing.assert_allclose(got, expect, rtol=tol, atol=tol * np.abs(vis).max())
    conj = rotate_visibilities(vis.copy(), dw, f, conjugate=True)
    np.testing.assert_allclose(conj, np.conj(expect), rtol=tol, atol=tol * np.abs(vis).max())
    inplace = vis.copy()
    rotate_visibilities(inplace, dw, f, out=inplace)
    np.testing.assert_allclose(inplace, expect, rtol=tol, atol=tol * np.abs(vis).max())


@pytest.mark.parametrize("flip,conjugate", [(False, False), (True, True), (True, False)])
def test_rotate_uniform_channels_matches_numpy(flip, conjugate) -> None:
    from stages.conversion.phasing import _rotate_uniform_py, rotate_uniform_channels

    rng = np.random.default_rng(1)
    vis = (rng.normal(size=(50, 48, 2)) + 1j * rng.normal(size=(50, 48, 2))).astype(np.complex64)
    dw = rng.uniform(-2500, 2500, 50)
    f = 1.3e9 + np.arange(48) * 244140.625
    src = vis[:, ::-1] if flip else vis
    expect = rotate_visibilities(np.ascontiguousarray(src).astype(np.complex128), dw, f,
                                 conjugate=conjugate)
    got = rotate_uniform_channels(vis, dw, f, conjugate=conjugate, flip=flip)
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-6 * np.abs(vis).max())
    slow = np.empty_like(vis)
    _rotate_uniform_py(vis[:3], dw[:3], f[0], f[1] - f[0], conjugate, flip, slow[:3])
    np.testing.assert_allclose(slow[:3], expect[:3], rtol=0, atol=2e-6 * np.abs(vis).max())
