"""Synthetic restored images for the validation tests: Gaussian point sources at known
positions, attenuated by the Airy primary beam, plus beam-correlated noise, on a SIN WCS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_pipeline.instrument import airy_beam

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
FREQ = 1.405e9


@dataclass
class Synth:
    data: np.ndarray
    pb: np.ndarray
    wcs: WCS
    bmaj_arcsec: float
    bmin_arcsec: float
    bpa_deg: float
    freq: float
    noise_rms: float


def make_wcs(ra0_deg: float, dec0_deg: float, npix: int, cell_arcsec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [ra0_deg, dec0_deg]
    w.wcs.crpix = [npix // 2 + 1, npix // 2 + 1]
    w.wcs.cdelt = [-cell_arcsec / 3600.0, cell_arcsec / 3600.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.equinox = 2000.0
    return w


def gaussian_stamp(dx: np.ndarray, dy: np.ndarray, smaj: float, smin: float,
                   pa_rad: float) -> np.ndarray:
    """Unit-peak elliptical Gaussian; PA from +y (north) toward -x (east)."""
    a = -dx * np.sin(pa_rad) + dy * np.cos(pa_rad)
    b = dx * np.cos(pa_rad) + dy * np.sin(pa_rad)
    return np.exp(-0.5 * (a * a / smaj**2 + b * b / smin**2))


def make_image(ra_deg: np.ndarray, dec_deg: np.ndarray, flux_jy: np.ndarray, *,
               centre: tuple[float, float], npix: int = 1024, cell_arcsec: float = 8.0,
               beam: tuple[float, float, float] = (30.0, 22.0, 20.0), noise_rms: float = 1e-3,
               freq: float = FREQ, seed: int = 1, flux_scale: float = 1.0,
               shift_arcsec: tuple[float, float] = (0.0, 0.0), apply_pb: bool = True) -> Synth:
    """Restored image (Jy/beam, apparent) of point sources plus noise of rms ``noise_rms``.

    ``shift_arcsec`` moves every source by (ΔRA·cosδ, ΔDec); ``flux_scale`` multiplies fluxes.
    """
    wcs = make_wcs(centre[0], centre[1], npix, cell_arcsec)
    bmaj, bmin, bpa = beam
    smaj = bmaj / cell_arcsec / FWHM_PER_SIGMA
    smin = bmin / cell_arcsec / FWHM_PER_SIGMA
    pa = np.radians(bpa)
    yy, xx = np.mgrid[0:npix, 0:npix]
    # primary beam from the angular distance to the centre
    ra_c, dec_c = np.radians(centre)
    rr, dd = wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    rr, dd = np.radians(rr), np.radians(dd)
    cosang = (np.sin(dd) * np.sin(dec_c) + np.cos(dd) * np.cos(dec_c) * np.cos(rr - ra_c))
    theta = np.arccos(np.clip(cosang, -1, 1)).reshape(npix, npix)
    pb = airy_beam(theta, freq).astype(np.float32) if apply_pb else np.ones((npix, npix),
                                                                           np.float32)
    dec_s = np.asarray(dec_deg, float) + shift_arcsec[1] / 3600.0
    ra_s = np.asarray(ra_deg, float) + shift_arcsec[0] / 3600.0 / np.cos(np.radians(dec_s))
    x0, y0 = wcs.all_world2pix(ra_s, dec_s, 0)
    sky = np.zeros((npix, npix), np.float64)
    half = int(np.ceil(5 * smaj))
    for xs, ys, s, r, d in zip(x0, y0, flux_jy, ra_s, dec_s):
        if not (-half < xs < npix + half and -half < ys < npix + half):
            continue
        cosd = (np.sin(np.radians(d)) * np.sin(dec_c)
                + np.cos(np.radians(d)) * np.cos(dec_c) * np.cos(np.radians(r) - ra_c))
        att = airy_beam(np.arccos(np.clip(cosd, -1, 1)), freq) if apply_pb else 1.0
        xi, yi = int(round(xs)), int(round(ys))
        x_lo, x_hi = max(xi - half, 0), min(xi + half + 1, npix)
        y_lo, y_hi = max(yi - half, 0), min(yi + half + 1, npix)
        if x_lo >= x_hi or y_lo >= y_hi:
            continue
        gy, gx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
        sky[y_lo:y_hi, x_lo:x_hi] += (flux_scale * s * att
                                      * gaussian_stamp(gx - xs, gy - ys, smaj, smin, pa))
    rng = np.random.default_rng(seed)
    if noise_rms > 0:
        white = rng.standard_normal((npix, npix))
        ky = np.fft.fftfreq(npix)[:, None]
        kx = np.fft.rfftfreq(npix)[None, :]
        # Fourier transform of the (unnormalised) beam-shaped Gaussian kernel
        ka = -kx * np.sin(pa) + ky * np.cos(pa)
        kb = kx * np.cos(pa) + ky * np.sin(pa)
        kern = np.exp(-2 * np.pi**2 * (ka**2 * smaj**2 + kb**2 * smin**2))
        noise = np.fft.irfft2(np.fft.rfft2(white) * kern, s=(npix, npix))
        noise *= noise_rms / noise.std()
        sky += noise
    return Synth(data=sky.astype(np.float32), pb=pb, wcs=wcs, bmaj_arcsec=bmaj,
                 bmin_arcsec=bmin, bpa_deg=bpa, freq=freq, noise_rms=noise_rms)


def write_fits(path: Path, data: np.ndarray, s: Synth, *, beam: bool = True,
               extra: dict | None = None) -> Path:
    """Write a 4-D (RA, Dec, FREQ, STOKES) FITS image like the imaging stage does."""
    hdr = s.wcs.to_header()
    hdr["NAXIS"] = 4
    hdr["CTYPE3"], hdr["CRVAL3"], hdr["CDELT3"], hdr["CRPIX3"], hdr["CUNIT3"] = (
        "FREQ", s.freq, 187.5e6, 1.0, "Hz")
    hdr["CTYPE4"], hdr["CRVAL4"], hdr["CDELT4"], hdr["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    if beam:
        hdr["BMAJ"] = s.bmaj_arcsec / 3600.0
        hdr["BMIN"] = s.bmin_arcsec / 3600.0
        hdr["BPA"] = s.bpa_deg
    hdr["BUNIT"] = "Jy/beam"
    for k, v in (extra or {}).items():
        hdr[k] = v
    fits.PrimaryHDU(data=data[None, None].astype(np.float32), header=hdr).writeto(
        path, overwrite=True)
    return path


def theoretical_for(noise_rms: float, factor: float) -> dict:
    """Noise-model inputs that make the theoretical noise equal ``noise_rms / factor``."""
    from dsa110_pipeline.instrument import N_ACTIVE_ANTENNAS, SEFD

    nbl = N_ACTIVE_ANTENNAS * (N_ACTIVE_ANTENNAS - 1) / 2
    target = noise_rms / factor
    # σ_I = SEFD / sqrt(2 · n_pol · n_bl · Δν · t)   with n_pol = 2
    bandwidth = 11.71875e6
    t = (SEFD / target) ** 2 / (4.0 * nbl * bandwidth)
    return {"bandwidth_hz": bandwidth, "integration_time_s": float(t)}
