"""The metadata of one UVH5 file: one data object for its reader and its writer.

UVH5 is pyuvdata's HDF5 layout (``Header`` and ``Data`` groups); DSA-110's correlator
writes one file per subband. The conversion stage reads these headers from the files and
the simulator writes files from them; both check the same invariants here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: Plausible observation times (JD): 1858-11-17 .. 2132-08-31. Anything else is garbage
#: that would make ERFA fail (or lie) far from the file it came from.
JD_RANGE = (2400000.5, 2500000.5)


@dataclass(frozen=True, eq=False)
class UVH5Header:
    """The metadata of one UVH5 file (one subband), checked on construction: what the
    conversion reader reads and the simulator's writer writes. Site angles in degrees as
    stored; times JD (UTC); ``channel_width`` one value per channel (a scalar broadcast)."""

    telescope_name: str
    instrument: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    antenna_numbers: np.ndarray
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray  # (nants, 3) ECEF relative to the array centre, m
    ant_1_array: np.ndarray
    ant_2_array: np.ndarray
    time_array: np.ndarray  # JD (UTC)
    integration_time: np.ndarray  # s
    uvw_array: np.ndarray  # (nblts, 3) m
    freq_array: np.ndarray  # Hz, file order
    channel_width: np.ndarray  # Hz, file order (may be negative in some writers)
    polarization_array: np.ndarray
    antenna_diameters: np.ndarray | None = None
    lst_array: np.ndarray | None = None  # rad
    vis_units: str = "uncalib"
    phase_type: str = "drift"  # "unprojected", "sidereal", ...
    phase_center: dict[str, Any] | None = None
    object_name: str = "drift"
    extra_keywords: dict[str, Any] = field(default_factory=dict)
    history: str = ""
    #: distinct integrations (0: counted from ``time_array``)
    ntimes: int = 0
    #: the file the header was read from (None: built in memory), named in every error
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "antenna_names", tuple(str(a) for a in self.antenna_names))
        freq = np.asarray(self.freq_array)
        width = np.asarray(self.channel_width, dtype=np.float64)
        if width.ndim == 0 and freq.ndim == 1:
            object.__setattr__(self, "channel_width", np.full(freq.shape, float(width)))
        if self.ntimes == 0:
            object.__setattr__(self, "ntimes", int(np.unique(self.time_array).size))
        n = self.nblts
        for name in ("ant_1_array", "ant_2_array", "time_array", "integration_time"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise self._err(f"header field {name} has shape {arr.shape}, "
                                f"expected ({n},)")
        if self.uvw_array.shape != (n, 3):
            raise self._err(f"header field uvw_array has shape {self.uvw_array.shape}, "
                            f"expected ({n}, 3)")
        if self.lst_array is not None and self.lst_array.shape != (n,):
            raise self._err(f"header field lst_array has shape {self.lst_array.shape}")
        nants = self.antenna_numbers.shape[0]
        if self.antenna_positions.shape != (nants, 3):
            raise self._err(f"antenna_positions has shape {self.antenna_positions.shape},"
                            f" expected ({nants}, 3)")
        if self.freq_array.ndim != 1 or self.freq_array.size < 1:
            raise self._err(f"freq_array has shape {self.freq_array.shape}")
        if self.channel_width.shape != self.freq_array.shape:
            raise self._err("channel_width does not match freq_array in shape")
        known = set(self.antenna_numbers.tolist())
        used = set(np.unique(self.ant_1_array).tolist()) | set(np.unique(self.ant_2_array)
                                                                .tolist())
        if not used <= known:
            raise self._err(f"baselines use antennas {sorted(used - known)[:5]} that are "
                            "not in antenna_numbers")
        for name in ("time_array", "uvw_array", "freq_array", "antenna_positions",
                     "integration_time"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise self._err(f"header field {name} holds non-finite values")
        lo, hi = JD_RANGE
        bad_t = (self.time_array < lo) | (self.time_array > hi)
        if np.any(bad_t):
            raise self._err(f"time_array holds {self.time_array[bad_t][0]:.6g}, not a "
                            f"plausible Julian date ({lo:.0f}..{hi:.0f})")
        if np.any(self.freq_array <= 0):
            raise self._err("freq_array holds non-positive frequencies")
        if np.any(self.integration_time <= 0):
            raise self._err("integration_time holds non-positive values")

    def _err(self, problem: str) -> InputError:
        return InputError(problem, files=[str(self.path)] if self.path is not None else [])

    @property
    def nblts(self) -> int:
        return int(self.time_array.shape[0])

    @property
    def nfreqs(self) -> int:
        return int(self.freq_array.shape[0])

    @property
    def npols(self) -> int:
        return int(self.polarization_array.shape[0])

    @property
    def nbls(self) -> int:
        return self.nblts // max(self.ntimes, 1)

    @property
    def descending(self) -> bool:
        return self.nfreqs > 1 and bool(self.freq_array[0] > self.freq_array[-1])

    @property
    def freqs_ascending(self) -> np.ndarray:
        return self.freq_array[::-1] if self.descending else self.freq_array

    @property
    def widths_ascending(self) -> np.ndarray:
        w = np.abs(self.channel_width)
        return w[::-1] if self.descending else w

    @property
    def nbytes_per_row(self) -> int:
        """Bytes of one row of (vis complex64, flag bool, nsamples float32) in the MS."""
        return self.nfreqs * self.npols * (8 + 1 + 4)

    def integration_rows(self) -> list[tuple[int, int]]:
        """Row ranges [start, stop) of each integration (rows are time-ordered blocks)."""
        t = self.time_array
        edges = np.flatnonzero(np.diff(t) != 0) + 1
        starts = np.concatenate([[0], edges])
        stops = np.concatenate([edges, [t.size]])
        return list(zip(starts.tolist(), stops.tolist(), strict=True))


__all__ = ["JD_RANGE", "UVH5Header"]
