"""Night discovery hook: the observation groups of an input directory as ``GroupSpec``s.

Configured as ``pipeline.discover: stages.conversion.night:discover_night``. A file
whose header cannot be read still joins the group its name belongs to, so the
conversion of that group fails with a clear error naming the file (and the group is
quarantined) instead of the file silently vanishing from the night.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py

from dsa110_pipeline import instrument
from dsa110_pipeline.catalogs import SURVEY_CATALOG
from dsa110_pipeline.context import ProductRef
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.night import GroupSpec

from .discovery import SubbandGroup, discover, name_jd

JD_MJD = 2400000.5
#: An unreadable file joins the group whose start is nearest the time in its name, when
#: nearer than half a file (names jitter by up to a minute; groups are ~309 s apart).
MATCH_TOLERANCE_S = instrument.FILE_DURATION / 2


def pointing_dec_deg(path: Path) -> float | None:
    """Pointing declination (deg) from ``extra_keywords/phase_center_dec`` (rad), if any."""
    try:
        with h5py.File(path, "r") as f:
            ek = f["Header"].get("extra_keywords")
            if ek is not None and "phase_center_dec" in ek:
                return math.degrees(float(ek["phase_center_dec"][()]))
    except (OSError, KeyError, ValueError):
        return None
    return None


def survey_catalog(input_dir: Path, cfg: Any = None) -> Path | None:
    """The night's survey catalog: ``paths.survey_catalog`` when configured, else
    ``survey_catalog.csv`` in the input directory (what the simulator writes beside its
    files, as a real night keeps its NVSS cut-out), else None."""
    paths = getattr(cfg, "paths", None)
    configured = getattr(paths, "survey_catalog", None)
    if configured:
        p = Path(configured)
        if not p.is_file():
            from dsa110_pipeline.errors import ConfigError

            raise ConfigError(f"paths.survey_catalog {p} does not exist")
        return p
    p = Path(input_dir) / SURVEY_CATALOG
    return p if p.is_file() else None


def _expected(cfg: Any) -> tuple[int, ...] | None:
    """The subbands a group must have: ``conversion.expected_subbands``, else all."""
    conv = getattr(cfg, "conversion", None)
    exp = getattr(conv, "expected_subbands", None)
    return tuple(exp) if exp is not None else None


def _spec(group: SubbandGroup, extra: list[Path]) -> GroupSpec:
    # duplicates go to conversion too, which refuses the group naming both files
    files = sorted([*group.files.values(), *group.duplicates, *extra], key=lambda p: p.name)
    refs = [ProductRef.for_path("uvh5", p) for p in files]
    size = sum(p.stat().st_size for p in files)
    subband = {p: sb for sb, p in group.files.items()}
    dec = next((d for d in (pointing_dec_deg(p) for p in group.files.values())
                if d is not None), None)
    return GroupSpec(
        group_id=group.group_id, inputs={"subband_files": refs},
        start_mjd=group.start_jd - JD_MJD, dec_deg=dec,
        files=[(str(p), subband.get(p), p.stat().st_size) for p in files],
        complete=group.complete, missing=[f"sb{sb:02d}" for sb in group.missing],
        metadata={"estimate": {"disk_gb": 1.3 * size / 1e9, "memory_gb": 1.5}})


def discover_night(input_dir: Path, cfg: Any = None,
                   files: Sequence[Path] | None = None) -> list[GroupSpec]:
    """Group the subband files of ``input_dir`` (only ``files`` of it, when given: those a
    live night has seen land) by the time inside them."""
    if not Path(input_dir).is_dir():
        from dsa110_pipeline.errors import InputError

        raise InputError("input directory does not exist", files=[str(input_dir)])
    found = discover(input_dir, expected=_expected(cfg), files=files)
    log = get_logger()
    for path, why in found.ignored.items():
        log.warning("input file ignored", file=str(path), reason=why)
    for g in found.groups:
        if g.duplicates:
            log.warning("duplicate subband files", group=g.group_id,
                        files=[str(p) for p in g.duplicates])
    groups = sorted(found.groups, key=lambda g: g.start_jd)
    extra: dict[str, list[Path]] = {g.group_id: [] for g in groups}
    orphans: list[Path] = []
    for path in found.unreadable:
        log.warning("input file unreadable", file=str(path), reason=found.unreadable[path])
        jd = name_jd(path)
        if jd is None:
            continue
        best = min(groups, key=lambda g: abs(g.start_jd - jd), default=None)
        if best is not None and abs(best.start_jd - jd) * 86400 <= MATCH_TOLERANCE_S:
            extra[best.group_id].append(path)
        else:
            orphans.append(path)
    specs = [_spec(g, extra[g.group_id]) for g in groups]
    survey = survey_catalog(Path(input_dir), cfg)
    if survey is not None:
        # the sky model of calibration and imaging and the reference of validation, unless
        # a stage's own key names another catalog
        for spec in specs:
            spec.metadata["survey_catalog"] = str(survey.resolve())
    for path in orphans:  # a group of its own, so the error reaches the operator
        specs.append(GroupSpec(group_id=path.name.split("_sb")[0],
                               inputs={"subband_files": [ProductRef.for_path("uvh5", path)]},
                               files=[(str(path), None, path.stat().st_size)],
                               metadata={"unreadable": str(found.unreadable[path])}))
    return specs
