"""How sparse a channel subset may be before it aliases sources into the image.

Every ``s``-th channel samples each baseline's radial track in the uv plane at steps of
``|b| s dnu / c`` wavelengths, so a source also appears, weakened, on rings
``c / (|b| s dnu)`` radians from it: the grating response of the sparse sampling. A subset
stands for all channels only where no such ring of any baseline falls inside the image: for
a source anywhere in it, beyond the image's diagonal; for one at its centre (what the imager
asks, ``imager._alias_free_stride``), beyond its half diagonal.
"""

from __future__ import annotations

import math

from dsa110_pipeline.instrument import SPEED_OF_LIGHT


def alias_radius(baseline_m: float, channel_step_hz: float) -> float:
    """Distance (rad) from a source of its nearest aliased ring: baseline ``baseline_m``
    (projected, metres) sampled every ``channel_step_hz``."""
    if baseline_m <= 0 or channel_step_hz <= 0:
        return math.inf
    return SPEED_OF_LIGHT / (baseline_m * channel_step_hz)


def alias_free_stride(max_baseline_m: float, channel_width_hz: float,
                      image_diagonal: float) -> int:
    """Largest channel stride whose aliased rings from the longest baseline lie beyond the
    image diagonal (rad); at least 1."""
    if max_baseline_m <= 0 or channel_width_hz <= 0 or image_diagonal <= 0:
        return 1
    return max(1, int(SPEED_OF_LIGHT / (max_baseline_m * channel_width_hz * image_diagonal)))


__all__ = ["alias_free_stride", "alias_radius"]
