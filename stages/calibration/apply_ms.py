"""Applying bandpass and gain solutions to a Measurement Set: the I/O around the
apply kernels (:mod:`.apply`), chunk by chunk into a copy with CORRECTED_DATA, with the
target's flagging (:class:`FlagParams`) and cross-hand handling on the way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline import instrument
from dsa110_pipeline.atomic import atomic_path
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.threads import set_numba_threads

from . import msio
from .apply import apply_gains, apply_gains_cube, combine_bg, interpolate_gains
from .flag_antennas import FlagSummary
from .flagging import flag_all
from .msio import STAGE
from .rfi import RFIParams
from .sky import FieldModel, field_phases


def hands_metrics(meta: msio.MSMeta, par: tuple[int, ...], cross: tuple[int, ...],
                   mode: str) -> dict[str, str]:
    names = msio.correlation_names(meta) or tuple(str(i) for i in range(meta.n_pol))
    return {"correlations": ",".join(names),
            "solved_correlations": ",".join(names[i] for i in par),
            "cross_hands": ("none" if not cross else
                            "flagged" if mode == "flag" else "kept uncalibrated")}


def flag_hands(cube: msio.VisCube, par: tuple[int, ...], cross: tuple[int, ...], mode: str,
               n_ant: int, **kw) -> tuple[np.ndarray, np.ndarray, np.ndarray, FlagSummary]:
    """:func:`.flagging.flag_all` on the parallel hands of ``cube``; returns (parallel-hand
    visibilities, their flags, flags of all correlations for the calibrated MS, summary).

    Without cross hands the cube's own arrays are used (its flags as scratch). With them,
    the cross hands take no part in the flagging; in the output flags they are flagged
    where the data or either parallel hand of the sample is, and everywhere when ``mode``
    is "flag"."""
    if not cross:
        flags, fsum = flag_all(cube.vis, cube.flags, cube.ant1, cube.ant2, n_ant,
                               inplace=True, **kw)
        cube.flags = flags  # the MS's own flags served as scratch
        return cube.vis, flags, flags, fsum
    idx = list(par)
    vis = np.ascontiguousarray(cube.vis[..., idx])
    flags, fsum = flag_all(vis, np.ascontiguousarray(cube.flags[..., idx]),
                           cube.ant1, cube.ant2, n_ant, inplace=True, **kw)
    out = cube.flags
    out[..., idx] = flags
    any_par = flags.any(axis=-1)
    for k in cross:
        out[..., k] |= any_par
        if mode == "flag":
            out[..., k] = True
    return vis, flags, out, fsum


def _to_correlations(total: np.ndarray, tflags: np.ndarray, par: tuple[int, ...],
                     cross: tuple[int, ...], n_pol: int, mode: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Parallel-hand gains (…, n_par) laid out on all the MS's correlations: the cross
    hands get unit gains, flagged when ``mode`` is "flag"."""
    if not cross:
        return total, tflags
    t = np.ones(total.shape[:-1] + (n_pol,), total.dtype)
    f = np.zeros(t.shape, bool)
    t[..., list(par)] = total
    f[..., list(par)] = tflags
    f[..., list(cross)] = mode == "flag"
    return t, f


