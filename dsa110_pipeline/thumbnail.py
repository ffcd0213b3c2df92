"""A small PNG of an image plane (block-averaged, robust grey scale), for pages that show
many images at once (the night summary)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .robust import robust_rms


def thumbnail_png(data: np.ndarray, path: str | Path, max_px: int = 256) -> Path:
    """Write ``data`` (ny, nx; NaN blank) block-averaged to at most ``max_px`` on its long
    side, north up, grey from -3 to +15 robust sigmas of the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.asarray(data, dtype=np.float64)
    f = max(1, int(np.ceil(max(a.shape) / max_px)))
    ny, nx = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    with warnings.catch_warnings():  # blank blocks stay NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        small = np.nanmean(a[:ny, :nx].reshape(ny // f, f, nx // f, f), axis=(1, 3))
    good = small[np.isfinite(small)]
    med = float(np.median(good)) if good.size else 0.0
    sd = robust_rms(good, empty=1.0)
    sd = sd if sd > 0 else 1.0
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        plt.imsave(tmp, np.nan_to_num(small, nan=med), cmap="gray_r", origin="lower",
                   vmin=med - 3 * sd, vmax=med + 15 * sd, format="png")
    return out

