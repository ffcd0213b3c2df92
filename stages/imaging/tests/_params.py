"""Settings as the kernel tests use them unless they say otherwise. CLEAN: plain
Cotton-Schwab (no auto-mask, no image-domain cycles, no cap on exact cycles), 1000 iterations
down to 3 sigma; imaging: every channel in every cycle, ducc0 accuracy 1e-4, no guard band.
The pipeline's own defaults are :class:`~stages.imaging.clean.CleanParams`'s and
:class:`~stages.imaging.options.ImagingOptions`'s."""

from __future__ import annotations

from typing import Any

from stages.imaging.clean import CleanParams
from stages.imaging.options import ImagingOptions

PLAIN: dict[str, Any] = dict(niter=1000, auto_threshold=3.0, auto_mask=None, max_major=20,
                             image_domain_cycles=False, max_exact_cycles=None)


def plain_clean(**kw: Any) -> CleanParams:
    """:data:`PLAIN` with ``kw`` over it."""
    return CleanParams(**{**PLAIN, **kw})


def plain_options(**kw: Any) -> ImagingOptions:
    """Imaging settings of the kernel tests (see the module), ``kw`` over them; CLEAN's are
    :func:`plain_clean`'s unless ``clean`` is given."""
    return ImagingOptions(**{"epsilon": 1e-4, "approx_stride": 1, "guard_px": 0,
                             "clean": plain_clean(), **kw})
