import numpy as np
import pytest

from dsa110_pipeline.instrument import SPEED_OF_LIGHT
from stages.imaging.channel_subset import alias_free_stride, alias_radius


def _response(baseline_m: float, freqs: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Dirty beam of one baseline along its own direction, summed over ``freqs``
    (normalised to 1 at the source)."""
    phase = 2 * np.pi * baseline_m * freqs[None, :] * np.sin(theta)[:, None] / SPEED_OF_LIGHT
    return np.cos(phase).mean(axis=1)


def test_every_sth_channel_aliases_a_source_onto_the_predicted_ring():
    b, width, s = 2900.0, 244140.625, 16
    freqs = 1.311e9 + width * np.arange(0, 768, s)
    r = alias_radius(b, s * width)
    theta = np.linspace(0.5 * r, 1.5 * r, 20001)
    resp = _response(b, freqs, theta)
    # the sparse sampling's grating response: a full-height copy at the predicted distance
    # (to within the band's fractional width, which smears it radially)
    peak = theta[np.argmax(resp)]
    assert resp.max() > 0.95
    assert peak == pytest.approx(r, rel=0.08)
    # every channel: no such copy anywhere near
    all_resp = _response(b, 1.311e9 + width * np.arange(768), theta)
    assert np.abs(all_resp).max() < 0.05


def test_alias_free_stride_keeps_the_rings_beyond_the_image():
    b, width = 2905.0, 244140.625
    diagonal = np.hypot(2048, 2048) * np.radians(6 / 3600)
    s = alias_free_stride(b, width, diagonal)
    assert s == 5  # DSA-110 full scale: 2.9 km, 244 kHz channels, a 3.4 deg image
    assert alias_radius(b, s * width) >= diagonal > alias_radius(b, (s + 1) * width)
    # the demo's 1.46 MHz channels alias within the image at any stride
    assert alias_free_stride(b, 6 * width, diagonal) == 1
    assert alias_free_stride(0.0, width, diagonal) == 1
