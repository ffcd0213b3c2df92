"""The state database: one SQLite file (WAL) per output root, one writer.

It holds observation groups and windows, their files, stage runs, products and
verdicts; stages keep their own tables in it (the calibration registry) through
:meth:`StateDB.ensure_schema` and :meth:`StateDB.transaction`. Only the orchestrator
process writes (an exclusive lock file enforces it); workers return results and the
orchestrator records them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from .errors import PipelineError, storage_error

#: SQLite messages that mean the disk, not the SQL, is at fault.
_STORAGE_ERRORS = ("disk is full", "disk I/O error", "readonly database",
                   "unable to open database file")

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    start_mjd REAL,
    dec_deg REAL,
    role TEXT,                -- calibrator | target
    status TEXT NOT NULL,     -- pending | running | done | failed | quarantined
    failures INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    group_id TEXT NOT NULL REFERENCES groups(group_id),
    subband INTEGER,
    size INTEGER,
    checksum TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER,
    started REAL,
    finished REAL,
    wall_s REAL,
    cpu_s REAL,
    peak_rss_mb REAL,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS stage_runs_group ON stage_runs(group_id, stage);
CREATE TABLE IF NOT EXISTS products (
    group_id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    checksum TEXT,
    meta TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (group_id, key, path)
);
CREATE TABLE IF NOT EXISTS windows (
    window_id TEXT PRIMARY KEY,  -- <stage>@<UTC start>: its stage runs and products use it
    stage TEXT NOT NULL,
    start_mjd REAL,
    end_mjd REAL,
    status TEXT NOT NULL,        -- running | done | failed | skipped | empty
    groups TEXT,                 -- JSON list: the groups whose products it used
    gaps TEXT,                   -- JSON object: group -> why it was left out
    message TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    group_id TEXT PRIMARY KEY,
    verdict TEXT NOT NULL,
    reasons TEXT,
    metrics TEXT,
    report TEXT,
    created REAL NOT NULL
);
"""


