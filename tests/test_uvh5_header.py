"""One UVH5 header for the simulator's writer and the conversion reader."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_pipeline.errors import InputError
from dsa110_pipeline.simulate.uvh5_writer import write_uvh5
from dsa110_pipeline.uvh5 import UVH5Header
from stages.conversion.reader import read_header


def _header(**over) -> UVH5Header:
    nant, ntime = 3, 2
    a1, a2 = np.triu_indices(nant, 1)
    nbl = a1.size
    args = dict(telescope_name="DSA-110", instrument="DSA-110", latitude_deg=37.23,
                longitude_deg=-118.28, altitude_m=1222.0, antenna_numbers=np.arange(nant),
                antenna_names=[f"pad{i}" for i in range(nant)],
                antenna_positions=np.arange(nant * 3, dtype=float).reshape(nant, 3),
                ant_1_array=np.tile(a1, ntime), ant_2_array=np.tile(a2, ntime),
                time_array=np.repeat(2461000.5 + np.arange(ntime) / 8640.0, nbl),
                integration_time=np.full(nbl * ntime, 12.884902),
                uvw_array=np.ones((nbl * ntime, 3)), freq_array=np.array([1.4e9, 1.399e9]),
                channel_width=-1e6, polarization_array=np.array([-5, -6]))
    return UVH5Header(**{**args, **over})


def test_written_header_reads_back_the_same(tmp_path):
    hdr = _header()
    assert hdr.ntimes == 2 and hdr.channel_width.tolist() == [-1e6, -1e6]
    path = write_uvh5(tmp_path / "x_sb00.hdf5", hdr,
                      np.zeros((hdr.nblts, hdr.nfreqs, hdr.npols), np.complex64))
    back = read_header(path)
    assert back.path == path and back.antenna_names == hdr.antenna_names
    for name in ("time_array", "freq_array", "channel_width", "ant_1_array", "uvw_array",
                 "antenna_positions", "polarization_array"):
        np.testing.assert_array_equal(getattr(back, name), getattr(hdr, name), err_msg=name)
    assert back.descending and back.ntimes == 2


def test_bad_headers_are_refused_by_reader_and_writer_alike():
    with pytest.raises(InputError, match="antennas"):
        _header(ant_1_array=np.array([0, 0, 7, 0, 0, 1]))
    with pytest.raises(InputError, match="Julian date"):
        _header(time_array=np.zeros(6))
    with pytest.raises(InputError, match="uvw_array"):
        _header(uvw_array=np.ones((6, 2)))
