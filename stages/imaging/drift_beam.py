"""The drift scan's moving primary beam in the major cycle's model prediction.

A meridian drift scan's dishes point at the meridian while the data are phased to one sky
position, so each source crosses the beam during the ~309 s of a group: at 1.4 GHz a source
1.2 deg east of the phase centre sees its beam response fall from 0.85 to 0.25. A CLEAN model
is in *apparent* units, the sky times the beam averaged over the data's weights; predicting it
with a static beam leaves the time- and frequency-variable part of every source in the
residual, where it shows as sidelobe stripes far above the thermal noise.

The correction: for the model components that matter most (largest ``|flux| x rms(ratio - 1)``),
the prediction gains ``flux x (B(t, nu) / B_mean - 1)`` by an exact direct Fourier sum, so the
sum of the gridded prediction and this term carries each such component with its beam at every
integration and channel. ``B_mean`` is the data-weighted mean over time and frequency, which
is what the dirty image measures at the component's position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsa110_pipeline.instrument import DISH_DIAMETER, SIDEREAL_RATE, airy_beam
from dsa110_pipeline.projection import radec_to_lmn

from .gridding import pixel_lm


def component_beams(l: np.ndarray, m: np.ndarray, drift: np.ndarray,  # noqa: E741
                    dec: float, freqs: np.ndarray, diameter: float = DISH_DIAMETER) -> np.ndarray:
    """Airy power beam (nt, ncomp, nfreq) at directions (l, m) about a phase centre at
    declination ``dec``, for a beam centre on that declination ``drift`` (nt,) rad of RA east
    of the phase centre (exact spherical distance)."""
    l, m = np.asarray(l, np.float64), np.asarray(m, np.float64)  # noqa: E741
    n = np.sqrt(np.maximum(0.0, 1.0 - l * l - m * m))
    # inverse SIN projection about (ra 0, dec): source RA offset and declination
    sin_dec_s = m * np.cos(dec) + n * np.sin(dec)
    ra_s = np.arctan2(l, n * np.cos(dec) - m * np.sin(dec))
    cos_dec_s = np.sqrt(np.maximum(0.0, 1.0 - sin_dec_s ** 2))
    cosang = sin_dec_s[None, :] * np.sin(dec) + cos_dec_s[None, :] * np.cos(dec) \
        * np.cos(ra_s[None, :] - np.asarray(drift, np.float64)[:, None])
    theta = np.arccos(np.clip(cosang, -1.0, 1.0))
    return airy_beam(theta[:, :, None], np.asarray(freqs)[None, None, :], diameter)


def track_beams(l: np.ndarray, m: np.ndarray, track: np.ndarray,  # noqa: E741
                freqs: np.ndarray, diameter: float = DISH_DIAMETER) -> np.ndarray:
    """Airy power beam (nt, ncomp, nfreq) at directions (l, m) about the phase centre, for a
    beam centre at ``track`` (nt, 2): its own (l, m) at each time (exact spherical distance)."""
    l, m = np.asarray(l, np.float64), np.asarray(m, np.float64)  # noqa: E741
    tl, tm = np.asarray(track, np.float64).T
    n = np.sqrt(np.maximum(0.0, 1.0 - l * l - m * m))
    tn = np.sqrt(np.maximum(0.0, 1.0 - tl * tl - tm * tm))
    cosang = tl[:, None] * l[None] + tm[:, None] * m[None] + tn[:, None] * n[None]
    theta = np.arccos(np.clip(cosang, -1.0, 1.0))
    return airy_beam(theta[:, :, None], np.asarray(freqs)[None, None, :], diameter)


def lmn_track(l: np.ndarray, m: np.ndarray, ntimes: int) -> np.ndarray:  # noqa: E741
    """(ntimes, n, 3) direction cosines of fixed directions (l, m), as the DFT kernel takes."""
    n = np.sqrt(np.maximum(0.0, 1.0 - l ** 2 - m ** 2))
    return np.ascontiguousarray(np.broadcast_to(np.stack([l, m, n], axis=-1)[None],
                                                (ntimes, len(l), 3)))


def beam_ratio(beams: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``B / B_mean`` per component, B_mean its mean over (time, freq) with ``weights`` (nt, nf)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (beams.shape[0], beams.shape[2]):
        raise ValueError(f"weights shape {w.shape} does not match beams {beams.shape}")
    if w.sum() <= 0:
        raise ValueError("beam weights sum to zero")
    mean = np.einsum("tcf,tf->c", beams, w) / w.sum()
    return beams / np.maximum(mean, 1e-12)[None, :, None]


def ratio_rms(ratio: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted rms over (time, freq) of ``ratio - 1`` per component."""
    w = np.asarray(weights, dtype=np.float64)
    return np.sqrt(np.einsum("tcf,tf->c", (ratio - 1.0) ** 2, w) / w.sum())


