"""CLEAN as the kernel tests use it unless they say otherwise: plain Cotton-Schwab (no
auto-mask, no image-domain cycles, no cap on exact cycles), 1000 iterations down to 3 sigma.
The pipeline's own defaults are :class:`~stages.imaging.clean.CleanParams`'s."""

from __future__ import annotations

from typing import Any

from stages.imaging.clean import CleanParams

PLAIN: dict[str, Any] = dict(niter=1000, auto_threshold=3.0, auto_mask=None, max_major=20,
                             image_domain_cycles=False, max_exact_cycles=None)


def plain_clean(**kw: Any) -> CleanParams:
    """:data:`PLAIN` with ``kw`` over it."""
    return CleanParams(**{**PLAIN, **kw})
