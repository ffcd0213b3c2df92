"""UVH5 reader: headers, chunked reads, and clear errors for bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110_pipeline.errors import InputError
from stages.conversion.reader import check_same_layout, read_header, read_rows

from .synth import make_drift_group


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> list[Path]:
    return make_drift_group(tmp_path_factory.mktemp("rd"), n_subbands=2, n_channels=4,
                            n_times=3, n_ants=4)


def _copy(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dst_dir / src.name))


def test_header_and_chunked_rows(group) -> None:
    h = read_header(group[0])
    assert h.nblts == 30 and h.ntimes == 3 and h.nfreqs == 4 and h.npols == 2
    assert h.descending and np.all(np.diff(h.freqs_ascending) > 0)
    assert h.uvw_array.dtype == np.float64
    assert h.integration_rows() == [(0, 10), (10, 20), (20, 30)]
    vis, flags, ns = read_rows(h, 10, 20)
    assert vis.shape == (10, 4, 2) and vis.dtype == np.complex64
    with h5py.File(group[0]) as f:
        raw = f["Data/visdata"][10:20]
    np.testing.assert_array_equal(vis, raw[:, ::-1])  # ascending frequency order
    vis_d, _, _ = read_rows(h, 10, 20, ascending=False)
    np.testing.assert_array_equal(vis_d, raw)


def test_ata_header(shared_data) -> None:
    files = sorted((shared_data / "real" / "ata_3c286").glob("*.uvh5"))
    h = read_header(files[0])
    assert h.telescope_name == "ATA" and h.nfreqs == 16 and h.npols == 4
    assert h.phase_type == "sidereal" and h.phase_center["cat_name"] == "3c286"


def test_truncated_file(group, tmp_path) -> None:
    p = _copy(group[0], tmp_path)
    size = p.stat().st_size
    with open(p, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(InputError, match="truncated") as ei:
        h = read_header(p)
        read_rows(h, 0, h.nblts)
    assert str(p) in str(ei.value)


def test_not_hdf5(tmp_path) -> None:
    p = tmp_path / "x_sb00.hdf5"
    p.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(InputError, match="cannot open as HDF5") as ei:
        read_header(p)
    assert str(p) in ei.value.files


@pytest.mark.parametrize("field,problem", [
    ("time_array", "header field 'time_array' is missing"),
    ("ant_1_array", "header field 'ant_1_array' is missing"),
    ("Nfreqs", "header field 'Nfreqs' is missing"),
])
def test_missing_header_field(group, tmp_path, field, problem) -> None:
    p = _copy(group[0], tmp_path)
    with h5py.File(p, "r+") as f:
        del f["Header"][field]
    with pytest.raises(InputError, match=problem) as ei:
        read_header(p)
    assert ei.value.files == (str(p),)


def test_wrong_shape(group, tmp_path) -> None:
    p = _copy(group[0], tmp_path)
    with h5py.File(p, "r+") as f:
        uvw = f["Header/uvw_array"][()]
        del f["Header/uvw_array"]
        f["Header/uvw_array"] = uvw[:-1]
    with pytest.raises(InputError, match="uvw_array has shape"):
        read_header(p)


def test_nan_in_data(group, tmp_path) -> None:
    p = _copy(group[0], tmp_path)
    with h5py.File(p, "r+") as f:
        d = f["Data/visdata"][()]
        d[17, 1, 0] = np.nan
        del f["Data/visdata"]
        f["Data/visdata"] = d
    h = read_header(p)
    read_rows(h, 0, 10)  # rows before the NaN are fine
    with pytest.raises(InputError, match="NaN/Inf values .first bad row 17") as ei:
        read_rows(h, 10, 20)
    assert str(p) in str(ei.value)


def test_layout_mismatch(group, tmp_path) -> None:
    other = make_drift_group(tmp_path / "o", n_subbands=1, n_channels=4, n_times=2, n_ants=4)
    with pytest.raises(InputError, match="disagree on the integration count"):
        check_same_layout(read_header(group[0]), read_header(other[0]))
    fewer = make_drift_group(tmp_path / "a", n_subbands=1, n_channels=4, n_times=3, n_ants=3)
    with pytest.raises(InputError, match=r"has 6 baselines \(3 antennas\) per integration but "
                                         r".* has 10 \(4 antennas\): subbands disagree on the "
                                         "antennas"):
        check_same_layout(read_header(group[0]), read_header(fewer[0]))
