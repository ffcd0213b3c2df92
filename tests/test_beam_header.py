"""The one restoring beam: FITS header cards written and read back."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from dsa110_pipeline.beam import Beam


def test_beam_round_trips_through_a_fits_header():
    beam = Beam.from_arcsec(26.0, 15.0, -30.0)
    hdr = fits.Header()
    for key, card in beam.header_cards().items():
        hdr[key] = card
    assert hdr["BMAJ"] == pytest.approx(26.0 / 3600) and hdr["BPA"] == -30.0
    back = Beam.from_header(hdr)
    assert back.bmaj == pytest.approx(beam.bmaj, rel=1e-12)
    assert back.bmin == pytest.approx(beam.bmin, rel=1e-12) and back.bpa == -30.0


def test_header_beams_are_put_right_or_refused():
    swapped = Beam.from_header({"BMAJ": 15 / 3600, "BMIN": 26 / 3600, "BPA": 10.0})
    assert swapped.bmaj == pytest.approx(np.radians(26 / 3600)) and swapped.bpa == -80.0
    assert Beam.from_header({"BMAJ": 1e-3}) is None
    assert Beam.from_header({"BMAJ": 0.0, "BMIN": 0.0}) is None
    assert Beam.from_header({"BMAJ": "x", "BMIN": 1.0}) is None
    with pytest.raises(ValueError):
        Beam(1e-4, 2e-4, 0.0)


def test_the_mean_position_angle_is_an_axis():
    """+89.7 and -89.9 deg are one orientation: their mean is about 90 deg (as -90), not
    the arithmetic -0.1 or, weighted 2:3, -49.8."""
    beams = [Beam.from_arcsec(26, 13, 89.73)] * 2 + [Beam.from_arcsec(26, 13, -89.9)] * 3
    m = Beam.mean(beams)
    # within 0.2 deg of the -89.9 axis (mod 180), and in [-90, 90)
    assert abs(((m.bpa + 89.9 + 90.0) % 180.0) - 90.0) < 0.2 and -90.0 <= m.bpa < 90.0
    assert Beam.mean([Beam.from_arcsec(26, 13, 10.0), Beam.from_arcsec(26, 13, 30.0)]).bpa \
        == pytest.approx(20.0)
    assert m.bmaj == pytest.approx(Beam.from_arcsec(26, 13, 0).bmaj)
