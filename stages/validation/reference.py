"""The validation reference: an NVSS-format catalog file (the night's survey catalog).

Validation reads only a survey catalog, as a real night has; the simulator's own record of
its sky is for tests and perf scoring alone.
"""

from __future__ import annotations

from pathlib import Path

from dsa110_pipeline.catalogs import SourceCatalog, read_catalog


def load_reference(path: str | Path) -> SourceCatalog:
    """Load the reference catalog (CSV/VOTable/FITS, see ``read_catalog``)."""
    return read_catalog(Path(path))


__all__ = ["load_reference"]
