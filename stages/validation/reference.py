"""The validation reference: an NVSS-format catalog file (the night's survey catalog).

Validation never reads the simulator's truth: a real night has a survey catalog and no
truth, and the judges alone (tests, perf scoring) read ``*_truth*`` files.
"""

from __future__ import annotations

from pathlib import Path

from dsa110_pipeline.catalogs import SourceCatalog, read_catalog


def load_reference(path: str | Path) -> SourceCatalog:
    """Load the reference catalog (CSV/VOTable/FITS, see ``read_catalog``)."""
    return read_catalog(Path(path))


__all__ = ["load_reference"]