def apply_caltables(meta: msio.MSMeta, dst: str | Path, bandpass, gains, *,
                    flags: tuple[msio.VisCube, np.ndarray] | None = None,
                    chunk_rows: int = 20_000, nthreads: int | None = None,
                    copied: bool = False, cross_hands: str = "flag") -> Path:
    """Copy the MS of ``meta`` to ``dst`` with CORRECTED_DATA = DATA / (g_p conj(g_q)),
    g = G(t) B(ν), G interpolated in time. ``flags`` (cube, flags) adds the flagging result
    to FLAG; when that cube holds the visibilities of regularly ordered rows, they are
    corrected from memory, whole integrations at a time, and DATA is not read again
    (``copied``: ``dst`` is that copy already, made by :func:`msio.copy_ms`).
    Works for calibrator and target MSs alike. The tables hold the parallel hands: with
    four correlations the cross hands are flagged (``cross_hands`` "flag") or left as they
    are in DATA ("keep"), never divided by parallel-hand gains."""
    par, cross = msio.split_hands(meta)
    g_t, gf_t = interpolate_gains(gains.times, gains.gains, gains.flags, meta.times)
    bp = bandpass.gains[0]
    bpf = bandpass.flags[0]
    if bp.shape[1] != meta.freqs.size:
        raise InputError(f"bandpass has {bp.shape[1]} channels, MS {meta.freqs.size}",
                         stage=STAGE, files=[meta.path])
    if bp.shape[-1] != len(par):
        raise InputError(f"tables hold {bp.shape[-1]} polarisations, the MS "
                         f"{len(par)} parallel hands", stage=STAGE, files=[meta.path])
    total, tflags = combine_bg(bp, bpf, g_t, gf_t)
    total, tflags = _to_correlations(total, tflags, par, cross, meta.n_pol, cross_hands)
    if flags is not None and flags[0].vis is not None and flags[0].row_time is not None \
            and msio.regular_rows(flags[0].row_time, flags[0].row_bl, flags[0].vis.shape[1]):
        cube, fl = flags
        nt, nb, nc, npol = cube.vis.shape
        step = max(1, chunk_rows // nb)
        set_numba_threads(nthreads)

        def chunks():
            for t0 in range(0, nt, step):
                t1 = min(t0 + step, nt)
                corr, cf = apply_gains_cube(cube.vis[t0:t1], fl[t0:t1], cube.ant1, cube.ant2,
                                            np.arange(t0, t1), total, tflags)
                n = (t1 - t0) * nb
                yield t0 * nb, corr.reshape(n, nc, npol), cf.reshape(n, nc, npol)

        if not copied:
            msio.copy_ms(meta.path, dst)
        msio.write_corrected_rows(dst, chunks())
        return Path(dst)

    def correct(data, flag, time_, a1, a2):
        ti = np.searchsorted(meta.times, time_)
        return apply_gains(data, flag, a1, a2, ti, total, tflags)

    extra = None
    if flags is not None:
        cube, fl = flags
        n_ant = meta.n_ant
        lookup = {int(a) * n_ant + int(b): i for i, (a, b) in
                  enumerate(zip(cube.ant1, cube.ant2, strict=True))}

        def extra(time_, a1, a2):
            ti = np.searchsorted(meta.times, time_)
            bi = np.array([lookup[int(a) * n_ant + int(b)] for a, b in zip(a1, a2,
                                                                           strict=True)])
            return fl[ti, bi]

    return msio.write_corrected(meta.path, dst, correct, extra_flags=extra,
                                chunk_rows=chunk_rows)


def apply_tables_to_ms(ms_path: str | Path, bandpass_table: str | Path,
                       gain_table: str | Path, out_path: str | Path, *,
                       chunk_rows: int = 20_000, flag: FlagParams | None = None,
                       cross_hands: str = "flag", field: FieldModel | None = None,
                       threads: int | None = None) -> tuple[Path, dict]:
    """Apply a B and a G table (as written by this stage) to any MS (calibrator or target):
    a copy at ``out_path`` gets CORRECTED_DATA, written under a temporary name and renamed
    when complete. Gains are interpolated (nearest outside the solutions' span) in time.
    With ``field`` (and ``flag``), the target's phases are first refined on its field's
    catalog sources (``field_phase.py``). Returns (path, metrics)."""
    from .caltable import read_caltable

    meta = msio.read_ms_meta(ms_path)
    bp, g = read_caltable(bandpass_table), read_caltable(gain_table)
    if bp.kind != "B" or g.kind != "G":
        raise InputError(f"expected a B and a G table, got {bp.kind} and {g.kind}",
                         stage=STAGE, files=[str(bandpass_table), str(gain_table)])
    if bp.n_ant != meta.n_ant or g.n_ant != meta.n_ant:
        raise InputError(f"tables have {bp.n_ant}/{g.n_ant} antennas, the MS {meta.n_ant}",
                         stage=STAGE, files=[str(ms_path), str(bandpass_table)])
    if bp.freqs.shape != meta.freqs.shape or not np.allclose(bp.freqs, meta.freqs):
        raise InputError("bandpass channels differ from the MS channels", stage=STAGE,
                         files=[str(ms_path), str(bandpass_table)])
    flags = None
    metrics: dict[str, Any] = {}
    if flag is not None:
        # Targets get the calibrator's flagging too: zeros, NaNs, known RFI, SumThreshold.
        cube = msio.read_cube(meta)
        par, cross = msio.split_hands(meta)
        vis, pflags, fl, _ = flag_hands(
            cube, par, cross, cross_hands, meta.n_ant, freqs=meta.freqs,
            rfi_freqs=tuple(flag.rfi_frequencies_hz), rfi=RFIParams(
                threshold=flag.rfi_threshold), detect_rfi=flag.detect_rfi,
            min_good_fraction=flag.min_antenna_good_fraction)
        flags = (cube, fl)
        if field is not None:
            g, metrics = field_phases(meta, cube, vis, pflags, bp, g, field, threads)
    final = Path(out_path)
    with atomic_path(final) as tmp:
        apply_caltables(meta, tmp, bp, g, chunk_rows=chunk_rows, flags=flags,
                        cross_hands=cross_hands)
    return final, metrics


@dataclass(frozen=True)
class FlagParams:
    """Flagging of a target MS before the tables are applied."""

    rfi_frequencies_hz: tuple[float, ...] = instrument.KNOWN_RFI_FREQUENCIES
    detect_rfi: bool = True
    rfi_threshold: float = 6.0
    min_antenna_good_fraction: float = 0.05


