"""The imaging pipeline on visibility chunks: weights, PSF, beam, CLEAN, restore, PB.

:func:`make_images` takes any re-iterable source of :class:`VisChunk` (a list held in memory,
or an object that reads a Measurement Set chunk by chunk on each pass) and makes every image
product. Passes over the data: one for the weight density (uniform/Briggs only), one for the
PSF, one for the dirty image, then one per major cycle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from dsa110_pipeline.dft import predict_visibilities_drift
from dsa110_pipeline.instrument import DISH_DIAMETER
from dsa110_pipeline.profiling import release_free_memory

from .beam import Beam, fit_beam, normalise_psf, restore
from .channel_subset import alias_free_stride
from .clean import CleanResult, deconvolve
from .drift_beam import DriftBeamModel, SkySources
from .gridding import image_to_vis, pixel_lm, vis_to_image
from .options import ImagingOptions
from .outliers import join_sources, on_channels, refine_outliers, subtract_sources
from .points import PointSources, add_points, point_sources, refine_positions
from .primary_beam import pb_correct, pb_image
from .psf_convolver import PsfConvolver
from .spectral import bright_clusters, spectral_correction
from .vis_chunk import VisChunk
from .weight_stats import WeightStats, weigh_in_place, weighted
from .weighting import apply_weighting, grid_weight_density

#: Fewest channels per approximate major cycle: fewer would change the PSF
_MIN_APPROX_CHANNELS = 32
#: Most spectral-index measurements per image, and how many of them on exact major cycles
#: once channel-subset cycles have made two or more (their fits settle the large errors
#: cheaply; an exact fit refines them to the thermal noise, and each fit changes the
#: prediction, so it costs an exact cycle more)
MAX_SPECTRAL_FITS = 10
MAX_EXACT_FITS = 1


@dataclass(frozen=True)
class ImagingParams:
    """What one call of :func:`make_images` needs: the image's geometry and the data's
    pointing and sky (per Measurement Set), and the settings (``opts``, the config's
    section as it is)."""

    npix_x: int
    npix_y: int
    cell: float  # rad
    opts: ImagingOptions = field(default_factory=ImagingOptions)
    nthreads: int = 1
    #: beam-centre offsets (l, m) from the phase centre, one or (n, 2) averaged (drift scan)
    pb_pointings: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    #: bytes of predicted visibilities held at once in a major cycle (row blocks beyond)
    predict_buffer_bytes: int = 1024 * 2**20
    #: (t_mid s, dec rad) of a meridian drift scan phased to the meridian at t_mid: the major
    #: cycles then predict the brightest model components with the moving beam (None: off)
    drift_track: tuple[float, float] | None = None
    #: (times (k,) s, (k, 2) l, m) of the beam centre about the phase centre at a few times
    #: (``pointing.beam_centre_track``), interpolated to every integration; None: the beam
    #: centre drifts along the phase centre's declination (see ``DriftBeamModel.track``)
    pointing_track: tuple[np.ndarray, np.ndarray] | None = None
    #: catalog sources around the field (with ``drift_track``): spectral indices of the
    #: bright components, and the sources outside the image brighter than
    #: ``opts.outlier_min_jy`` (apparent), which every pass subtracts from the visibilities
    sky: SkySources | None = None
    #: fixed restoring beam (None: fitted to the PSF main lobe, see ``beam.fit_beam``)
    beam: Beam | None = None
    #: dish diameter (m) of the Airy primary beam; None: no beam model, so no pb/pbcor
    dish_diameter: float | None = DISH_DIAMETER
    #: (npix_x, npix_y) of the uv grid the uniform/Briggs weights are counted on (None: the
    #: image's); a guard band (``opts.guard_px``) keeps the weights of the image without it
    weight_npix: tuple[int, int] | None = None

    @property
    def weighting(self) -> dict[str, Any]:
        """``weighting.apply_weighting``'s settings for these images."""
        nx, ny = self.weight_npix or (self.npix_x, self.npix_y)
        o = self.opts
        return dict(scheme=o.weighting, npix_x=nx, npix_y=ny, cell=self.cell, robust=o.robust,
                    uv_min=o.uv_min_lambda, uv_max=o.uv_max_lambda, taper_fwhm=o.taper_fwhm)


