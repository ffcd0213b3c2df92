"""The field model's sources: the survey near the pointing, and bright sources in the beam's
sidelobes by their apparent flux."""

from __future__ import annotations

import numpy as np

from stages.calibration.sky import field_sources
from stages.calibration.sky import geometry as _geometry

DEC = np.radians(71.7)
#: the Airy power pattern's first sidelobe: 1.75 % of the peak at x = pi D sin(theta) / lambda
#: = 5.136 (a property of (2 J1(x) / x)^2), i.e. 4.31 deg for a 4.65 m dish at 1.4 GHz
SIDELOBE_DEG = np.degrees(np.arcsin(5.136 * 299792458.0 / 1.4e9 / (np.pi * 4.65)))


def test_a_bright_source_in_the_first_sidelobe_joins_the_model(tmp_path):
    times = 61000.5 * 86400 + (np.arange(24) - 11.5) * 12.884902
    freqs = np.linspace(1.3113e9, 1.4985e9, 16)
    lst, _, _ = _geometry(times, np.zeros(1), np.zeros(1))
    ra0 = float(lst[12])  # the pointing transits at the middle of the group
    ra0_deg, dec_deg = np.degrees(ra0), np.degrees(DEC)
    rows = [("NEAR", ra0_deg, dec_deg - 1.0, 0.05),           # inside 3 deg: kept
            ("FAINT_IN", ra0_deg, dec_deg + 1.5, 0.01),       # below the floor: dropped
            ("LOBE_BRIGHT", ra0_deg, dec_deg - SIDELOBE_DEG, 30.0),  # ~0.5 Jy apparent: kept
            ("LOBE_FAINT", ra0_deg, dec_deg - SIDELOBE_DEG, 0.5),    # ~9 mJy apparent: dropped
            ("FAR", ra0_deg, dec_deg - 12.0, 100.0)]          # beyond 10 deg: dropped
    cat = tmp_path / "survey_catalog.csv"
    cat.write_text("name,ra_deg,dec_deg,flux_jy,spectral_index,ref_freq_hz\n" + "".join(
        f"{n},{float(r)!r},{float(d)!r},{f!r},-0.7,1400000000.0\n" for n, r, d, f in rows))
    ra, dec, spec = field_sources(str(cat), times, ra0, float(DEC), freqs, np.radians(3.0),
                                  0.02, np.radians(10.0))
    got = sorted(np.round(np.degrees(dec) - dec_deg, 2))
    assert got == sorted([-1.0, round(-SIDELOBE_DEG, 2)])
    assert spec.shape == (2, freqs.size)
    # the inner source first, with its intrinsic (not beam-weighted) spectrum
    assert abs(np.degrees(dec[0]) - dec_deg + 1.0) < 1e-6
    np.testing.assert_allclose(spec[1], 30.0 * (freqs / 1.4e9) ** -0.7, rtol=1e-6)
    # without the sidelobe zone (radius = sidelobe radius = 3 deg) only the inner one stays
    ra3, _, _ = field_sources(str(cat), times, ra0, float(DEC), freqs, np.radians(3.0), 0.02,
                              np.radians(3.0))
    assert ra3.size == 1