@dataclass(frozen=True)
class SkySources:
    """Catalog point sources around the field: direction cosines (l, m) about the phase
    centre, flux (Jy) at ``ref_freq`` (Hz) and spectral index, one value per source."""

    l: np.ndarray  # noqa: E741
    m: np.ndarray
    flux: np.ndarray
    alpha: np.ndarray
    ref_freq: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.l)
        for name in ("m", "flux", "alpha", "ref_freq"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"sky sources: {name} has {len(getattr(self, name))} values, "
                                 f"l has {n}")

    def spectrum(self, idx: np.ndarray, freqs: np.ndarray) -> np.ndarray:
        """Flux (nidx, nfreq) of sources ``idx`` at ``freqs``."""
        return self.flux[idx, None] * (freqs[None, :] / self.ref_freq[idx, None]) \
            ** self.alpha[idx, None]


def sources_about(ra: np.ndarray, dec: np.ndarray, flux: np.ndarray, alpha: np.ndarray,
                  ref_freq: np.ndarray, ra0: float, dec0: float, radius: float) -> SkySources:
    """Catalog sources (rad, Jy, Hz) within ``radius`` (rad) of (ra0, dec0), as direction
    cosines about that centre (SIN projection)."""
    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    cosd = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
    keep = cosd >= np.cos(radius)
    l, m = radec_to_lmn(ra[keep], dec[keep], ra0, dec0)[:, :2].T  # noqa: E741
    return SkySources(l=l, m=m, flux=np.asarray(flux, np.float64)[keep],
                      alpha=np.asarray(alpha, np.float64)[keep],
                      ref_freq=np.asarray(ref_freq, np.float64)[keep])


