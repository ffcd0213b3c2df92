"""Deconvolution: minor cycles (``minor_cycles.py``) inside Cotton-Schwab major cycles.

The major cycle is :func:`deconvolve`, which calls back ``compute_residual(model)``
(normally: predict the model's visibilities with ducc0, subtract them and re-grid) after
each minor cycle; its settings are :class:`CleanParams` (the ``imaging.clean`` section).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy import ndimage

from dsa110_pipeline.robust import robust_rms

from .minor_cycles import hogbom_minor, multiscale_minor, subminor_cycle
from .psf_convolver import PsfConvolver


class CleanParams(BaseModel):
    """Deconvolution parameters (thresholds in Jy/beam): the ``imaging.clean`` config
    section, handed to :func:`deconvolve` as it is (the stage sets only ``nthreads``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Iteration budget: CLEAN stops on its thresholds long before (a few thousand).
    niter: int = Field(50000, ge=0)
    gain: float = Field(0.1, gt=0, le=1)
    mgain: float = Field(0.8, gt=0, le=1)
    threshold: float = Field(0.0, ge=0)
    #: CLEAN searches the whole image down to ``auto_mask`` x the residual rms, then cleans
    #: only where it has found flux down to ``auto_threshold`` x rms: deep on the sources
    #: (their sidelobes go), never on noise (a free CLEAN to 3 sigma put thousands of
    #: components on noise and stopped on its budget with bright sources half cleaned).
    #: 5, not 4: a full-scale group takes 1700 fewer iterations (6 s) for the same peaks;
    #: at 3 a demo-scale group had 72 false and 75 negative 5-sigma peaks (imaging README,
    #: session 17). None: off.
    auto_threshold: float | None = Field(2.0, gt=0)
    auto_mask: float | None = Field(5.0, gt=0)
    max_major: int = Field(30, ge=1)
    psf_patch: int | None = Field(None, ge=8)
    multiscale: bool = False
    scales: tuple[float, ...] = (0.0, 4.0, 8.0, 16.0)
    #: Threads of the minor cycles and PSF convolutions (the stage sets the run's).
    nthreads: int = Field(1, ge=1)
    #: With a double-size PSF, run cheap image-domain major cycles between the
    #: visibility-domain (Cotton-Schwab) ones; a visibility-domain cycle always ends. Each
    #: subtracts ``PSF * (model change)`` from the last exact residual: exact where the PSF
    #: is position-invariant, and good enough for the faint model changes of deep cleaning
    #: elsewhere (the w-term varies DSA-110's PSF over its 3.4 deg field; the next exact
    #: cycle corrects what they miss). On the full-scale fidelity group they gave the same
    #: figures as 18 exact cycles (imaging README).
    image_domain_cycles: bool = True
    max_image_cycles: int = Field(50, ge=1)
    #: Image-domain cycles start once an exact residual's peak is at most this fraction of
    #: the model's brightest component: they carry only faint model changes then (the bright
    #: sources, whose PSF the w-term changes most in absolute terms, are already modelled by
    #: exact cycles). Cleaning a 9 Jy calibrator in image-domain cycles from the dirty image
    #: left 8x the noise (tests/test_end_to_end's calibrated group).
    image_cycle_fraction: float = Field(0.01, gt=0)
    #: Most exact (visibility-domain) major cycles once image-domain cycles run between
    #: them (counting the one that started them; a predict and re-grid of every visibility
    #: each, ~15 s at full scale); None: no limit. Where the model cannot represent the data
    #: better (calibration errors, the dynamic-range limit at very bright sources) exact
    #: cycles stop converging: beyond three the residual at 8-15 Jy sources stalls at ~4
    #: sigma and no fidelity figure changes.
    max_exact_cycles: int | None = Field(3, ge=1)
    #: Högbom with sub-minor loops over the brightest pixels (needs a double-size PSF and
    #: gives the same components as plain Högbom, much faster on large images).
    subminor: bool = True
    #: Accuracy guard of the approximate cycles: when a residual from a channel subset, or an
    #: exact one after image-domain cycles, peaks above this many times what the last minor
    #: cycle left, those approximations no longer describe the data; from then on CLEAN runs
    #: exact cycles only (the exact-cycle budget starting again). None: off.
    approx_tolerance: float | None = Field(2.0, ge=1)
    #: Divergence guard: an exact residual whose peak exceeds this many times the last exact
    #: one after new components undoes them; CLEAN goes on with exact cycles alone if
    #: approximate cycles made them, else stops ("diverging"). None: off.
    divergence_limit: float | None = Field(1.1, ge=1)

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(s < 0 for s in v):
            raise ValueError("scales must be a non-empty list of sizes >= 0 (pixels)")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _mask_above_threshold(self) -> CleanParams:
        if self.auto_mask is not None and self.auto_threshold is not None \
                and self.auto_mask < self.auto_threshold:
            raise ValueError("auto_mask must be >= auto_threshold")
        return self


@dataclass
class CleanResult:
    model: np.ndarray
    residual: np.ndarray
    n_iter: int
    n_major: int
    stop_reason: str
    rms: float
    history: list[dict] = field(default_factory=list)
    n_image_cycles: int = 0
    #: major cycles on an approximate residual (``approx_residual``, e.g. a channel subset)
    n_approx_cycles: int = 0


# -- the major-cycle driver ------------------------------------------------------------------

def _unsubtracted_sidelobe(psf: np.ndarray, shape: tuple[int, int],
                           patch: int | None) -> float:
    """Largest |PSF| the minor cycle cannot subtract inside an image of ``shape``.

    Offsets up to the image size minus one occur; those beyond the PSF (or the patch
    half-width) are not subtracted. Beyond the PSF the sidelobe level is unknown and taken
    as the largest sidelobe at the PSF's edge band.
    """
    ny, nx = shape
    py, px = psf.shape
    cy, cx = py // 2, px // 2
    hy = min(cy, py - cy - 1, patch if patch is not None else max(py, px))
    hx = min(cx, px - cx - 1, patch if patch is not None else max(py, px))
    if hy >= ny - 1 and hx >= nx - 1:
        return 0.0
    inner = np.zeros(psf.shape, bool)
    inner[cy - hy:cy + hy + 1, cx - hx:cx + hx + 1] = True
    band = np.abs(psf[~inner]) if (~inner).any() else np.array([0.0])
    edge = np.abs(np.concatenate([psf[cy - hy, :], psf[cy + hy, :], psf[:, cx - hx],
                                  psf[:, cx + hx]]))
    return float(min(1.0, max(band.max(), edge.max())))


def clean_support(model: np.ndarray, strong: float) -> np.ndarray:
    """Pixels CLEAN may still clean once the auto-mask is on: those holding model flux, and
    the 8 neighbours of those holding at least ``strong`` (Jy/beam).

    A bright source between pixel centres needs flux on the neighbours of its peak pixel
    (Högbom's dipole, the sub-pixel position ``points.point_sources`` reads). Where that
    dipole is below the auto-mask level when the free search stops, a support of the
    flux-holding pixels alone can never add it: CLEAN then puts the source at the pixel
    centre and over-fits it. Measured on the full-scale dec +52.2 group: two 35-39 mJy
    sources 0.1 px off their columns took 7 % too much flux and left a ring of 25 negative
    peaks (5-16 sigma) around them (imaging README, session 15).
    """
    near = ndimage.binary_dilation(np.abs(model) >= strong, structure=np.ones((3, 3), bool))
    return (model != 0) | near


def deconvolve(dirty: np.ndarray, psf: np.ndarray,
               compute_residual: Callable[[np.ndarray], np.ndarray],
               params: CleanParams, mask: np.ndarray | None = None,
               convolver: PsfConvolver | None = None,
               approx_residual: Callable[[np.ndarray], np.ndarray] | None = None,
               dirty_exact: bool = True,
               more: Callable[[float], bool] | None = None) -> CleanResult:
    """Cotton-Schwab CLEAN of ``dirty`` (Jy/beam) with ``psf`` (peak 1 at the centre).

    ``psf`` may be the image size or twice it (2ny, 2nx), peaked at its centre. With a
    double-size PSF the minor cycle subtracts the exact PSF at any offset; with a smaller
    PSF or a ``psf_patch``, each minor cycle also stops (Clark's rule) at ``peak x`` the
    largest PSF sidelobe it cannot subtract, which keeps CLEAN stable.

    Each major cycle cleans down to ``max(stop level, (1 - mgain) x peak)`` with Högbom (or
    multi-scale) minor cycles, then replaces the residual by ``compute_residual(model)``
    (a visibility-domain major cycle; it may move flux within ``model`` in place, as the
    imager's point refinement does, and returns the residual of the model it leaves). The
    stop level is
    ``max(threshold, auto_threshold x robust rms)``. With ``auto_mask``, cleaning is free
    until the minor cycles reach ``auto_mask x rms``; from then on only pixels that already
    hold model flux, and the neighbours of those holding at least ``auto_mask x rms``, are
    cleaned (down to the auto threshold; see ``clean_support``). ``mask`` restricts
    cleaning.

    Cheaper, approximate major cycles: ``approx_residual(model)`` (for example the residual
    of a subset of the channels; ``dirty_exact=False`` says ``dirty`` is such an
    approximation too), or, with a ``convolver`` (double-size PSF) and
    ``params.image_domain_cycles``, the image-domain update
    ``residual = last exact residual - PSF * (model - model at that residual)``. Either way
    an exact cycle runs only when the approximate ones say CLEAN is done (or the budget is
    spent), the cycles after it are exact, and CLEAN stops only on an exact residual.

    ``more(stop_level)``, asked when CLEAN would stop on its threshold, may call for another
    exact cycle (at most three): the model's prediction changed since the last residual
    (for example its spectral indices were measured anew).
    """
    residual = np.array(dirty, dtype=np.float32, copy=True)
    model = np.zeros_like(residual)
    psf32 = np.asarray(psf, dtype=np.float32)
    free_mask = np.ones(residual.shape, bool) if mask is None else mask.astype(bool)
    active_mask = free_mask
    auto_mask_on = False
    use_image = convolver is not None and params.image_domain_cycles
    true_residual, true_model = (residual.copy(), model.copy()) if use_image else (None, None)
    exact = bool(dirty_exact)
    approx_on = approx_residual is not None
    image_on = False  # image-domain cycles started (see ``image_cycle_fraction``)
    n_exact_image = 0  # exact cycles since they started
    n_iter, n_major, n_image, n_approx, history = 0, 0, 0, 0, []
    outside = _unsubtracted_sidelobe(psf32, residual.shape, params.psf_patch)
    sub_conv = convolver
    stop_reason = "niter"
    rms = robust_rms(residual)
    n_more = 0

    def exact_budget_spent() -> bool:
        return image_on and params.max_exact_cycles is not None \
            and n_exact_image >= params.max_exact_cycles

    def exact_cycle() -> None:
        nonlocal residual, exact, n_major, true_residual, true_model, approx_on, image_on, \
            n_exact_image
        residual = np.asarray(compute_residual(model), dtype=np.float32)
        n_major += 1
        exact = True
        approx_on = False  # from the first exact cycle on, no channel-subset cycles
        if use_image:
            true_residual, true_model = residual.copy(), model.copy()
            top = float(np.max(np.abs(model)))
            image_on = image_on or (top > 0 and float(np.max(np.abs(residual[active_mask])))
                                    <= params.image_cycle_fraction * top)
            n_exact_image += int(image_on)

    # guards. ``left``: the peak the last minor cycle left (or the last approximate residual
    # showed), which the next residual should show if the approximations were right;
    # ``added``: components were added since the last residual; ``best``: the last exact
    # residual (peak, model, residual), and whether approximate cycles ran since it
    left = np.inf
    added = False
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    approx_since_best = False
    image_since_exact = False
    approx_ok = True  # image-domain cycles allowed (a guard turns them off)

    while True:
        rms = robust_rms(residual)
        stop_level = params.threshold
        if params.auto_threshold is not None:
            stop_level = max(stop_level, params.auto_threshold * rms)
        peak = float(np.max(np.abs(residual[active_mask]))) if active_mask.any() else 0.0
        history.append({"major": n_major, "image_cycles": n_image, "approx_cycles": n_approx,
                        "exact": exact,
                        "peak": peak, "rms": rms, "n_iter": n_iter})
        tol, limit = params.approx_tolerance, params.divergence_limit
        # below the auto-mask level an exact residual's peak is a noise peak, whatever the
        # approximate one showed
        floor = params.auto_mask * rms if params.auto_mask is not None else stop_level
        if tol is not None and peak > tol * max(left, floor) \
                and (not exact and added or image_since_exact):
            # the approximate cycles disagree with the data: a channel subset aliases a bright
            # source into the image, or the image-domain update misses how the prediction of
            # bright sources (sub-pixel points, spectra) moves with the model. Exact only now.
            history[-1]["inaccurate"] = "image-domain" if image_since_exact else "approximate"
            approx_ok = False
            # ... and when they gained less than one exact cycle would have (``mgain``),
            # their components are worth less than the exact cycles that must correct them
            undo = image_since_exact and exact and best is not None \
                and peak > (1.0 - params.mgain) * best[0]
            if image_since_exact and exact:
                n_exact_image = 0  # the exact-cycle budget starts again
            image_since_exact = False
            if undo:
                # the components the image-domain cycles placed answer a residual the data
                # disagree with: cleaning the exact residual would spend the exact cycles
                # undoing them (at demo scale it left noise-like components that came back
                # restored as false peaks of both signs): back to the last exact model and
                # its residual
                history[-1]["undone"] = True
                model[...] = best[1]
                residual = best[2].copy()
                true_residual, true_model = best[2].copy(), best[1].copy()
                added = False
                # and the auto-mask they shaped goes with them: the free search resumes
                auto_mask_on, active_mask = False, free_mask
                continue
            if not exact:
                exact_cycle()
                added = False
                continue
        if added and limit is not None and exact and best is not None \
                and peak > limit * best[0]:
            # the model change since the last exact residual made it worse: undo it; go on
            # with exact cycles alone if approximate ones made it, else stop
            history[-1]["diverged"] = True
            model[...] = best[1]
            residual = best[2].copy()
            if use_image:
                true_residual, true_model = best[2].copy(), best[1].copy()
            added = False
            if not approx_since_best:
                stop_reason = "diverging"
                break
            approx_ok = approx_on = False
            approx_since_best = False
            continue
        if exact and (best is None or added or peak < best[0]):
            best = (peak, model.copy(), residual.copy())
            approx_since_best = False
        added = False
        image_since_exact = image_since_exact and not exact
        if not exact:
            left = peak  # what an exact residual should show now
        reason = None
        if peak <= stop_level:
            reason = "threshold"
        elif n_iter >= params.niter:
            reason = "niter"
        elif n_major + n_approx >= params.max_major:
            reason = "max_major"
        elif exact and exact_budget_spent():
            reason = "max_exact"
        if reason is not None:
            if not exact:
                exact_cycle()  # decide on the residual computed from all the visibilities
                continue
            if reason == "threshold" and more is not None and n_more < 3 \
                    and not exact_budget_spent() and more(stop_level):
                n_more += 1
                exact_cycle()
                continue
            stop_reason = reason
            break
        # aim a little below the stop level so that the small mismatch between the minor
        # cycle and the true residual does not leave the peak just above it
        minor_stop = max(0.9 * stop_level, (1.0 - params.mgain) * peak, outside * peak)
        floor_hit = False
        if params.auto_mask is not None and not auto_mask_on \
                and minor_stop <= params.auto_mask * rms:
            minor_stop = params.auto_mask * rms
            floor_hit = True
        budget = params.niter - n_iter
        if params.multiscale:
            n, last = multiscale_minor(residual, psf32, model, scales=params.scales,
                                       gain=params.gain, threshold=minor_stop, max_iter=budget,
                                       mask=active_mask, nthreads=params.nthreads)
        elif params.subminor and params.psf_patch is None:
            if sub_conv is None:
                sub_conv = PsfConvolver(psf32, nthreads=params.nthreads,
                                        image_shape=residual.shape)
            n, last = subminor_cycle(residual, psf32, model, gain=params.gain,
                                     threshold=minor_stop, max_iter=budget, mask=active_mask,
                                     convolver=sub_conv)
        else:
            n, last = hogbom_minor(residual, psf32, model, gain=params.gain,
                                   threshold=minor_stop, max_iter=budget, mask=active_mask,
                                   patch=params.psf_patch, nthreads=params.nthreads)
        if floor_hit and last <= minor_stop and np.any(model):
            # the free search reached the auto-mask level: from now on clean only where
            # flux has been found
            auto_mask_on = True
            active_mask = free_mask & clean_support(model, params.auto_mask * rms)
        if n == 0:
            # nothing could be cleaned (or the minor cycle undid a round that diverged): decide
            # on an exact residual
            if not exact:
                exact_cycle()
                continue
            stop_reason = "stalled"
            break
        n_iter += n
        added, left = True, last
        # a channel subset is cleaned down to its own auto-mask level, not below: its peaks
        # there are its own noise (that of a fraction of the visibilities), which would go
        # into the model; the exact residual decides from there
        if approx_on and not floor_hit and n_iter < params.niter \
                and n_major + n_approx < params.max_major - 1:
            residual = np.asarray(approx_residual(model), dtype=np.float32)
            n_approx += 1
            exact = False
            approx_since_best = True
        elif image_on and approx_ok and n_image < params.max_image_cycles \
                and n_iter < params.niter:
            residual = (true_residual - convolver(model - true_model)).astype(np.float32)
            n_image += 1
            exact = False
            approx_since_best = image_since_exact = True
        else:
            exact_cycle()
    return CleanResult(model=model, residual=residual, n_iter=n_iter, n_major=n_major,
                       stop_reason=stop_reason, rms=rms, history=history,
                       n_image_cycles=n_image, n_approx_cycles=n_approx)
