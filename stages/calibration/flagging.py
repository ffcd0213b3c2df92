"""The whole flagging sequence (:func:`flag_all`) of a visibility cube ``(n_time, n_bl,
n_chan, n_pol)``: bad samples and autocorrelations, known RFI channels
(:mod:`.flag_samples`), SumThreshold RFI detection (:mod:`.rfi`), dead antennas and the
flag summary (:mod:`.flag_antennas`). Nothing here does I/O."""

from __future__ import annotations

import numpy as np

from dsa110_pipeline.threads import set_numba_threads

from .flag_antennas import FlagSummary, flag_dead_antennas, flag_summary
from .flag_samples import channel_mask, flag_bad_samples
from .rfi import RFIParams, flag_rfi


def flag_all(vis: np.ndarray, flags: np.ndarray, ant1: np.ndarray, ant2: np.ndarray,
             n_ant: int, *, freqs: np.ndarray | None = None,
             rfi_freqs: tuple[float, ...] = (), rfi_channels: tuple[int, ...] = (),
             rfi: RFIParams | None = None, detect_rfi: bool = True,
             min_good_fraction: float = 0.05, nthreads: int = 1, inplace: bool = False
             ) -> tuple[np.ndarray, FlagSummary]:
    """The whole flagging sequence: bad samples and autos, known RFI channels, SumThreshold,
    dead antennas. Returns (new flags, summary). With ``inplace`` the input ``flags`` are
    used as scratch (their content afterwards is unspecified): two cubes of booleans less."""
    set_numba_threads(nthreads)
    out = flag_bad_samples(vis, flags, ant1, ant2, inplace=inplace)
    if freqs is not None and (len(rfi_freqs) or len(rfi_channels)):
        out[:, :, channel_mask(freqs, rfi_freqs, rfi_channels=rfi_channels)] = True
    if detect_rfi:  # autocorrelations are flagged already and take no part
        out = flag_rfi(vis, out, rfi, nthreads=nthreads, inplace=True, ant1=ant1, ant2=ant2)
    # ``out`` is this call's own array (or the caller's scratch): update it in place
    out, dead = flag_dead_antennas(out, ant1, ant2, n_ant, min_good_fraction=min_good_fraction,
                                   inplace=True)
    return out, flag_summary(out, ant1, ant2, n_ant, dead)


__all__ = ["flag_all"]