class StateDB:
    """The run's state. Open it once, in the orchestrator process."""

    def __init__(self, path: str | Path, *, writer: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile = None
        if writer:
            self._take_writer_lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                     isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        if writer:
            self._conn.executescript(SCHEMA)

    def _take_writer_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".writer.lock")
        fh = open(lock_path, "a+")  # noqa: SIM115 - held for the life of the object
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise PipelineError("another process is writing this state DB (only one writer "
                                "is allowed)", files=[str(self.path)]) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lockfile = fh

    def close(self) -> None:
        self._conn.close()
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction. A failed COMMIT (a full disk) is rolled back where SQLite has
        not already done so, and the original error is what is raised: a full or
        unwritable disk as a one-line :class:`StorageError` naming the DB."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:  # SQLite may have rolled back itself
                        with suppress(sqlite3.Error):  # keep the original error
                            self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if any(s in str(exc) for s in _STORAGE_ERRORS):
                    raise storage_error(exc, str(self.path)) from exc
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- groups and files ----------------------------------------------------------
    def upsert_group(self, group_id: str, *, start_mjd: float | None = None,
                     dec_deg: float | None = None, role: str | None = None,
                     files: Iterable[tuple[str, int | None, int | None]] = ()) -> None:
        """Record a group (pending when new) and its files (path, subband, size)."""
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT INTO groups(group_id, start_mjd, dec_deg, role, status, updated) "
                      "VALUES (?,?,?,?, 'pending', ?) ON CONFLICT(group_id) DO UPDATE SET "
                      "start_mjd=coalesce(excluded.start_mjd, start_mjd), "
                      "dec_deg=coalesce(excluded.dec_deg, dec_deg), "
                      "role=coalesce(excluded.role, role)",
                      (group_id, start_mjd, dec_deg, role, now))
            c.executemany("INSERT OR REPLACE INTO files(path, group_id, subband, size) "
                          "VALUES (?,?,?,?)", [(p, group_id, sb, sz) for p, sb, sz in files])

    def file_group(self, path: str) -> dict[str, Any] | None:
        """The group a file was recorded in (its row), if any."""
        rows = self._query("SELECT g.* FROM files f JOIN groups g USING(group_id) "
                           "WHERE f.path=?", (path,))
        return dict(rows[0]) if rows else None

    def set_group_status(self, group_id: str, status: str, message: str | None = None,
                         *, failed: bool = False) -> None:
        with self._tx() as c:
            c.execute("UPDATE groups SET status=?, message=?, updated=?, "
                      "failures=failures + ? WHERE group_id=?",
                      (status, message, time.time(), int(failed), group_id))

    def group(self, group_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM groups WHERE group_id=?", (group_id,))
        return dict(rows[0]) if rows else None

    def groups(self, status: str | None = None) -> list[dict[str, Any]]:
        if status is None:
            rows = self._query("SELECT * FROM groups ORDER BY start_mjd, group_id")
        else:
            rows = self._query("SELECT * FROM groups WHERE status=? ORDER BY start_mjd, "
                               "group_id", (status,))
        return [dict(r) for r in rows]

    # -- windows ---------------------------------------------------------------------
    def set_window(self, window_id: str, *, stage: str, start_mjd: float | None,
                   end_mjd: float | None, status: str, groups: Iterable[str] = (),
                   gaps: dict[str, str] | None = None, message: str | None = None) -> None:
        """Record a window stage's run over a window of groups."""
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO windows VALUES (?,?,?,?,?,?,?,?,?)",
                      (window_id, stage, start_mjd, end_mjd, status, json.dumps(list(groups)),
                       json.dumps(gaps or {}), message, time.time()))

    def window(self, window_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM windows WHERE window_id=?", (window_id,))
        return _window_row(rows[0]) if rows else None

    def windows(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM windows ORDER BY stage, start_mjd")
        return [_window_row(r) for r in rows]

    # -- stage runs and products ------------------------------------------------------
    def record_stage_run(self, run_id: str, group_id: str, record: dict[str, Any]) -> None:
        p = record.get("profile") or {}
        cpu = None
        if p.get("cpu_user_s") is not None:
            cpu = p["cpu_user_s"] + (p.get("cpu_sys_s") or 0.0)
        with self._tx() as c:
            c.execute("INSERT INTO stage_runs(run_id, group_id, stage, status, attempts, "
                      "started, finished, wall_s, cpu_s, peak_rss_mb, cache_hit, error) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                      (run_id, group_id, record["name"], record["status"],
                       record.get("attempts"), record.get("started"), record.get("finished"),
                       record.get("wall_s"), cpu, p.get("peak_rss_mb"),
                       int(record["status"] == "cached"), record.get("error")))

    def stage_runs(self, group_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query(
            "SELECT * FROM stage_runs WHERE group_id=? ORDER BY id", (group_id,))]

    def record_products(self, group_id: str, products: dict[str, Any]) -> None:
        """``products``: key -> ProductRef or list of them (anything with kind/path/...)."""
        rows = []
        now = time.time()
        for key, prod in products.items():
            for ref in prod if isinstance(prod, list) else [prod]:
                rows.append((group_id, key, ref.kind, ref.path, ref.checksum,
                             json.dumps(ref.meta, default=str), now))
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?)", rows)

    def products(self, group_id: str | None = None) -> list[dict[str, Any]]:
        if group_id is None:
            rows = self._query("SELECT * FROM products ORDER BY group_id, key")
        else:
            rows = self._query("SELECT * FROM products WHERE group_id=? ORDER BY key",
                               (group_id,))
        return [dict(r) for r in rows]

    def reconcile(self) -> list[dict[str, Any]]:
        """Make the DB agree with the disk: drop product rows whose files are gone, and
        send their groups back to "pending". Returns the dropped rows."""
        gone = [r for r in self.products() if not os.path.exists(r["path"])]
        groups = sorted({r["group_id"] for r in gone})
        with self._tx() as c:
            c.executemany("DELETE FROM products WHERE path=?", [(r["path"],) for r in gone])
            for table, col in (("groups", "group_id"), ("windows", "window_id")):
                c.executemany(f"UPDATE {table} SET status='pending', updated=? WHERE {col}=? "
                              "AND status='done'", [(time.time(), g) for g in groups])
        return gone

    # -- tables of the stages' own (e.g. the calibration registry) ---------------------
    def ensure_schema(self, ddl: str) -> None:
        """Create a stage's own tables (``CREATE TABLE IF NOT EXISTS`` statements)."""
        with self._lock:
            self._conn.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the connection, for a stage's own tables."""
        with self._tx() as c:
            yield c

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts."""
        return [dict(r) for r in self._query(sql, args)]

    # -- verdicts ----------------------------------------------------------------------------
    def set_verdict(self, group_id: str, verdict: str, *, reasons: list[str] | None = None,
                    metrics: dict[str, Any] | None = None, report: str | None = None) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?)",
                      (group_id, verdict, json.dumps(reasons or []),
                       json.dumps(metrics or {}, default=str), report, time.time()))

    def verdict(self, group_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM verdicts WHERE group_id=?", (group_id,))
        return dict(rows[0]) if rows else None


def _window_row(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["groups"] = json.loads(d["groups"] or "[]")
    d["gaps"] = json.loads(d["gaps"] or "{}")
    return d
