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
