"""Group discovery by the time inside the files, with jittered names."""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.conversion.discovery import discover

from .synth import make_drift_group


def test_groups_by_internal_time_with_jittered_names(tmp_path: Path) -> None:
    d = tmp_path / "in"
    a = make_drift_group(d, n_subbands=3, n_channels=2, n_times=1, n_ants=3,
                         start="2026-01-25T12:00:00", name_jitter_s=55, seed=1)
    b = make_drift_group(d, n_subbands=3, n_channels=2, n_times=1, n_ants=3,
                         start="2026-01-25T12:05:09", name_jitter_s=55, seed=2)
    # names jitter: the groups cannot be told apart by the name's minute alone
    assert len({p.name[:16] for p in a}) >= 1
    res = discover(d, expected=(0, 1, 2))
    assert len(res.groups) == 2 and not res.unreadable
    assert [sorted(g.files.values()) for g in res.groups] == [sorted(a), sorted(b)]
    assert all(g.complete for g in res.groups)
    assert res.groups[0].group_id == "2026-01-25T12:00:06"


def test_incomplete_group_reported(tmp_path: Path) -> None:
    d = tmp_path / "in"
    files = make_drift_group(d, n_subbands=4, n_channels=2, n_times=1, n_ants=3)
    files[2].unlink()
    res = discover(d, expected=(0, 1, 2, 3))
    (g,) = res.groups
    assert not g.complete and g.missing == [2]
    assert "missing subbands sb02" in g.describe()
    assert res.incomplete == [g]


def test_unreadable_and_duplicate_files(tmp_path: Path) -> None:
    d = tmp_path / "in"
    files = make_drift_group(d, n_subbands=2, n_channels=2, n_times=1, n_ants=3)
    bad = d / "2026-01-25T12:00:00_sb05.hdf5"
    bad.write_bytes(b"garbage")
    dup = d / ("2026-01-25T12:00:30_sb01.hdf5")
    shutil.copy(files[1], dup)
    res = discover(d, expected=(0, 1))
    assert list(res.unreadable) == [bad]
    (g,) = res.groups
    assert g.duplicates and not g.complete
    assert "duplicate files" in g.describe()
