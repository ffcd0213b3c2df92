"""Imaging weights over a pass of chunks, and what they add up to: the weight sums, the
thermal-noise expectation of the image, and the weights per channel and integration (the
drift-beam model's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .vis_chunk import VisChunk
from .weighting import apply_weighting, weight_sums


def weighted(chunks: Iterable[VisChunk], weighting: dict[str, Any],
             density: np.ndarray | None) -> Iterable[tuple[VisChunk, np.ndarray]]:
    """Each chunk with its imaging weights (``weighting``: ``apply_weighting``'s settings)."""
    for ch in chunks:
        w = apply_weighting(ch.uvw, ch.freq, ch.weight, ch.mask, density=density,
                            **weighting)
        yield ch, w


class WeightStats:
    """Weight sums, thermal-noise expectation and per-channel weights of the imaging weights."""

    def __init__(self) -> None:
        self.wsum = 0.0
        self.var_sum = 0.0
        self.freq_w: dict[float, float] = {}
        #: (distinct times, freq, weight sums (ntime, nchan)) per chunk
        self.time_w: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, freq: np.ndarray, data_w: np.ndarray, w: np.ndarray,
            time: np.ndarray | None = None) -> None:
        """Count imaging weights ``w`` made from data weights ``data_w`` (rows timed by
        ``time``: kept per integration and channel for the drift-beam model)."""
        wsum, var, chan, times, per_time = weight_sums(data_w, w, time)
        self.wsum += wsum
        self.var_sum += var
        for f, s in zip(freq, chan):
            self.freq_w[float(f)] = self.freq_w.get(float(f), 0.0) + float(s)
        if time is not None and len(time):
            self.time_w.append((times, freq, per_time))

    @property
    def expected_rms(self) -> float:
        """Thermal noise (Jy/beam) of an image made with these weights."""
        return float(np.sqrt(self.var_sum)) / self.wsum


def weigh_in_place(ch: VisChunk, weighting: dict[str, Any], density: np.ndarray | None,
                   stats: WeightStats, rows: int = 8192) -> np.ndarray:
    """Imaging weights of ``ch`` written over its data weights (float32), in row blocks."""
    wgt = ch.weight
    if wgt.dtype != np.float32 or not wgt.flags.c_contiguous or not wgt.flags.writeable:
        wgt = np.array(wgt, dtype=np.float32, order="C")
    for r0 in range(0, wgt.shape[0], rows):
        sl = slice(r0, r0 + rows)
        data_w = wgt[sl].copy()
        apply_weighting(ch.uvw[sl], ch.freq, wgt[sl], None if ch.mask is None else ch.mask[sl],
                        density=density, inplace=True, **weighting)
        stats.add(ch.freq, data_w, wgt[sl], None if ch.time is None else ch.time[sl])
    return wgt
