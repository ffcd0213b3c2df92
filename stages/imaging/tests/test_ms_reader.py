import shutil
import subprocess

import numpy as np
import pytest

from dsa110_pipeline.errors import InputError
from stages.imaging.gridding import vis_to_image, weight_sum
from stages.imaging.ms_reader import MSChunkSource, read_ms_info, scan_usable
from stages.imaging.polarization import stokes_i
from stages.imaging.tests._ms import write_test_ms
from stages.imaging.tests._sim import point_source_vis, t_layout, uvw_tracks

DEC = np.radians(40.0)
CELL = np.radians(5 / 3600)


def _obs(freq_desc=True, nchan=6, with_autos=True):
    enu = t_layout(12, 8, 4, seed=3)
    na = len(enu)
    ha = np.linspace(-0.01, 0.01, 3)
    k = 0 if with_autos else 1
    i, j = np.triu_indices(na, k)
    # uvw of all pairs (autos have zero uvw)
    b_uvw = []
    for h in ha:
        full = uvw_tracks(enu, DEC, np.array([h]))  # cross baselines only, triu order k=1
        ii, jj = np.triu_indices(na, 1)
        lut = {(a, b): u for a, b, u in zip(ii, jj, full)}
        b_uvw.append(np.array([lut.get((a, b), np.zeros(3)) for a, b in zip(i, j)]))
    uvw = np.concatenate(b_uvw)
    a1, a2 = np.tile(i, len(ha)), np.tile(j, len(ha))
    time = np.repeat(5.1e9 + np.arange(len(ha)) * 12.9, len(i))
    freq = np.linspace(1.45e9, 1.35e9, nchan) if freq_desc else np.linspace(1.35e9, 1.45e9,
                                                                            nchan)
    l, m = 20 * CELL, 10 * CELL
    v = point_source_vis(uvw, freq, [(1.0, l, m)])
    v[a1 == a2] = 100.0  # autocorrelations must be ignored
    data = np.stack([v, v], axis=2).astype(np.complex64)
    return dict(uvw=uvw, freq=freq, data=data, ant1=a1, ant2=a2, time=time, enu=enu)


@pytest.fixture(scope="module")
def ms_path(tmp_path_factory):
    obs = _obs()
    p = tmp_path_factory.mktemp("ms") / "test.ms"
    flag = np.zeros(obs["data"].shape, bool)
    flag[5:40, 2, 0] = True  # XX only: Stokes I from YY there
    obs["data"][5:40, 2, 0] = 1e4
    flag[50:60, :, :] = True
    obs["data"][50:60] = 1e4
    write_test_ms(p, uvw=obs["uvw"], freq=obs["freq"], data=obs["data"], ant1=obs["ant1"],
                  ant2=obs["ant2"], time=obs["time"], ra=1.0, dec=DEC, flag=flag, weight=2.0,
                  enu=obs["enu"])
    return p, obs


def test_info(ms_path):
    p, obs = ms_path
    info = read_ms_info(p, "CORRECTED_DATA")
    assert info.nrow == len(obs["uvw"])
    assert info.ra == pytest.approx(1.0) and info.dec == pytest.approx(DEC)
    assert info.corr_types == (9, 12)
    assert info.field_name == "TESTFIELD" and info.telescope == "DSA-110"
    np.testing.assert_allclose(info.freqs, np.sort(obs["freq"]))
    assert info.has_weight_spectrum
    assert info.time_start == pytest.approx(5.1e9)
    usable, uvmax = scan_usable(info)
    assert usable > 0
    cross = obs["ant1"] != obs["ant2"]
    assert uvmax == pytest.approx(np.hypot(*obs["uvw"][cross, :2].T).max())


