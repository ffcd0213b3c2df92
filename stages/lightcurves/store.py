"""The light-curve store: one SQLite file that accumulates across nights.

Schema (in the spirit of VAST's pipeline tables):

- ``images``: one row per group image measured (``image_id`` = the group id), with its
  time, path, verdict and median noise;
- ``sources``: one row per catalog source ever measured (``name`` unique), with position
  and catalog flux;
- ``measurements``: one forced measurement per (source, image): fluxes (apparent and
  primary-beam corrected), errors, S/N, fit chi^2, primary beam and flags;
- ``variability``: per source, the statistics of :mod:`.variability` over all its good
  measurements, and whether it is a candidate.

One writer at a time (an exclusive lock file beside the store). Idempotent: storing an
image's measurements again replaces them, never duplicates them.
"""

from __future__ import annotations

import csv
import fcntl
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY, mjd REAL, path TEXT, verdict TEXT, rms_jy REAL,
    n_measured INTEGER, stored REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    source_id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL,
    ra_deg REAL NOT NULL, dec_deg REAL NOT NULL, catalog_flux_jy REAL);
CREATE TABLE IF NOT EXISTS measurements (
    source_id INTEGER NOT NULL REFERENCES sources(source_id),
    image_id TEXT NOT NULL REFERENCES images(image_id),
    mjd REAL, flux_jy REAL, err_jy REAL, flux_app_jy REAL, err_app_jy REAL, pb REAL,
    snr REAL, chi2 REAL, edge INTEGER, blended INTEGER, artefact INTEGER,
    PRIMARY KEY (source_id, image_id));
CREATE INDEX IF NOT EXISTS measurements_image ON measurements(image_id);
CREATE TABLE IF NOT EXISTS variability (
    source_id INTEGER PRIMARY KEY REFERENCES sources(source_id), n INTEGER,
    mean_flux_jy REAL, eta REAL, eta_logp REAL, v REAL, vs_max REAL, m REAL, dip_sigma REAL,
    candidate INTEGER, updated REAL);
"""


class LightCurveStore:
    """The store at ``path``; open it as a context manager (it takes the writer lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path.with_name(self.path.name + ".lock"), "a+")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one writer: others wait their turn
        self.db = sqlite3.connect(str(self.path), timeout=60)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def __enter__(self) -> LightCurveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self.db:  # one transaction: committed whole or rolled back
            yield self.db

    def store_image(self, image_id: str, rows: list[dict[str, Any]], *, mjd: float | None,
                    path: str, verdict: str | None, rms_jy: float | None) -> int:
        """Replace the image's measurements with ``rows`` (photometry table rows)."""
        with self._tx() as c:
            c.execute("DELETE FROM measurements WHERE image_id=?", (image_id,))
            c.execute("INSERT OR REPLACE INTO images VALUES (?,?,?,?,?,?,?)",
                      (image_id, mjd, path, verdict, rms_jy, len(rows), time.time()))
            for r in rows:
                c.execute("INSERT OR IGNORE INTO sources(name, ra_deg, dec_deg, "
                          "catalog_flux_jy) VALUES (?,?,?,?)",
                          (r["name"], float(r["ra_deg"]), float(r["dec_deg"]),
                           _f(r.get("catalog_flux_jy"))))
            ids = dict(c.execute("SELECT name, source_id FROM sources").fetchall())
            c.executemany(
                "INSERT INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(ids[r["name"]], image_id, _f(r.get("mjd")), _f(r["flux_jy"]),
                  _f(r["err_jy"]), _f(r["flux_app_jy"]), _f(r["err_app_jy"]), _f(r["pb"]),
                  _f(r["snr"]), _f(r["chi2"]), int(r["edge"]), int(r["blended"]),
                  int(r["artefact"])) for r in rows])
        return len(rows)

    def light_curves(self, *, good_only: bool = True) -> tuple[list[int], np.ndarray,
                                                               np.ndarray, list[str]]:
        """(source ids, fluxes, errors, image ids): arrays (sources, images) in time order,
        NaN where a source has no (good) measurement in an image."""
        images = [r["image_id"] for r in self.db.execute(
            "SELECT image_id FROM images ORDER BY mjd, image_id")]
        sources = [r["source_id"] for r in self.db.execute(
            "SELECT source_id FROM sources ORDER BY source_id")]
        col = {im: j for j, im in enumerate(images)}
        row = {s: i for i, s in enumerate(sources)}
        flux = np.full((len(sources), len(images)), np.nan)
        err = np.full_like(flux, np.nan)
        where = " WHERE edge=0 AND blended=0 AND artefact=0" if good_only else ""
        for r in self.db.execute(f"SELECT source_id, image_id, flux_jy, err_jy FROM "
                                 f"measurements{where}"):
            flux[row[r[0]], col[r[1]]] = r[2]
            err[row[r[0]], col[r[1]]] = r[3]
        return sources, flux, err, images

    def image_times(self) -> np.ndarray:
        """MJD of each image, in the order of :meth:`light_curves`' columns."""
        return np.array([r[0] if r[0] is not None else np.nan for r in self.db.execute(
            "SELECT mjd FROM images ORDER BY mjd, image_id")], dtype=float)

    def source_names(self) -> dict[int, str]:
        return dict(self.db.execute("SELECT source_id, name FROM sources").fetchall())

    def store_variability(self, source_ids: list[int], stats: dict[str, np.ndarray],
                          candidate: np.ndarray) -> None:
        now = time.time()
        with self._tx() as c:
            c.executemany("INSERT OR REPLACE INTO variability VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                          [(sid, int(stats["n"][i]), _f(stats["mean_flux"][i]),
                            _f(stats["eta"][i]), _f(stats["eta_logp"][i]), _f(stats["v"][i]),
                            _f(stats["vs_max"][i]),
                            _f(stats["m"][i]), _f(stats["dip_sigma"][i]), int(candidate[i]),
                            now) for i, sid in enumerate(source_ids)])

    def write_candidates(self, path: str | Path) -> int:
        """The candidates, with their statistics, as CSV (written whole)."""
        rows = self.db.execute(
            "SELECT s.name, s.ra_deg, s.dec_deg, s.catalog_flux_jy, v.* FROM variability v "
            "JOIN sources s USING(source_id) WHERE v.candidate=1 ORDER BY v.eta DESC"
        ).fetchall()
        from dsa110_pipeline.atomic import atomic_path

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(rows[0].keys() if rows else ["name"])
            for r in rows:
                w.writerow(list(r))
        return len(rows)


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None
