"""The imaging pipeline on visibility chunks: weights, PSF, beam, CLEAN, restore, PB.

:func:`make_images` takes any re-iterable source of :class:`VisChunk` (a list held in memory,
or an object that reads a Measurement Set chunk by chunk on each pass) and makes every image
product. Passes over the data: one for the weight density (uniform/Briggs only), one for the
PSF, one for the dirty image, then one per major cycle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .beam import Beam, fit_beam, normalise_psf, restore
from .clean import CleanParams, CleanResult, PsfConvolver, deconvolve
from .gridding import image_to_vis, vis_to_image
from .primary_beam import pb_correct, pb_image
from .weighting import apply_weighting, grid_weight_density


@dataclass
class VisChunk:
    """Stokes-I visibilities of some rows: uvw (n,3) m, freq (nchan,) Hz, vis (n,nchan) complex,
    weight (n,nchan) real (1/variance), mask (n,nchan) uint8 (non-zero = use) or None."""

    uvw: np.ndarray
    freq: np.ndarray
    vis: np.ndarray
    weight: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.uvw.shape[0]
        if self.uvw.ndim != 2 or self.uvw.shape[1] != 3:
            raise ValueError(f"uvw must have shape (nrow, 3), got {self.uvw.shape}")
        shape = (n, len(self.freq))
        for name in ("vis", "weight", "mask"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
        if not np.iscomplexobj(self.vis):
            raise ValueError("vis must be complex")

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.uvw, self.vis, self.weight, self.mask)
                   if a is not None)


@dataclass(frozen=True)
class ImagingParams:
    npix_x: int
    npix_y: int
    cell: float  # rad
    weighting: Literal["natural", "uniform", "briggs"] = "briggs"
    robust: float = 0.0
    uv_min: float = 0.0  # wavelengths
    uv_max: float | None = None
    taper_fwhm: float | None = None  # rad
    epsilon: float = 1e-4
    nthreads: int = 1
    do_wgridding: bool = True
    pb_cut: float = 0.1
    #: beam-centre offsets (l, m) from the phase centre, one or (n, 2) averaged (drift scan)
    pb_pointings: tuple[tuple[float, float], ...] = ((0.0, 0.0),)
    clean: CleanParams = field(default_factory=CleanParams)


@dataclass
class ImagingResult:
    image: np.ndarray
    residual: np.ndarray
    model: np.ndarray
    psf: np.ndarray
    pb: np.ndarray
    pbcor: np.ndarray
    beam: Beam
    freq_ref: float
    bandwidth: float
    weight_sum: float
    expected_rms: float
    clean: CleanResult
    timings: dict[str, float] = field(default_factory=dict)


def _weighted(chunks: Iterable[VisChunk], p: ImagingParams,
              density: np.ndarray | None) -> Iterable[tuple[VisChunk, np.ndarray]]:
    for ch in chunks:
        w = apply_weighting(ch.uvw, ch.freq, ch.weight, ch.mask, scheme=p.weighting,
                            npix_x=p.npix_x, npix_y=p.npix_y, cell=p.cell, density=density,
                            robust=p.robust, uv_min=p.uv_min, uv_max=p.uv_max,
                            taper_fwhm=p.taper_fwhm)
        yield ch, w


def make_images(source: Iterable[VisChunk], p: ImagingParams, *,
                consume: bool = False) -> ImagingResult:
    """All image products of the visibilities in ``source`` (re-iterated once per pass).

    With ``consume=True`` and a list held in memory, the list's chunks are replaced by slim
    ones (imaging weights instead of data weights and mask) to free memory early.
    """
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    grid = dict(npix_x=p.npix_x, npix_y=p.npix_y, cell=p.cell, epsilon=p.epsilon,
                nthreads=p.nthreads, do_wgridding=p.do_wgridding)
    degrid = {k: v for k, v in grid.items() if k not in ("npix_x", "npix_y")}
    density = None
    if p.weighting != "natural":
        density = np.zeros((p.npix_y, p.npix_x))
        for ch in source:
            grid_weight_density(ch.uvw, ch.freq, ch.weight, ch.mask, npix_x=p.npix_x,
                                npix_y=p.npix_y, cell=p.cell, uv_min=p.uv_min,
                                uv_max=p.uv_max, out=density)
    # cache imaging weights when the source is held in memory
    in_memory = isinstance(source, list | tuple)
    cached = list(_weighted(source, p, density)) if in_memory else None
    # per-channel weights and the thermal-noise expectation need the data weights: take
    # them now, so that a consumed source can drop its data weights and masks
    wsum = 0.0
    var_sum = 0.0
    freq_w: dict[float, float] = {}

    def account(ch: VisChunk, w: np.ndarray) -> None:
        nonlocal wsum, var_sum
        wsum += float(w.sum(dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(ch.weight > 0, w.astype(np.float64) ** 2 / ch.weight, 0.0)
        var_sum += float(var.sum())
        for f, s in zip(ch.freq, w.sum(axis=0, dtype=np.float64)):
            freq_w[float(f)] = freq_w.get(float(f), 0.0) + float(s)

    if cached is not None:
        for ch, w in cached:
            account(ch, w)
        if consume and isinstance(source, list):
            for i, (ch, w) in enumerate(cached):
                slim = VisChunk(ch.uvw, ch.freq, ch.vis, w, None)
                cached[i] = (slim, w)
                source[i] = slim

    def passes() -> Iterable[tuple[VisChunk, np.ndarray]]:
        return cached if cached is not None else _weighted(source, p, density)

    t["weights"] = time.perf_counter() - t0
    # PSF, dirty image, weight statistics and per-channel weights in one pass
    # a double-size PSF: Högbom can then subtract the exact PSF anywhere in the image (a
    # same-size PSF lacks the sidelobes at offsets beyond half the image, and CLEAN can
    # diverge on elongated PSFs), and image-domain major cycles become possible
    two = 2
    psf_grid = {**grid, "npix_x": two * p.npix_x, "npix_y": two * p.npix_y}
    psf = np.zeros((two * p.npix_y, two * p.npix_x))
    dirty = np.zeros((p.npix_y, p.npix_x))
    for ch, w in passes():
        if not np.any(w):
            continue
        real = np.float32 if ch.vis.dtype == np.complex64 else np.float64
        w = w.astype(real, copy=False)
        ones = np.ones(ch.vis.shape, dtype=ch.vis.dtype)
        psf += vis_to_image(ch.uvw, ch.freq, ones, w, **psf_grid)
        del ones
        dirty += vis_to_image(ch.uvw, ch.freq, ch.vis, w, **grid)
        if cached is None:
            account(ch, w)
    if wsum <= 0:
        raise ValueError("all visibilities are flagged or have zero weight")
    t["psf_dirty"] = time.perf_counter() - t0 - sum(t.values())
    psf = normalise_psf(psf).astype(np.float32)
    psf2x = psf
    convolver = PsfConvolver(psf2x, nthreads=p.nthreads) if p.clean.image_domain_cycles else None
    psf = np.ascontiguousarray(psf2x[p.npix_y // 2:p.npix_y // 2 + p.npix_y,
                                     p.npix_x // 2:p.npix_x // 2 + p.npix_x])
    dirty = (dirty / wsum).astype(np.float32)
    beam = fit_beam(psf, p.cell)

    def compute_residual(model: np.ndarray) -> np.ndarray:
        res = np.zeros((p.npix_y, p.npix_x))
        real = np.float32
        for ch, w in passes():
            if not np.any(w):
                continue
            real = np.float32 if ch.vis.dtype == np.complex64 else np.float64
            use = (w > 0).view(np.uint8)
            pred = image_to_vis(ch.uvw, ch.freq, model.astype(real), use, **degrid)
            np.subtract(ch.vis, pred, out=pred)
            res += vis_to_image(ch.uvw, ch.freq, pred, w.astype(real, copy=False), use, **grid)
        return (res / wsum).astype(real)

    t1 = time.perf_counter()
    cres = deconvolve(dirty, psf2x, compute_residual, p.clean, convolver=convolver)
    del convolver, psf2x
    t["clean"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    image = restore(cres.model, cres.residual, p.cell, beam, nthreads=p.nthreads)
    freqs = np.array(sorted(freq_w))
    fw = np.array([freq_w[f] for f in freqs])
    pb = pb_image(p.npix_y, p.npix_x, p.cell, freqs, fw, pointing_lm=np.array(p.pb_pointings))
    pbcor = pb_correct(image, pb, p.pb_cut)
    t["restore_pb"] = time.perf_counter() - t1
    freq_ref = float(np.sum(freqs * fw) / fw.sum())
    bandwidth = float(freqs.max() - freqs.min()) if len(freqs) > 1 else 0.0
    if len(freqs) > 1:
        bandwidth += float(np.median(np.diff(freqs)))
    return ImagingResult(image=image, residual=cres.residual.astype(np.float32),
                         model=cres.model.astype(np.float32), psf=psf, pb=pb, pbcor=pbcor,
                         beam=beam, freq_ref=freq_ref, bandwidth=bandwidth, weight_sum=wsum,
                         expected_rms=float(np.sqrt(var_sum) / wsum), clean=cres, timings=t)
