"""The product of a calibration solve: :class:`GainSolution`, the antenna gains of one kind
("B" bandpass, "G" time-dependent gains, "K" delays) with their flags, S/N and axes. It
is what :mod:`.solve` returns, :mod:`.caltable` writes and reads, and :mod:`.qa`,
:mod:`.apply` and :mod:`.field_phase` use."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class GainSolution:
    """Complex antenna gains of one calibration kind ("B" or "G", or "K" delays in s).

    ``gains`` has shape (n_sol_time, n_ant, n_sol_chan, n_pol); ``times`` are the centres
    (MJD s) and ``interval`` the widths (s) of the time intervals; ``freqs`` (Hz) the
    channel centres of the solutions (one value, the mean, for G).
    """

    kind: str
    gains: np.ndarray
    flags: np.ndarray
    snr: np.ndarray
    times: np.ndarray
    interval: np.ndarray
    freqs: np.ndarray
    refant: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("B", "G", "K"):
            raise ValueError(f"solution kind must be B, G or K, got {self.kind!r}")
        g = np.asarray(self.gains)
        if g.ndim != 4:
            raise ValueError(f"gains must be (n_time, n_ant, n_chan, n_pol), got {g.shape}")
        for name in ("flags", "snr"):
            if np.shape(getattr(self, name)) != g.shape:
                raise ValueError(f"{name} shape {np.shape(getattr(self, name))} != gains "
                                 f"shape {g.shape}")
        if np.shape(self.times) != (g.shape[0],) or np.shape(self.interval) != (g.shape[0],):
            raise ValueError("times and interval need one value per solution interval")
        if np.shape(self.freqs) != (g.shape[2],):
            raise ValueError(f"freqs shape {np.shape(self.freqs)} != ({g.shape[2]},)")
        if not 0 <= self.refant < g.shape[1]:
            raise ValueError(f"refant {self.refant} outside 0..{g.shape[1] - 1}")

    @property
    def n_ant(self) -> int:
        return self.gains.shape[1]

    @property
    def flagged_fraction(self) -> float:
        return float(np.mean(self.flags))


__all__ = ["GainSolution"]