@dataclass(frozen=True)
class DriftBeamModel:
    """Everything the correction needs about the observation: unique integration times (s),
    the phase-centre time and declination, the data weight per (time, frequency) and those
    frequencies, and how many model components to correct at most."""

    times: np.ndarray
    t_mid: float
    dec: float
    freqs: np.ndarray
    weights: np.ndarray
    max_components: int = 100
    #: components whose ``|flux| x rms(ratio - 1)`` is below this (Jy) are left static
    floor_jy: float = 0.0
    diameter: float = DISH_DIAMETER
    #: catalog sources: a component within ``match_radius`` (rad) of one takes its spectral
    #: index (others ``default_alpha``); sources outside the image (``|l|, |m| >
    #: half_extent``) brighter than ``outlier_min_jy`` (time-mean apparent, Jy) are predicted
    #: from the catalog in full, since CLEAN cannot model them
    sky: SkySources | None = None
    match_radius: float = 0.0
    default_alpha: float = 0.0
    half_extent: tuple[float, float] = (np.inf, np.inf)
    outlier_min_jy: float = np.inf
    #: spectral indices measured from the data (``spectral.py``) at bright sources: a
    #: component within ``match_radius`` of one takes its index before the catalog's
    measured: SkySources | None = None
    #: (nt, 2) the beam centre's own (l, m) about the phase centre at each of ``times``
    #: (``pointing.beam_centre_track``); None: drifting along the phase centre's declination
    #: at the sidereal rate, which misses how the precession of the equinoxes turns the
    #: apparent meridian's track in the ICRS frame (3e-4 of the beam at dec +52, 0.3 %)
    track: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.weights.shape != (len(self.times), len(self.freqs)):
            raise ValueError(f"weights shape {self.weights.shape} is not (ntimes, nfreqs) = "
                             f"{(len(self.times), len(self.freqs))}")
        if self.track is not None and np.shape(self.track) != (len(self.times), 2):
            raise ValueError(f"track shape {np.shape(self.track)} is not (ntimes, 2) = "
                             f"{(len(self.times), 2)}")

    def time_index(self, times: np.ndarray) -> np.ndarray:
        """Index of each row's time in ``times`` (the rows' own integration times)."""
        return np.searchsorted(self.times, times)

    def _drift(self) -> np.ndarray:
        """RA offset (rad) of the beam centre east of the phase centre at each time."""
        return SIDEREAL_RATE * (self.times - self.t_mid)

    def _beams(self, l: np.ndarray, m: np.ndarray, ts: np.ndarray | slice = slice(None),  # noqa: E741
               fs: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Beam (nt, ncomp, nfreq) of components at (l, m) at times ``ts`` and channels
        ``fs``: about the pointing ``track`` when known, else about a beam centre drifting
        along the phase centre's declination at the sidereal rate."""
        if self.track is not None:
            return track_beams(l, m, self.track[ts], self.freqs[fs], self.diameter)
        return component_beams(l, m, self._drift()[ts], self.dec, self.freqs[fs],
                               self.diameter)

    def _spectral_shape(self, l: np.ndarray, m: np.ndarray) -> np.ndarray:  # noqa: E741
        """(ncomp, nfreq) relative spectra ``(nu / nu_mid) ** alpha`` of components at (l, m)."""
        f_mid = float(np.median(self.freqs))
        return (self.freqs[None, :] / f_mid) ** self.alpha_at(l, m)[:, None]

    def alpha_at(self, l: np.ndarray, m: np.ndarray) -> np.ndarray:  # noqa: E741
        """Spectral index of components at (l, m): measured, else the catalog's, else the
        default."""
        alpha = np.full(len(l), self.default_alpha)
        for sky in (self.sky, self.measured):  # the measured index overrides the catalog's
            if sky is None or not len(sky.l) or self.match_radius <= 0:
                continue
            d2 = (l[:, None] - sky.l[None, :]) ** 2 + (m[:, None] - sky.m[None, :]) ** 2
            near = np.argmin(d2, axis=1)
            ok = d2[np.arange(len(l)), near] <= self.match_radius ** 2
            alpha[ok] = sky.alpha[near[ok]]
        return alpha

    def outliers(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(lmn (nt, n, 3), apparent flux (nt, n, nfreq)) of the catalog sources outside the
        image brighter than ``outlier_min_jy``, or None."""
        return self.catalog_tracks(inside=False, min_jy=self.outlier_min_jy)

    def catalog_tracks(self, inside: bool, min_jy: float, most: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """(lmn (nt, n, 3), apparent flux (nt, n, nfreq)) of the catalog sources inside (or
        outside) the image whose time-mean apparent flux is at least ``min_jy``, the
        brightest ``most`` of them, brightest first; None if there are none."""
        sky = self.sky
        if sky is None or not len(sky.l) or not np.isfinite(min_jy):
            return None
        outside = (np.abs(sky.l) > self.half_extent[0]) | (np.abs(sky.m) > self.half_extent[1])
        sel = np.flatnonzero(~outside if inside else outside)
        if sel.size == 0:
            return None
        app = self._beams(sky.l[sel], sky.m[sel]) * sky.spectrum(sel, self.freqs)[None]
        w = self.weights
        mean_app = np.einsum("tcf,tf->c", app, w) / max(w.sum(), 1e-300)
        keep = np.flatnonzero(mean_app >= min_jy)
        keep = keep[np.argsort(-mean_app[keep], kind="stable")][:most]
        if keep.size == 0:
            return None
        return (lmn_track(sky.l[sel[keep]], sky.m[sel[keep]], len(self.times)),
                np.ascontiguousarray(app[:, keep]))

    def band_factors(self, l: np.ndarray, m: np.ndarray, chans: list[np.ndarray]  # noqa: E741
                     ) -> np.ndarray:
        """(n, K) mean over the data's weights of ``B S / mean(B S)`` of components at (l, m)
        over each channel group ``chans[k]`` (indices into ``freqs``): what the prediction
        gives each sub-band relative to the component's flux."""
        ratio = beam_ratio(self._beams(l, m) * self._spectral_shape(l, m)[None], self.weights)
        out = np.empty((len(l), len(chans)))
        for k, c in enumerate(chans):
            w = self.weights[:, c]
            out[:, k] = np.einsum("tcf,tf->c", ratio[:, :, c], w) / max(w.sum(), 1e-300)
        return out

    def point_sources(self, l: np.ndarray, m: np.ndarray, flux: np.ndarray  # noqa: E741
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(lmn (nt, n, 3), flux (nt, n, nfreq)) of point sources at (l, m) whose apparent
        (data-weighted mean) flux is ``flux``: each with its moving beam and spectrum."""
        ratio = beam_ratio(self._beams(l, m) * self._spectral_shape(l, m)[None], self.weights)
        return lmn_track(l, m, len(self.times)), \
            np.ascontiguousarray(np.asarray(flux, np.float64)[None, :, None] * ratio)

    def correction(self, model: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(lmn (nt, nc, 3), delta_flux (nt, nc, nfreq)) of the chosen components, or None.

        ``delta_flux = flux x (B S / mean(B S) - 1)`` (S the component's relative spectrum) is
        what a static, flat-spectrum prediction of the model misses at each integration and
        frequency.
        """
        iy, ix = np.nonzero(model)
        if iy.size == 0 or self.max_components <= 0:
            return None
        flux = model[iy, ix].astype(np.float64)
        l_row, m_col = pixel_lm(*model.shape, cell)
        l, m = l_row[0, ix], m_col[iy, 0]  # noqa: E741
        # score on a coarse (time, freq) sampling: the beam is smooth in both
        ts = np.unique(np.linspace(0, len(self.times) - 1, min(len(self.times), 7)).round()
                       .astype(int))
        fs = np.unique(np.linspace(0, len(self.freqs) - 1, min(len(self.freqs), 5)).round()
                       .astype(int))
        w_c = self.weights[np.ix_(ts, fs)]
        if w_c.sum() <= 0:
            w_c = np.ones_like(w_c)
        shape = self._spectral_shape(l, m)
        score = np.abs(flux) * ratio_rms(beam_ratio(
            self._beams(l, m, ts, fs) * shape[None, :, fs], w_c), w_c)
        order = np.argsort(score)[::-1][:self.max_components]
        order = order[score[order] > self.floor_jy]
        if order.size == 0:
            return None
        ratio = beam_ratio(self._beams(l[order], m[order]) * shape[None, order], self.weights)
        delta = flux[order][None, :, None] * (ratio - 1.0)
        return lmn_track(l[order], m[order], len(self.times)), delta
