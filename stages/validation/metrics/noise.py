"""Image noise: a robust measurement and the radiometer-equation expectation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_pipeline.instrument import radiometer_noise

from ..background import robust_stats


@dataclass(frozen=True)
class NoiseStats:
    """Robust rms and median of the pixels used, their count, plus plain std."""

    rms: float
    median: float
    std: float
    n_pixels: int


def image_noise(pixels: np.ndarray) -> NoiseStats:
    """Sigma-clipped rms (IQR / 1.349) of the finite ``pixels`` (sources are clipped away)."""
    v = np.asarray(pixels).ravel()
    if not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float64)
    v = v[np.isfinite(v)]
    med, rms = robust_stats(v)
    std = float(v.std(dtype=np.float64)) if v.size else float("nan")
    return NoiseStats(rms=rms, median=med, std=std, n_pixels=int(v.size))


def theoretical_image_noise(sefd: float, n_antennas: int, bandwidth: float,
                            integration_time: float, flagged_fraction: float = 0.0,
                            n_pol: int = 2, weighting_factor: float = 1.0) -> float:
    """Stokes-I image rms (Jy/beam) for natural weighting:
    SEFD / sqrt(2 Δν τ) / sqrt(n_pol · n_baselines · (1 − flagged)), times the weighting loss.
    """
    if n_antennas < 2:
        raise ValueError("need at least two antennas")
    if not 0 <= flagged_fraction < 1:
        raise ValueError(f"flagged fraction must be in [0, 1), got {flagged_fraction}")
    n_bl = n_antennas * (n_antennas - 1) / 2
    sigma_vis = radiometer_noise(sefd, bandwidth, integration_time)
    return float(weighting_factor * sigma_vis / np.sqrt(n_pol * n_bl * (1 - flagged_fraction)))


__all__ = ["NoiseStats", "image_noise", "theoretical_image_noise"]