@dataclass
class ImagingResult:
    image: np.ndarray
    residual: np.ndarray
    model: np.ndarray
    psf: np.ndarray
    pb: np.ndarray | None
    pbcor: np.ndarray | None
    beam: Beam
    freq_ref: float
    bandwidth: float
    weight_sum: float
    expected_rms: float
    clean: CleanResult
    timings: dict[str, float] = field(default_factory=dict)
    #: spectral-index measurement: fits made, sources measured, last change (Jy)
    spectral: dict[str, float] = field(default_factory=dict)


def _drift_model(stats: WeightStats, p: ImagingParams,
                 match_radius: float) -> DriftBeamModel | None:
    """The moving-beam model of the data ``stats`` counted (None when off or rows carry no
    times)."""
    if p.drift_track is None or p.dish_diameter is None or p.opts.drift_components <= 0 \
            or not stats.time_w:
        return None
    times = np.unique(np.concatenate([t for t, _, _ in stats.time_w]))
    freqs = np.unique(np.concatenate([f for _, f, _ in stats.time_w]))
    wtf = np.zeros((times.size, freqs.size))
    for t, f, sums in stats.time_w:
        np.add.at(wtf, (np.searchsorted(times, t)[:, None], np.searchsorted(freqs, f)[None]),
                  sums)
    track = None
    if p.pointing_track is not None:
        t_k, lm_k = (np.asarray(a, np.float64) for a in p.pointing_track)
        track = np.stack([np.interp(times, t_k, lm_k[:, 0]),
                          np.interp(times, t_k, lm_k[:, 1])], axis=-1)
    return DriftBeamModel(times=times, t_mid=p.drift_track[0], dec=p.drift_track[1],
                          track=track,
                          freqs=freqs, weights=wtf, max_components=p.opts.drift_components,
                          diameter=p.dish_diameter,
                          floor_jy=0.05 * stats.expected_rms,
                          sky=p.sky, match_radius=match_radius,
                          half_extent=(p.npix_x // 2 * p.cell, p.npix_y // 2 * p.cell),
                          outlier_min_jy=p.opts.outlier_min_jy)


def _alias_free_stride(sampling: list[tuple[float, float]], p: ImagingParams) -> int:
    """The channel stride whose aliasing of a source at the phase centre stays outside the
    image (``channel_subset``), from the chunks' ``VisChunk.sampling``."""
    width = min((w for _, w in sampling), default=np.inf)
    if not np.isfinite(width):
        return 1
    # a source at the phase centre keeps its rings outside the image: the image's half
    # diagonal (the full one, for sources at a corner, cost a full-scale group 48 s of 196)
    half_diagonal = 0.5 * float(np.hypot(p.npix_x, p.npix_y)) * p.cell
    return alias_free_stride(max((b for b, _ in sampling), default=0.0), width, half_diagonal)


def make_images(source: Iterable[VisChunk], p: ImagingParams, *,
                consume: bool = False) -> ImagingResult:
    """All image products of the visibilities in ``source``; with ``p.opts.guard_px`` made
    over a field that much wider on every side (the weights of the image without it) and
    cropped. See :func:`_make_images`."""
    g = p.opts.guard_px
    if g <= 0:
        return _make_images(source, p, consume=consume)
    wide = replace(p, npix_x=p.npix_x + 2 * g, npix_y=p.npix_y + 2 * g,
                   opts=p.opts.model_copy(update={"guard_px": 0}),
                   weight_npix=(p.npix_x, p.npix_y))
    return crop_result(_make_images(source, wide, consume=consume), g)


def crop_result(r: ImagingResult, g: int) -> ImagingResult:
    """``r`` without ``g`` pixels on every side (every image plane, CLEAN's too)."""
    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(a[..., g:a.shape[-2] - g,
                                                                g:a.shape[-1] - g])
    return replace(r, image=cut(r.image), residual=cut(r.residual), model=cut(r.model),
                   psf=cut(r.psf), pb=cut(r.pb), pbcor=cut(r.pbcor),
                   clean=replace(r.clean, model=cut(r.clean.model),
                                 residual=cut(r.clean.residual)))


def _make_images(source: Iterable[VisChunk], p: ImagingParams, *,
                 consume: bool = False) -> ImagingResult:
    """All image products of the visibilities in ``source`` (re-iterated once per pass).

    A list held in memory gets its imaging weights once; with ``consume=True`` they are
    written over the data weights (the list's chunks are replaced by slim ones without a
    mask), so no second weight array is held. Passes over the data: the weight density
    (uniform/Briggs), the PSF (a broadcast constant: no array of the data's size), the dirty
    image, and two per major cycle (predict and grid, in row blocks of
    ``predict_buffer_bytes``); with ``approx_stride`` > 1 every pass but the last major
    cycle reads only a channel subset.
    """
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    grid = dict(npix_x=p.npix_x, npix_y=p.npix_y, cell=p.cell, epsilon=p.opts.epsilon,
                nthreads=p.nthreads, do_wgridding=p.opts.do_wgridding)
    density = None
    nchans: list[int] = []
    sampling: list[tuple[float, float]] = []  # per chunk: longest baseline, channel step
    wts = p.weighting
    if wts["scheme"] != "natural":
        density = np.zeros((wts["npix_y"], wts["npix_x"]))
        for ch in source:
            nchans.append(len(ch.freq))
            sampling.append(ch.sampling())
            grid_weight_density(ch.uvw, ch.freq, ch.weight, ch.mask, out=density,
                                **{k: wts[k] for k in ("npix_x", "npix_y", "cell", "uv_min",
                                                       "uv_max")})
    stats = WeightStats()
    in_memory = isinstance(source, list | tuple)
    cached: list[tuple[VisChunk, np.ndarray]] | None = None
    if in_memory:
        cached = []
        for i, ch in enumerate(source):
            if consume and isinstance(source, list):
                w = weigh_in_place(ch, p.weighting, density, stats)
                ch = VisChunk(ch.uvw, ch.freq, ch.vis, w, None, ch.time)
                source[i] = ch
            else:
                w = apply_weighting(ch.uvw, ch.freq, ch.weight, ch.mask, density=density,
                                    **p.weighting)
                stats.add(ch.freq, ch.data_weight(), w, ch.time)
            cached.append((ch, w))

    def passes() -> Iterable[tuple[VisChunk, np.ndarray]]:
        return cached if cached is not None else weighted(source, p.weighting, density)

    if cached is not None:
        density = None  # every pass uses the cached weights
    release_free_memory()
    t["weights"] = time.perf_counter() - t0
    # PSF of a unit point source at the phase centre: a broadcast constant as visibilities
    k = p.opts.psf_oversize
    psf_grid = {**grid, "npix_x": k * p.npix_x, "npix_y": k * p.npix_y,
                "do_wgridding": p.opts.do_wgridding and p.opts.psf_wgridding}
    psf = np.zeros((k * p.npix_y, k * p.npix_x))
    if cached is not None:
        nchans = [len(ch.freq) for ch, _ in cached]
        sampling = [ch.sampling() for ch, _ in cached]
    elif not nchans:  # natural weighting, streamed: no pass has read the chunks yet
        for ch in source:
            nchans.append(len(ch.freq))
            sampling.append(ch.sampling())
    nchan_min = min(nchans)
    # a channel subset only stands for all channels when it samples the band densely, and
    # sparsely enough sampled channels alias every source into rings across the image
    stride = max(1, min(p.opts.approx_stride, nchan_min // _MIN_APPROX_CHANNELS))
    if stride > 1:
        stride = min(stride, _alias_free_stride(sampling, p))
    if stride > 1:
        # the PSF only guides the minor cycles (and its main lobe gives the restoring beam):
        # the approximate cycles' channel subset and accuracy make it to ~1e-3 of its peak
        psf_grid["epsilon"] = max(p.opts.epsilon, p.opts.approx_epsilon)
    # with k > 1 only the image-sized centre is w-gridded: the w-planes of the whole PSF
    # field (twice the image's side) cost ~16x those of the image's; offsets beyond half
    # the image only guide the minor cycle far from a component, and a major cycle corrects
    inner = np.zeros((p.npix_y, p.npix_x)) if k > 1 and psf_grid["do_wgridding"] else None
    spectral_on = p.opts.spectral_fit_snr > 0 and p.drift_track is not None \
        and p.dish_diameter is not None and p.opts.drift_components > 0
    for ch, w in passes():
        if cached is None:
            stats.add(ch.freq, ch.data_weight(), w, ch.time)
        if not np.any(w):
            continue
        one = np.broadcast_to(np.ones(1, dtype=ch.vis.dtype), ch.vis[:, ::stride].shape)
        psf_args = (ch.uvw, ch.freq[::stride], one, w[:, ::stride])
        if inner is None:
            psf += vis_to_image(*psf_args, **psf_grid)
            continue
        psf += vis_to_image(*psf_args, **{**psf_grid, "do_wgridding": False})
        inner += vis_to_image(*psf_args, **{**psf_grid, "npix_x": p.npix_x, "npix_y": p.npix_y})
    if inner is not None:
        r0, c0 = p.npix_y // 2 * (k - 1), p.npix_x // 2 * (k - 1)
        psf[r0:r0 + p.npix_y, c0:c0 + p.npix_x] = inner
        del inner
    if stats.wsum <= 0:
        raise ValueError("all visibilities are flagged or have zero weight")
    psf = normalise_psf(psf).astype(np.float32)
    release_free_memory()
    psf_full = psf
    if k > 1:
        psf = np.ascontiguousarray(psf_full[p.npix_y // 2 * (k - 1):p.npix_y // 2 * (k - 1)
                                            + p.npix_y,
                                            p.npix_x // 2 * (k - 1):p.npix_x // 2 * (k - 1)
                                            + p.npix_x])
    beam = p.beam if p.beam is not None else fit_beam(psf, p.cell)
    convolver = PsfConvolver(psf_full, nthreads=p.nthreads, image_shape=(p.npix_y, p.npix_x)) \
        if p.opts.clean.image_domain_cycles and k == 2 else None
    t["psf"] = time.perf_counter() - t0 - sum(t.values())
    wsums: dict[int, float] = {1: stats.wsum}

    halves: dict[str, np.ndarray] = {}

    def residual_image(model: np.ndarray | None, s: int, split: bool = False,
                       extra: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """(dirty image - model * PSF) from the visibilities of every ``s``-th channel; with
        ``split`` also the residual of each half of the band (in ``halves``); ``extra``
        sources (lmn, flux per time and channel) are predicted by a direct Fourier sum."""
        eps = p.opts.epsilon if s == 1 else max(p.opts.epsilon, p.opts.approx_epsilon)
        res = np.zeros((p.npix_y, p.npix_x))
        parts = np.zeros((2, p.npix_y, p.npix_x)) if split else None
        part_w = np.zeros(2)
        part_f = np.zeros(2)
        part_nu: list[list[np.ndarray]] = [[], []]
        wsum = 0.0
        corr = join_sources(drift.correction(model, p.cell) if model is not None else None,
                            outliers, extra) if drift is not None else None
        for ch, w in passes():
            if not np.any(w):
                continue
            real = np.float32 if ch.vis.dtype == np.complex64 else np.float64
            freq, vis, wv = ch.freq[::s], ch.vis[:, ::s], w[:, ::s]
            if s not in wsums:
                wsum += float(wv.sum(dtype=np.float64))
            if model is None and (corr is None or ch.time is None):
                res += vis_to_image(ch.uvw, freq, vis, wv, **{**grid, "epsilon": eps})
                continue
            m = model.astype(real) if model is not None else None
            nrow = vis.shape[0]
            rows = max(1, min(nrow, p.predict_buffer_bytes // max(1, vis.shape[1]
                                                                   * vis.itemsize)))
            nblk = -(-nrow // rows)
            rows = -(-nrow // nblk)
            buf = np.empty((rows, vis.shape[1]), dtype=vis.dtype)
            moving = on_channels(corr, drift, freq) \
                if corr is not None and ch.time is not None else None
            for r0 in range(0, nrow, rows):
                sl = slice(r0, min(nrow, r0 + rows))
                out = buf[:sl.stop - r0]
                if m is None:
                    out[:] = 0
                else:
                    # visibilities of zero weight are not gridded: not predicted either
                    image_to_vis(ch.uvw[sl], freq, m, cell=p.cell, epsilon=eps,
                                 nthreads=p.nthreads, do_wgridding=p.opts.do_wgridding, out=out,
                                 mask=(wv[sl] != 0).view(np.uint8))
                if moving is not None:
                    predict_visibilities_drift(ch.uvw[sl], drift.time_index(ch.time[sl]), freq,
                                               *moving, sign=1, unprojected=False, out=out,
                                               accumulate=True, nthreads=p.nthreads)
                np.subtract(vis[sl], out, out=out)
                if parts is None:
                    res += vis_to_image(ch.uvw[sl], freq, out, wv[sl],
                                        **{**grid, "epsilon": eps})
                    continue
                h = len(freq) // 2
                for k, c in enumerate((slice(0, h), slice(h, None))):
                    wk = wv[sl][:, c]
                    parts[k] += vis_to_image(ch.uvw[sl], freq[c], out[:, c], wk,
                                             **{**grid, "epsilon": eps})
                    ws = wk.sum(axis=0, dtype=np.float64)
                    part_w[k] += float(ws.sum())
                    part_f[k] += float(ws @ freq[c])
                    if r0 == 0:
                        part_nu[k].append(freq[c])
            del buf
            release_free_memory()
        if s not in wsums:
            wsums[s] = wsum
        if parts is not None:
            res = parts.sum(axis=0)
            ok = part_w > 0
            halves["image"] = (parts / np.where(ok, part_w, 1.0)[:, None, None]).astype(
                np.float32)
            halves["freq"] = np.where(ok, part_f / np.where(ok, part_w, 1.0), np.nan)
            halves["weight"] = part_w
            halves["chans"] = [np.unique(np.concatenate(nu)) if nu else np.zeros(0)
                               for nu in part_nu]
        return (res / wsums[s]).astype(np.float32)

    drift = _drift_model(stats, p, match_radius=max(beam.bmaj, 3 * p.cell))
    outliers = drift.outliers() if drift is not None else None
    #: the outlier model as subtracted (refined by ``outliers.refine_outliers``)
    outlier_model = outliers
    consumed = outliers is not None and consume and cached is not None \
        and all(ch.time is not None for ch, _ in cached)
    if consumed:
        # visibilities this call owns: subtract the fixed outlier model once, not every pass
        subtract_sources(cached, drift, outliers, p.nthreads)
        outliers = None
    outlier_fits = {"fitted": 0, "sources": 0}
    if outlier_model is not None:
        outlier_fits["sources"] = int(outlier_model[0].shape[1])
        if p.opts.outlier_fit_snr > 0 and p.opts.outlier_fit_max > 0:
            outlier_model, fitted = refine_outliers(
                passes(), drift, outlier_model, most=p.opts.outlier_fit_max,
                min_jy=p.opts.outlier_min_jy, min_snr=p.opts.outlier_fit_snr,
                nthreads=p.nthreads, owned=cached if consumed else None)
            outlier_fits["fitted"] = fitted
            if not consumed:
                outliers = outlier_model
    dirty = residual_image(None, stride)
    t["dirty"] = time.perf_counter() - t0 - sum(t.values())
    t1 = time.perf_counter()
    fit_floor = p.opts.spectral_fit_snr * stats.expected_rms \
        if spectral_on and drift is not None else None
    spectral = {"change_jy": 0.0, "fits": 0, "exact_fits": 0, "sources": 0}
    beam_px = max(beam.bmaj / p.cell, 1.0)

    def measure_spectra(model: np.ndarray, exact: bool) -> None:
        """Spectral indices of the bright clusters from the half-band residuals."""
        nonlocal drift
        img, f_k, w_k = halves.pop("image"), halves.pop("freq"), halves.pop("weight")
        nu_k = halves.pop("chans")
        cl = bright_clusters(model, fit_floor, beam_px)
        if not len(cl.flux) or not np.all(np.isfinite(f_k)) or not all(len(c) for c in nu_k):
            return
        l_row, m_col = pixel_lm(p.npix_y, p.npix_x, p.cell)
        iy = np.clip(np.round(cl.y).astype(int), 0, p.npix_y - 1)
        ix = np.clip(np.round(cl.x).astype(int), 0, p.npix_x - 1)
        l, m = l_row[0, ix], m_col[iy, 0]  # noqa: E741
        # the channels each half actually held (a subset on approximate cycles)
        chans = [np.searchsorted(drift.freqs, c) for c in nu_k]
        model_k = cl.flux[:, None] * drift.band_factors(l, m, chans)
        resid_k = img[:, iy, ix].T
        f0 = float(np.sqrt(f_k[0] * f_k[1]))
        d_alpha = spectral_correction(model_k, resid_k, f_k, w_k, f0)
        alpha = drift.alpha_at(l, m) + d_alpha
        drift = replace(drift, measured=SkySources(l=l, m=m, flux=cl.flux, alpha=alpha,
                                                     ref_freq=np.full(l.size, f0)))
        frac = abs(np.log(f_k[1] / f_k[0])) / 2
        spectral["change_jy"] = float(np.max(np.abs(d_alpha) * cl.flux * frac))
        spectral["fits"] += 1
        spectral["exact_fits"] += int(exact)
        spectral["sources"] = int(l.size)

    point_floor = p.opts.point_snr * stats.expected_rms \
        if p.opts.point_snr > 0 and drift is not None else None
    no_points = PointSources(np.zeros(0), np.zeros(0), np.zeros(0),
                             np.zeros((p.npix_y, p.npix_x), np.float32))

    refine_floor = p.opts.point_refine_snr * stats.expected_rms \
        if point_floor is not None and p.opts.point_refine_snr > 0 and p.opts.psf_oversize == 2 \
        else None
    spectral["refined"] = 0
    #: the double-size PSF for the refinement (emptied with ``psf_full`` after CLEAN)
    psf_refine = {"psf": psf_full} if refine_floor is not None else {}

    def points_of(model: np.ndarray) -> PointSources:
        return point_sources(model, point_floor, beam_px) if point_floor is not None \
            else no_points

    def point_vis(pts: PointSources) -> tuple[np.ndarray, np.ndarray] | None:
        if not len(pts):
            return None
        # direction cosines of sub-pixel positions, as ``gridding.pixel_lm`` for pixels
        l = -(pts.x - p.npix_x // 2) * p.cell  # noqa: E741
        m = (pts.y - p.npix_y // 2) * p.cell
        return drift.point_sources(l, m, pts.flux)

    def exact_fit_limit() -> int:
        """MAX_EXACT_FITS after two or more channel-subset fits; without them (no channel
        subset: few channels) the exact cycles do all the fitting."""
        subset_fits = spectral["fits"] - spectral["exact_fits"]
        return MAX_EXACT_FITS if subset_fits >= 2 else MAX_SPECTRAL_FITS

    def cycle(model: np.ndarray, s: int) -> np.ndarray:
        # spectra from every cycle while the budget lasts, few of them exact (see
        # ``exact_fit_limit``): a fit's error, as flux, is about the noise of the residual
        # it used, whatever the source's brightness (so a channel subset's fits are good to
        # its noise and an exact fit refines them); each exact fit changes the prediction,
        # so it costs one exact cycle more
        split = fit_floor is not None and drift is not None \
            and spectral["fits"] < MAX_SPECTRAL_FITS \
            and (s > 1 or spectral["exact_fits"] < exact_fit_limit()) \
            and bool(np.any(np.abs(model) >= 0.1 * fit_floor))
        pts = points_of(model)
        gridded = model - pts.replaced if len(pts) else model
        res = residual_image(gridded, s, split, point_vis(pts))
        if split:
            measure_spectra(model, s == 1)
        if s == 1 and psf_refine and len(pts):
            # positions from the exact residual; the model moves, the residual with it
            steps, change = refine_positions(model, res, psf_refine["psf"], pts, refine_floor,
                                             beam_px)
            spectral["refined"] += int(np.count_nonzero(np.any(steps != 0, axis=1)))
            spectral["change_jy"] = max(spectral["change_jy"], change)
        return res

    def more(stop_level: float) -> bool:
        """Whether the last spectral update moved a prediction by over half the stop
        level (then the residual is stale: one more exact cycle)."""
        change, spectral["change_jy"] = spectral["change_jy"], 0.0
        return change > 0.5 * stop_level

    cres = deconvolve(dirty, psf_full, lambda m: cycle(m, 1), p.opts.clean,
                      convolver=convolver,
                      approx_residual=(lambda m: cycle(m, stride)) if stride > 1
                      else None, dirty_exact=stride == 1,
                      more=more if fit_floor is not None else None)
    del convolver, psf_full
    psf_refine.clear()
    t["clean"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    pts = points_of(cres.model)
    image = restore(cres.model - pts.replaced if len(pts) else cres.model, cres.residual,
                    p.cell, beam, nthreads=p.nthreads)
    add_points(image, pts, beam, p.cell)
    spectral["points"] = len(pts)
    spectral.update({f"outlier_{k}": v for k, v in outlier_fits.items()})
    freq_w = stats.freq_w
    freqs = np.array(sorted(freq_w))
    fw = np.array([freq_w[f] for f in freqs])
    pb = pbcor = None
    if p.dish_diameter is not None:
        pb = pb_image(p.npix_y, p.npix_x, p.cell, freqs, fw, diameter=p.dish_diameter,
                      pointing_lm=np.array(p.pb_pointings))
        pbcor = pb_correct(image, pb, p.opts.pb_cut)
    t["restore_pb"] = time.perf_counter() - t1
    freq_ref = float(np.sum(freqs * fw) / fw.sum())
    bandwidth = float(freqs.max() - freqs.min()) if len(freqs) > 1 else 0.0
    if len(freqs) > 1:
        bandwidth += float(np.median(np.diff(freqs)))
    wsum = stats.wsum
    return ImagingResult(image=image, residual=cres.residual.astype(np.float32),
                         model=cres.model.astype(np.float32), psf=psf, pb=pb, pbcor=pbcor,
                         beam=beam, freq_ref=freq_ref, bandwidth=bandwidth, weight_sum=wsum,
                         expected_rms=stats.expected_rms, clean=cres,
                         timings=t, spectral=spectral)
