"""Fixtures of the validation tests: synthetic NVSS-field images written as FITS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsa110_pipeline.context import PipelineContext, ProductRef

from ._synth import FREQ, make_image, theoretical_for, write_fits

NVSS = "catalogs/nvss_3c454_field_dsa110_forced_phot.csv"
CENTRE = (343.0, 16.2)
NOISE = 2.5e-3  # Jy/beam of the clean image
#: A clean image sits a little above the radiometer noise (sidelobes, weighting).
CLEAN_NOISE_FACTOR = 1.15
NPIX = 1536
CELL = 8.0


@pytest.fixture(scope="session")
def nvss_csv(shared_data: Path) -> Path:
    p = shared_data / NVSS
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return p


def nvss_sky(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RA, Dec (deg) and flux at the image frequency of the catalog's sources."""
    from dsa110_pipeline.catalogs import read_catalog

    cat = read_catalog(path)
    return np.degrees(cat.ra), np.degrees(cat.dec), np.asarray(cat.flux_at(FREQ), float)


def write_case(folder: Path, csv: Path, *, flux_scale: float = 1.0,
               shift_arcsec: tuple[float, float] = (0.0, 0.0), noise: float = NOISE,
               with_sources: bool = True, seed: int = 7, beam: bool = True) -> dict:
    """Write image + pb FITS for one scenario; returns their paths and the noise-model meta
    (bandwidth and time that put the radiometer noise at NOISE / CLEAN_NOISE_FACTOR)."""
    folder.mkdir(parents=True, exist_ok=True)
    ra, dec, flux = nvss_sky(csv)
    if not with_sources:
        flux = flux * 0.0
    s = make_image(ra, dec, flux, centre=CENTRE, npix=NPIX, cell_arcsec=CELL, noise_rms=noise,
                   seed=seed, flux_scale=flux_scale, shift_arcsec=shift_arcsec)
    img = write_fits(folder / "image.fits", s.data, s, beam=beam)
    pb = write_fits(folder / "pb.fits", s.pb, s, beam=False)
    meta = theoretical_for(NOISE, CLEAN_NOISE_FACTOR)
    return {"image": img, "pb": pb, "meta": meta, "synth": s}


def stage_context(case: dict, group: str, roles: tuple[str, ...] = ("image", "pb")
                  ) -> PipelineContext:
    refs = []
    for role in roles:
        meta = {"role": role, **(case["meta"] if role == "image" else {})}
        refs.append(ProductRef.for_path("fits", case[role], **meta))
    return PipelineContext(group_id=group, inputs={"images": refs})
