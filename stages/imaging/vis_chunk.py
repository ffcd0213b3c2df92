"""Visibilities as the imager takes them: a block of rows, Stokes I, with weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VisChunk:
    """Stokes-I visibilities of some rows: uvw (n,3) m, freq (nchan,) Hz, vis (n,nchan) complex,
    weight (n,nchan) real (1/variance), mask (n,nchan) uint8 (non-zero = use) or None,
    time (n,) s or None (needed for the drift-beam prediction)."""

    uvw: np.ndarray
    freq: np.ndarray
    vis: np.ndarray
    weight: np.ndarray
    mask: np.ndarray | None = None
    time: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.uvw.shape[0]
        if self.uvw.ndim != 2 or self.uvw.shape[1] != 3:
            raise ValueError(f"uvw must have shape (nrow, 3), got {self.uvw.shape}")
        shape = (n, len(self.freq))
        for name in ("vis", "weight", "mask"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if not np.iscomplexobj(self.vis):
            raise ValueError("vis must be complex")
        if self.time is not None and self.time.shape != (n,):
            raise ValueError(f"time has shape {self.time.shape}, expected ({n},)")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.uvw, self.vis, self.weight, self.mask, self.time)
                   if a is not None)

    def data_weight(self) -> np.ndarray:
        """The data weights, zero where masked (float32)."""
        w = np.asarray(self.weight, dtype=np.float32)
        return w if self.mask is None else np.where(self.mask != 0, w, np.float32(0))

    def sampling(self) -> tuple[float, float]:
        """(longest projected baseline (m), narrowest channel step (Hz))."""
        uvw, freq = self.uvw, self.freq
        b = float(np.sqrt(np.max(uvw[:, 0] ** 2 + uvw[:, 1] ** 2))) if len(uvw) else 0.0
        step = float(np.min(np.abs(np.diff(np.sort(freq))))) if len(freq) > 1 else np.inf
        return b, step