def test_chunks_ascending_stokes_i_and_masks(ms_path):
    p, obs = ms_path
    info = read_ms_info(p, "DATA")
    chunks = list(MSChunkSource(info, rows_per_chunk=100))
    assert len(chunks) == -(-info.nrow // 100)
    loaded = MSChunkSource(info, rows_per_chunk=100).load(w_order=False)
    assert len(loaded) == 1
    ch = loaded[0]
    # the default load holds the same rows sorted by w
    by_w = MSChunkSource(info).load(read_rows=37)[0]
    order = np.argsort(ch.uvw[:, 2], kind="stable")
    assert np.all(np.diff(by_w.uvw[:, 2]) >= 0)
    for name in ("uvw", "vis", "weight", "mask", "time"):
        np.testing.assert_array_equal(getattr(by_w, name), getattr(ch, name)[order])
    np.testing.assert_array_equal(ch.freq, np.sort(obs["freq"]))
    np.testing.assert_array_equal(ch.vis, np.concatenate([c.vis for c in chunks]))
    auto = obs["ant1"] == obs["ant2"]
    assert not ch.mask[auto].any()
    assert not ch.mask[50:60].any()
    # row 5..39, MS channel 2 (descending) -> ascending index nchan-1-2: YY only, weight 2
    k = len(obs["freq"]) - 1 - 2
    assert ch.weight[10, k] == pytest.approx(2.0)
    assert ch.vis[10, k] == pytest.approx(obs["data"][10, 2, 1])
    # elsewhere both: weight 4 w1 w2 / (w1 + w2) = 2 w = 4
    assert ch.weight[100, 0] == pytest.approx(4.0)
    assert ch.vis[100, 0] == pytest.approx(obs["data"][100, -1, 0], rel=1e-6)


def test_dirty_image_from_ms_places_the_source(ms_path):
    p, obs = ms_path
    ch = MSChunkSource(read_ms_info(p, "DATA")).load()[0]
    img = vis_to_image(ch.uvw, ch.freq, ch.vis, ch.weight, ch.mask, npix_x=128, npix_y=128,
                       cell=CELL, epsilon=2e-5)
    img /= weight_sum(ch.weight, ch.mask, ch.vis.shape)
    r, c = np.unravel_index(np.argmax(img), img.shape)
    assert (r - 64, c - 64) == (10, -20)  # 10 cells north, 20 east
    assert img[r, c] == pytest.approx(1.0, rel=1e-3)


@pytest.mark.wsclean
@pytest.mark.skipif(shutil.which("wsclean") is None, reason="wsclean is not installed")
def test_orientation_and_flux_agree_with_wsclean(tmp_path):
    from astropy.io import fits

    obs = _obs(with_autos=False)
    p = write_test_ms(tmp_path / "clean.ms", uvw=obs["uvw"], freq=obs["freq"], data=obs["data"],
                      ant1=obs["ant1"], ant2=obs["ant2"], time=obs["time"], ra=1.0, dec=DEC,
                      enu=obs["enu"])
    name = tmp_path / "ws"
    subprocess.run(["wsclean", "-quiet", "-size", "128", "128", "-scale", "5asec", "-niter", "0",
                    "-name", str(name), "-no-update-model-required", "-data-column", "DATA",
                    "-weight", "natural", "-no-reorder", str(p)], check=True,
                   capture_output=True)
    ws = fits.getdata(f"{name}-dirty.fits")[0, 0]
    ch = MSChunkSource(read_ms_info(p, "DATA")).load()[0]
    img = vis_to_image(ch.uvw, ch.freq, ch.vis, ch.weight, ch.mask, npix_x=128, npix_y=128,
                       cell=CELL, epsilon=2e-5)
    img /= weight_sum(ch.weight, ch.mask, ch.vis.shape)
    assert np.unravel_index(np.argmax(ws), ws.shape) == np.unravel_index(np.argmax(img),
                                                                         img.shape)
    # WSClean is less accurate near the image edge; compare the inner half
    assert np.max(np.abs(img - ws)[32:96, 32:96]) < 0.005
    assert np.max(np.abs(img - ws)[48:80, 48:80]) < 2e-4


def test_bad_ms_inputs(tmp_path, ms_path):
    p, obs = ms_path
    with pytest.raises(InputError, match="not a Measurement Set"):
        read_ms_info(tmp_path / "nothing.ms")
    q = tmp_path / "nocorr.ms"
    write_test_ms(q, uvw=obs["uvw"][:10], freq=obs["freq"], data=obs["data"][:10],
                  ant1=obs["ant1"][:10], ant2=obs["ant2"][:10], time=obs["time"][:10], ra=1.0,
                  dec=DEC, corrected=False)
    with pytest.raises(InputError, match="CORRECTED_DATA is absent"):
        read_ms_info(q, "CORRECTED_DATA")
    e = tmp_path / "empty.ms"
    write_test_ms(e, uvw=obs["uvw"][:0], freq=obs["freq"], data=obs["data"][:0],
                  ant1=obs["ant1"][:0], ant2=obs["ant2"][:0], time=obs["time"][:0], ra=1.0,
                  dec=DEC, enu=obs["enu"])
    with pytest.raises(InputError, match="no rows"):
        read_ms_info(e, "DATA")


def test_stokes_i_rules():
    data = np.array([[[1 + 1j, 3 + 3j]]])
    flag = np.zeros((1, 1, 2), bool)
    w = np.array([[[1.0, 3.0]]])
    vis, wgt, mask = stokes_i(data, flag, w, (9, 12))
    assert vis[0, 0] == 2 + 2j and wgt[0, 0] == pytest.approx(3.0) and mask[0, 0] == 1
    flag[..., 1] = True
    vis, wgt, _ = stokes_i(data, flag, w, (9, 12))
    assert vis[0, 0] == 1 + 1j and wgt[0, 0] == 1.0
    flag[...] = True
    _, wgt, mask = stokes_i(data, flag, w, (9, 12))
    assert wgt[0, 0] == 0 and mask[0, 0] == 0
    flag[...] = [[[True, False]]]  # the first flagged: the second alone
    vis, wgt, mask = stokes_i(data, flag, w, (9, 12))
    assert vis[0, 0] == 3 + 3j and wgt[0, 0] == 3.0 and mask[0, 0] == 1
    with pytest.raises(ValueError, match="Stokes I"):
        stokes_i(data, flag, w, (9, 10))


@pytest.mark.parametrize("corr", [(9, 12), (1,)])
def test_stokes_i_scatters_rows(corr):
    rng = np.random.default_rng(5)
    n, nc, npol = 7, 3, len(corr)
    data = (rng.normal(size=(n, nc, npol)) + 1j * rng.normal(size=(n, nc, npol))
            ).astype(np.complex64)
    flag = rng.uniform(size=data.shape) < 0.3
    w = rng.uniform(0.5, 2.0, data.shape).astype(np.float32)
    ref = stokes_i(data, flag, w, corr)
    rows = np.array([4, 9, 0, 2, 7, 1, 5])
    out = (np.zeros((10, nc), np.complex64), np.zeros((10, nc), np.float32),
           np.full((10, nc), 7, np.uint8))
    stokes_i(data, flag, w, corr, out=out, rows=rows)
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a[rows], b)
    untouched = np.setdiff1d(np.arange(10), rows)
    assert (out[2][untouched] == 7).all() and (out[0][untouched] == 0).all()

