"""The plan of one group's conversion: every header read and checked (small), each
subband placed on the ascending channel grid, the phase centre found and the phased uvw
of all rows computed (:func:`plan_conversion`). No visibility is read here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline import coordinates, instrument
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.uvh5 import UVH5Header

from . import phasing
from .discovery import parse_name
from .reader import STAGE, check_same_layout, read_header

_DEC_KEYS = ("phase_center_dec", "pointing_dec", "dec_pointing", "pointing_dec_rad",
             "dec_rad", "pointing_dec_deg", "dec_deg")


def _err(msg: str, files: Sequence[Any]) -> InputError:
    return InputError(msg, stage=STAGE, files=[str(f) for f in files])


@dataclass(frozen=True)
class FileInfo:
    """The little the plan keeps of a non-reference subband file."""

    path: Path
    freqs_ascending: np.ndarray
    widths_ascending: np.ndarray


@dataclass
class ConversionPlan:
    headers: list[Any]  # the reference UVH5Header, then FileInfo of the others
    slots: list[int]  # per header: position on the ascending subband grid
    nslots: int
    missing_slots: list[int]
    missing_names: list[str]
    nchan_sb: int
    spw_per_subband: bool
    freqs_by_slot: list[np.ndarray]
    widths_by_slot: list[np.ndarray]
    phase_center: tuple[float, float]  # ICRS rad
    phase_type: str
    uvw: np.ndarray  # (nblts, 3) pyuvdata convention, float64
    delta_w: np.ndarray | None  # (nblts,) m
    antenna_positions: np.ndarray
    telescope_xyz: np.ndarray
    chunks: list[tuple[int, int]]
    ant1: np.ndarray
    ant2: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> UVH5Header:
        return self.headers[0]

    @property
    def nrows(self) -> int:
        return self.ref.nblts * (self.nslots if self.spw_per_subband else 1)

    @property
    def nchan_row(self) -> int:
        return self.nchan_sb if self.spw_per_subband else self.nchan_sb * self.nslots

    def estimate_bytes(self, weight_spectrum: bool = True) -> int:
        """Scratch bytes: the MS."""
        per_vis = 8 + 1 + (4 if weight_spectrum else 0)
        data = self.nrows * self.nchan_row * self.ref.npols * per_vis
        return int(data + self.nrows * 200 + 4 * 2**20)


def conjugation_mask(hdr: UVH5Header) -> np.ndarray | None:
    """Rows to conjugate so all baselines are ant1 < ant2 (only when the file mixes both
    orders, as pyuvdata's ``write_ms`` does); None when nothing changes."""
    a1, a2 = hdr.ant_1_array, hdr.ant_2_array
    if np.any(a1 < a2) and np.any(a1 > a2):
        return a1 > a2
    return None


def _pointing_dec(hdr: UVH5Header, override_deg: float | None) -> float:
    if override_deg is not None:
        return float(np.deg2rad(override_deg))
    for key in _DEC_KEYS:
        if key in hdr.extra_keywords:
            val = float(hdr.extra_keywords[key])
            return float(np.deg2rad(val)) if key.endswith("deg") or abs(val) > np.pi / 2 + 1e-9 \
                else val
    if hdr.phase_center and hdr.phase_center.get("cat_lat") is not None and \
            hdr.phase_center.get("cat_type") != "unprojected":
        return float(hdr.phase_center["cat_lat"])
    return float(np.deg2rad(hdr.latitude_deg))  # zenith


def _station_positions(hdr: UVH5Header, station_csv: str, telescope_xyz: np.ndarray
                       ) -> np.ndarray:
    from dsa110_pipeline.array_layout import read_station_csv

    layout = read_station_csv(station_csv)
    by_name = {n: i for i, n in enumerate(layout.names)}
    by_num = {int(n): i for i, n in enumerate(layout.numbers)}
    idx = []
    for k, num in enumerate(hdr.antenna_numbers.tolist()):
        name = hdr.antenna_names[k] if k < len(hdr.antenna_names) else None
        if name in by_name:
            idx.append(by_name[name])
        elif num in by_num:
            idx.append(by_num[num])
        else:
            raise _err(f"antenna {name or num} is not in the station table {station_csv}",
                       [hdr.path, station_csv])
    return layout.ecef[np.array(idx)] - telescope_xyz


def _refuse_duplicate_subbands(paths: Sequence[str | Path]) -> None:
    """Raise InputError naming both files when two files carry one subband index."""
    seen: dict[int, Path] = {}
    for p in map(Path, paths):
        parsed = parse_name(p)
        if parsed is None:
            continue
        sb = parsed[1]
        if sb in seen:
            raise _err(f"two files for subband sb{sb:02d}: {seen[sb].name} and {p.name} "
                       "(duplicate subband; remove the wrong one)", [seen[sb], p])
        seen[sb] = p


def plan_conversion(paths: Sequence[str | Path], *, allow_partial: bool = False,
                    expected_subbands: Sequence[int] | None = None,
                    spw_per_subband: bool = False, chunk_integrations: int = 4,
                    pointing_dec_deg: float | None = None,
                    station_csv: str | None = None) -> ConversionPlan:
    """Read and check all headers and compute everything the writers need."""
    if not paths:
        raise _err("no input files", [])
    _refuse_duplicate_subbands(paths)
    ref = read_header(paths[0])
    headers: list[Any] = [ref]
    for p in paths[1:]:
        h = read_header(p)
        check_same_layout(ref, h)
        if h.nfreqs > 1 and ref.nfreqs > 1 and h.descending != ref.descending:
            order = {True: "descending", False: "ascending"}
            raise _err(f"freq_array is {order[h.descending]} but {ref.path.name}'s is "
                       f"{order[ref.descending]}: the channel order disagrees with the other "
                       "subbands", [h.path])
        if not np.allclose(h.widths_ascending, ref.widths_ascending, rtol=1e-9):
            raise _err(f"channel width differs from that of {ref.path.name}", [h.path])
        # keep only what the plan needs: memory stays at one header per file read
        headers.append(FileInfo(h.path, h.freqs_ascending.copy(), h.widths_ascending.copy()))
        del h
    # --- place the subbands on one ascending grid ---------------------------------
    nchan = ref.nfreqs
    width = float(np.median(ref.widths_ascending))
    band = nchan * width
    lows = np.array([h.freqs_ascending[0] for h in headers])
    order = np.argsort(lows)
    base = lows[order[0]]
    rel = (lows - base) / band
    slots = np.rint(rel).astype(int)
    if np.any(np.abs(rel - slots) * band > 0.01 * width):
        bad = headers[int(np.argmax(np.abs(rel - slots)))]
        raise _err("subband frequencies are not on a common channel grid with the others",
                   [bad.path])
    if len(set(slots.tolist())) != len(slots):
        dup = [h.path for h, s in zip(headers, slots, strict=True)
               if list(slots).count(s) > 1]
        raise _err("several files cover the same frequencies (duplicate subband)", dup)
    names = [parse_name(h.path) for h in headers]
    missing_names: list[str] = []
    if all(n is not None for n in names):
        sbs = np.array([n[1] for n in names])  # type: ignore[index]
        # DSA-110: a higher subband index is a lower frequency
        implied = slots + sbs
        if np.any(implied != implied[0]):
            raise _err("subband indices in the file names disagree with the files' "
                       "frequencies", [h.path for h in headers])
        top = int(implied[0])  # slot + sb is constant
        present = set(sbs.tolist())
        # a DSA-110 group has every subband: a missing edge subband is as missing as a
        # missing middle one (else the MS's band would differ from the calibrator's)
        want = (set(expected_subbands) if expected_subbands is not None
                else set(range(instrument.N_SUBBANDS)))
        missing_sbs = sorted(want - present)
        extra = sorted(present - want)
        if extra:
            raise _err("files of unexpected subbands " + ", ".join(f"sb{s:02d}" for s in extra),
                       [h.path for h, n in zip(headers, names, strict=True)
                        if n and n[1] in extra])
        all_sbs = sorted(want | present)
        shift = top - max(all_sbs)  # slot of the highest subband index
        slots = np.array([top - s for s in sbs]) - shift
        missing_slots = sorted(top - s - shift for s in missing_sbs)
        missing_names = [f"sb{s:02d}" for s in missing_sbs]
        nslots = max(all_sbs) - min(all_sbs) + 1
    else:
        nslots = int(slots.max()) + 1
        missing_slots = sorted(set(range(nslots)) - set(slots.tolist()))
        missing_names = [f"{(base + s * band) / 1e6:.3f} MHz band" for s in missing_slots]
    if missing_slots and not allow_partial:
        raise _err("incomplete group: missing " + ", ".join(missing_names)
                   + " (set conversion.allow_partial to convert with the missing band "
                   "flagged, or conversion.expected_subbands to the subbands a reduced "
                   "observation has)",
                   [h.path for h in headers])
    ref_slot = int(slots[0])
    freqs_by_slot, widths_by_slot = [], []
    for s in range(nslots):
        if s in slots:
            h = headers[int(np.flatnonzero(slots == s)[0])]
            freqs_by_slot.append(h.freqs_ascending.copy())
            widths_by_slot.append(h.widths_ascending.copy())
        else:
            freqs_by_slot.append(ref.freqs_ascending + (s - ref_slot) * band)
            widths_by_slot.append(ref.widths_ascending.copy())
    allf = np.concatenate(freqs_by_slot)
    if not spw_per_subband and np.any(np.diff(allf) <= 0):
        raise _err("subband channels overlap: they cannot form one spectral window",
                   [h.path for h in headers])
    # --- geometry and phasing -------------------------------------------------------
    location = coordinates.earth_location(np.radians(ref.latitude_deg),
                                          np.radians(ref.longitude_deg), ref.altitude_m)
    txyz = np.array([location.x.value, location.y.value, location.z.value])
    antpos = (_station_positions(ref, station_csv, txyz) if station_csv
              else ref.antenna_positions)
    utimes, tidx = np.unique(ref.time_array, return_inverse=True)
    swap = conjugation_mask(ref)
    if ref.phase_type == "unprojected":
        dec = _pointing_dec(ref, pointing_dec_deg)
        tmid = 0.5 * (utimes[0] + utimes[-1])
        ra_c, dec_c = coordinates.meridian_phase_center(tmid, dec, location)
        if ref.lst_array is not None:
            ulst = np.zeros(utimes.size)
            ulst[tidx] = ref.lst_array
        else:
            ulst = coordinates.local_sidereal_time(utimes, location)
        app_ra, app_dec = (a[:, 0] for a in coordinates.apparent_coordinates(
            ra_c, dec_c, utimes, ulst, location))
        pa = coordinates.frame_position_angle(utimes, app_ra, app_dec, location)
        gha = ulst - app_ra - np.deg2rad(ref.longitude_deg)
        order = np.argsort(ref.antenna_numbers)
        a1 = order[np.searchsorted(ref.antenna_numbers, ref.ant_1_array, sorter=order)]
        a2 = order[np.searchsorted(ref.antenna_numbers, ref.ant_2_array, sorter=order)]
        uvw = phasing.baseline_uvw(antpos, a1, a2, tidx, gha, app_dec, pa)
        delta_w = uvw[:, 2].copy()
        if swap is not None:  # Δw of the conjugated rows refers to the swapped baseline
            delta_w[swap] *= -1.0
    elif ref.phase_type == "sidereal" and ref.phase_center is not None:
        pc = ref.phase_center
        ra_c, dec_c = float(pc["cat_lon"]), float(pc["cat_lat"])
        uvw = ref.uvw_array
        delta_w = None
    else:
        raise _err(f"phase type '{ref.phase_type}' is not supported (need unprojected drift "
                   "data or one sidereal phase centre)", [ref.path])
    ant1, ant2 = ref.ant_1_array.copy(), ref.ant_2_array.copy()
    if swap is not None:
        ant1[swap], ant2[swap] = ref.ant_2_array[swap], ref.ant_1_array[swap]
        uvw = uvw.copy()
        uvw[swap] *= -1.0
    # --- chunks of whole integrations ---------------------------------------------
    ints = ref.integration_rows()
    step = max(1, int(chunk_integrations))
    chunks = [(ints[i][0], ints[min(i + step, len(ints)) - 1][1])
              for i in range(0, len(ints), step)]
    return ConversionPlan(headers=headers, slots=[int(s) for s in slots], nslots=nslots,
                          missing_slots=missing_slots, missing_names=missing_names,
                          nchan_sb=nchan, spw_per_subband=spw_per_subband,
                          freqs_by_slot=freqs_by_slot, widths_by_slot=widths_by_slot,
                          phase_center=(ra_c, dec_c), phase_type=ref.phase_type, uvw=uvw,
                          delta_w=delta_w, antenna_positions=antpos, telescope_xyz=txyz,
                          chunks=chunks, ant1=ant1, ant2=ant2)


__all__ = ["ConversionPlan", "FileInfo", "plan_conversion", "conjugation_mask"]
