"""Write DSA-110-style UVH5 files directly with h5py.

The layout follows the files the DSA-110 correlator writes (UVH5 1.0 with the old
spectral-window axis): ``phase_type = "drift"`` (unprojected), ``freq_array`` of shape
(1, Nfreqs) descending, scalar ``channel_width``, float32 ``uvw_array`` (ENU baselines,
antenna 2 - antenna 1), ``visdata``/``flags``/``nsamples`` of shape (Nblts, 1, Nfreqs, Npols),
``extra_keywords/phase_center_dec`` (rad) holding the pointing declination.

Reading them with pyuvdata: the options the real DSA-110 files need are
:data:`PYUVDATA_READ_KWARGS` (float32 uvw and the unprojected uvw convention fail pyuvdata's
strict checks on real files). The simulated files also pass ``run_check=True``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..atomic import atomic_path
from ..uvh5 import UVH5Header

#: pyuvdata ``UVData.read`` options that real DSA-110 files need.
PYUVDATA_READ_KWARGS = {
    "file_type": "uvh5",
    "run_check": False,
    "run_check_acceptability": False,
    "strict_uvw_antpos_check": False,
    "check_extra": False,
}


def write_uvh5(path: str | Path, hdr: UVH5Header, visdata: np.ndarray,
               flags: np.ndarray | None = None, nsamples: np.ndarray | None = None) -> Path:
    """Write one UVH5 file (temporary name, then renamed). ``visdata`` is (Nblts, Nfreqs,
    Npols) complex; flags default to False and nsamples to 1."""
    path = Path(path)
    nblt, nfreq, npol = visdata.shape
    if nblt != hdr.time_array.size or nfreq != hdr.freq_array.size or \
            npol != hdr.polarization_array.size:
        raise ValueError(f"visdata shape {visdata.shape} does not match the header")
    ants = np.unique(np.r_[hdr.ant_1_array, hdr.ant_2_array])
    bls = np.unique(hdr.ant_1_array.astype(np.int64) * 100_000 + hdr.ant_2_array)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        h = f.create_group("Header")
        h["telescope_name"] = np.bytes_(hdr.telescope_name)
        h["instrument"] = np.bytes_(hdr.instrument)
        h["latitude"] = float(hdr.latitude_deg)
        h["longitude"] = float(hdr.longitude_deg)
        h["altitude"] = float(hdr.altitude_m)
        h["history"] = np.bytes_(hdr.history)
        h["phase_type"] = np.bytes_("drift")
        h["object_name"] = np.bytes_(hdr.object_name)
        h["vis_units"] = np.bytes_(hdr.vis_units)
        h["version"] = np.bytes_("1.0")
        h["Nants_data"] = int(ants.size)
        h["Nants_telescope"] = len(hdr.antenna_names)
        h["Nbls"] = int(bls.size)
        h["Nblts"] = int(nblt)
        h["Nfreqs"] = int(nfreq)
        h["Npols"] = int(npol)
        h["Nspws"] = 1
        h["Ntimes"] = int(np.unique(hdr.time_array).size)
        h["antenna_names"] = np.array([np.bytes_(n) for n in hdr.antenna_names])
        h["antenna_numbers"] = hdr.antenna_numbers.astype(np.int64)
        h["antenna_positions"] = hdr.antenna_positions.astype(np.float64)
        if hdr.antenna_diameters is not None:
            h["antenna_diameters"] = hdr.antenna_diameters.astype(np.float64)
        h["ant_1_array"] = hdr.ant_1_array.astype(np.int64)
        h["ant_2_array"] = hdr.ant_2_array.astype(np.int64)
        h["uvw_array"] = hdr.uvw_array.astype(np.float32)
        h["time_array"] = hdr.time_array.astype(np.float64)
        if hdr.lst_array is not None:
            h["lst_array"] = hdr.lst_array.astype(np.float64)
        h["integration_time"] = hdr.integration_time.astype(np.float64)
        h["freq_array"] = hdr.freq_array.astype(np.float64)[None, :]
        width = np.asarray(hdr.channel_width, np.float64)
        h["channel_width"] = float(width[0]) if np.all(width == width[0]) else width
        h["spw_array"] = np.array([0], dtype=np.int64)
        h["polarization_array"] = hdr.polarization_array.astype(np.int64)
        ek = h.create_group("extra_keywords")
        for k, v in hdr.extra_keywords.items():
            ek[k] = np.bytes_(v) if isinstance(v, str) else v
        d = f.create_group("Data")
        shape4 = (nblt, 1, nfreq, npol)
        chunks = (min(nblt, 4096), 1, nfreq, npol)
        # contiguous (as pyuvdata writes by default): fastest to write and to read by
        # time ranges, since baseline-times are time-major
        d.create_dataset("visdata", data=visdata.astype(np.complex64, copy=False)
                         .reshape(shape4))
        # constant flags/nsamples: HDF5 fill values, no chunks stored
        if flags is None:
            d.create_dataset("flags", shape=shape4, dtype=bool, chunks=chunks,
                             fillvalue=False)
        else:
            d.create_dataset("flags", data=flags.reshape(shape4), chunks=chunks)
        if nsamples is None:
            d.create_dataset("nsamples", shape=shape4, dtype=np.float32, chunks=chunks,
                             fillvalue=1.0)
        else:
            d.create_dataset("nsamples", data=nsamples.astype(np.float32).reshape(shape4),
                             chunks=chunks)
    return path
