"""Group DSA-110 subband files into observations by the time stored inside them.

File names ``<YYYY-MM-DDTHH:MM:SS>_sbNN.hdf5`` jitter by up to ±60 s between the
subbands of one observation, so files are grouped by the first value of
``Header/time_array`` instead, within a tolerance. Incomplete groups are reported
with the subbands they miss; unreadable files are reported, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np

from dsa110_pipeline import instrument
from dsa110_pipeline.uvh5 import JD_RANGE

SUBBAND_NAME = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})_sb(?P<sb>\d{2})\.hdf5$")
#: Suffixes of files that look like visibility data: ignored ones are reported.
DATA_SUFFIXES = (".hdf5", ".h5", ".uvh5")
JD_UNIX_EPOCH = 2440587.5


@dataclass(frozen=True)
class SubbandFile:
    path: Path
    subband: int
    name_time: datetime
    start_jd: float  # first time_array value inside the file


@dataclass
class SubbandGroup:
    """One observation: its subband files (by subband index) and what is missing."""

    group_id: str
    start_jd: float
    files: dict[int, Path]
    expected: tuple[int, ...]
    duplicates: list[Path] = field(default_factory=list)

    @property
    def missing(self) -> list[int]:
        return [s for s in self.expected if s not in self.files]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.duplicates

    def ordered_files(self) -> list[Path]:
        return [self.files[s] for s in sorted(self.files)]

    def describe(self) -> str:
        if self.complete:
            return f"group {self.group_id}: complete ({len(self.files)} subbands)"
        parts = []
        if self.missing:
            parts.append("missing subbands " + ", ".join(f"sb{s:02d}" for s in self.missing))
        if self.duplicates:
            parts.append("duplicate files " + ", ".join(p.name for p in self.duplicates))
        return f"group {self.group_id}: incomplete: " + "; ".join(parts)


@dataclass
class DiscoveryResult:
    groups: list[SubbandGroup]
    unreadable: dict[Path, str]
    #: Files left out and why (a data-like file with a name not ``<time>_sbNN.hdf5``, a
    #: dangling symlink, a directory with a subband's name): reported, never silent.
    ignored: dict[Path, str] = field(default_factory=dict)

    @property
    def complete(self) -> list[SubbandGroup]:
        return [g for g in self.groups if g.complete]

    @property
    def incomplete(self) -> list[SubbandGroup]:
        return [g for g in self.groups if not g.complete]


def parse_name(path: Path) -> tuple[datetime, int] | None:
    """(UTC time in the name, subband index) of a DSA-110 subband file name, else None.

    The time is timezone-aware (UTC): a naive one would be read as local time."""
    m = SUBBAND_NAME.match(path.name)
    if not m:
        return None
    try:
        stamp = datetime.fromisoformat(m["stamp"]).replace(tzinfo=UTC)
    except ValueError:  # e.g. month 13
        return None
    return stamp, int(m["sb"])


def name_jd(path: Path) -> float | None:
    """The time in a subband file's name as a JD (UTC), else None."""
    parsed = parse_name(path)
    if parsed is None:
        return None
    return parsed[0].timestamp() / 86400.0 + JD_UNIX_EPOCH


def check_jd(jd: float, what: str = "time_array") -> None:
    """Raise ValueError unless ``jd`` is a finite, plausible observation time (JD)."""
    if not np.isfinite(jd):
        raise ValueError(f"{what} holds a non-finite value")
    if not JD_RANGE[0] <= jd <= JD_RANGE[1]:
        raise ValueError(f"{what} holds {jd:.6g}, not a plausible Julian date "
                         f"({JD_RANGE[0]:.0f}..{JD_RANGE[1]:.0f})")


def file_start_jd(path: Path) -> float:
    """First value of Header/time_array (JD), read without loading the array."""
    with h5py.File(path, "r") as f:
        return float(f["Header/time_array"][0])


def _jd_to_id(jd: float) -> str:
    from astropy.time import Time

    return Time(jd, format="jd", scale="utc").isot[:19]


def _ignored_reason(p: Path) -> str | None:
    """Why a directory entry is left out, when it deserves a mention; None otherwise."""
    if p.is_symlink() and not p.exists():
        return f"dangling symlink (-> {p.readlink()})"
    looks_like_data = p.suffix.lower() in DATA_SUFFIXES or SUBBAND_NAME.match(p.name)
    if not looks_like_data:
        return None
    if not p.is_file():
        return "not a regular file"
    if parse_name(p) is None:
        return ("name is not <YYYY-MM-DDTHH:MM:SS>_sbNN.hdf5 (a valid UTC time and a "
                "two-digit subband)")
    return None


def group_files(entries: list[SubbandFile], *, tolerance_s: float = instrument.FILENAME_JITTER,
                expected: tuple[int, ...] | None = None) -> list[SubbandGroup]:
    """Cluster subband files whose internal start times lie within ``tolerance_s`` of
    the first file of the cluster. ``expected`` defaults to all DSA-110 subbands."""
    exp = tuple(range(instrument.N_SUBBANDS)) if expected is None else tuple(expected)
    groups: list[SubbandGroup] = []
    for e in sorted(entries, key=lambda x: (x.start_jd, x.subband)):
        g = groups[-1] if groups else None
        if g is None or (e.start_jd - g.start_jd) * 86400.0 > tolerance_s:
            g = SubbandGroup(group_id=_jd_to_id(e.start_jd), start_jd=e.start_jd, files={},
                             expected=exp)
            groups.append(g)
        if e.subband in g.files:
            g.duplicates.append(e.path)
        else:
            g.files[e.subband] = e.path
    return groups


def discover(directory: str | Path, *, tolerance_s: float = instrument.FILENAME_JITTER,
             expected: tuple[int, ...] | None = None,
             files: Sequence[str | Path] | None = None) -> DiscoveryResult:
    """Find ``*_sbNN.hdf5`` files in ``directory`` (or only ``files``) and group them into
    observations."""
    entries: list[SubbandFile] = []
    bad: dict[Path, str] = {}
    ignored: dict[Path, str] = {}
    listed = Path(directory).iterdir() if files is None else (Path(f) for f in files)
    for p in sorted(listed):
        why = _ignored_reason(p)
        if why is not None:
            ignored[p] = why
            continue
        parsed = parse_name(p)
        if parsed is None or not p.is_file():
            continue
        try:
            jd = file_start_jd(p)
            check_jd(jd, "time_array[0]")
        except (OSError, KeyError, ValueError, IndexError, TypeError) as exc:
            bad[p] = f"unreadable ({type(exc).__name__}: {exc})"
            continue
        name_time, sb = parsed
        entries.append(SubbandFile(path=p, subband=sb, name_time=name_time, start_jd=jd))
    return DiscoveryResult(groups=group_files(entries, tolerance_s=tolerance_s,
                                              expected=expected), unreadable=bad,
                           ignored=ignored)
