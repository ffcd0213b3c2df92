"""Score an hour's mosaic against the simulator's truth (the survey suite's judge).

- **noise**: the residual mosaic over its noise map (robust width; 1 when the noise map is
  the inverse-variance expectation from the groups' own noise), and the mosaic
  validation's noise ratio;
- **fluxes in the overlaps**: a beam fit at the truth positions of steady sources that
  two or more groups see (primary beam >= the mosaic's cut), against what a linear
  mosaic of the truth gives there: ``sum(B_i A_i) / sum(B_i^2)`` over the groups, ``A_i``
  the truth's apparent flux in group ``i`` and ``B_i`` its beam (drift and band averaged);
- **positions**: the mosaic finder's positions of sources at S/N >= 20 matched to the
  truth, offsets in units of the restoring beam's major axis;
- **jumps at group boundaries**: for each group, the mean of ``residual / noise`` in a
  band just inside its primary-beam cut and one just outside (where other groups still
  cover), their difference over its standard error (the pixels' noise correlation area
  measured from the residual's autocorrelation).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from dsa110_pipeline.robust import robust_rms

# perf may use the pipeline's tested kernels to measure: the truth stays the judge
from stages.photometry.forced import forced_fluxes, noise_acf, noise_factor


def _read(path: Path) -> tuple[np.ndarray, Any]:
    from astropy.io import fits

    with fits.open(path) as h:
        data = np.asarray(h[0].data, dtype=np.float64)
        hdr = h[0].header.copy()
    return data.reshape(data.shape[-2:]), hdr


def _celestial(hdr: Any) -> Any:
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(hdr).celestial


def _truth_per_group(judges: Path) -> dict[float, dict[str, tuple]]:
    """Group start (s) -> source name -> (ra, dec (rad), apparent Jy, beam, kind,
    in the survey catalog)."""
    from datetime import datetime

    out = {}
    for p in sorted(judges.glob("*truth.npz")):
        t = np.load(p)
        start = datetime.fromisoformat(p.name.split("_truth")[0][:19]).timestamp()
        app = np.mean(t["source_flux"][:, None, :] * t["source_beam"], axis=(1, 2))
        beam = np.mean(t["source_beam"], axis=(1, 2))
        surveyed = (t["source_in_survey"] if "source_in_survey" in t.files
                    else np.ones(len(app), bool))
        out[start] = {str(n): (float(r), float(d), float(a), float(b), str(k), bool(s))
                      for n, r, d, a, b, k, s in zip(
                          t["source_name"], t["source_ra"], t["source_dec"], app, beam,
                          t["source_variable_kind"], surveyed, strict=True)}
    return out


def _expected(seen: list[tuple], pb_cut: float) -> float:
    """What a linear mosaic of the truth gives for a source its groups ``seen`` (truth
    tuples, one per group): ``sum(B A) / sum(B^2)`` over the groups above the cut."""
    use = [t for t in seen if t[3] >= pb_cut]
    return sum(t[3] * t[2] for t in use) / sum(t[3] ** 2 for t in use) if use else np.nan


def score_mosaic(out: Path, judges: Path, pb_cut: float = 0.2) -> dict[str, Any]:
    """The figures above over every mosaic under ``out/mosaics`` (a night's hour may fall
    across two UTC hours): per mosaic, and pooled."""
    paths = sorted((out / "mosaics").glob("*-image.fits"))
    if not paths:
        return {"error": "no mosaic"}
    truth = _truth_per_group(judges)
    each = [_score_one(p, out, truth, pb_cut) for p in paths]
    pooled: dict[str, Any] = {"mosaics": [e["stem"] for e in each],
                              "per_mosaic": [{k: v for k, v in e.items() if not
                                              k.startswith("_")} for e in each]}
    pooled["noise_z_width"] = [e["noise_z_width"] for e in each]
    pooled["validation_noise_ratio"] = [e.get("validation_noise_ratio") for e in each]
    pooled["validation_verdict"] = [e.get("validation_verdict") for e in each]
    for lo in (20.0, 50.0):
        f, ex, er = (np.concatenate([e["_overlap"][k] for e in each if "_overlap" in e])
                     if any("_overlap" in e for e in each) else np.zeros(0)
                     for k in ("flux", "expect", "err"))
        s = (ex / er) >= lo if ex.size else np.zeros(0, bool)
        pooled[f"overlap_snr{lo:g}"] = {
            "n": int(s.sum()),
            "median_ratio": float(np.median(f[s] / ex[s])) if s.any() else None,
            "pull_width": robust_rms((f[s] - ex[s]) / er[s]) if s.sum() > 4 else None}
    off = np.concatenate([e.get("_offsets", np.zeros(0)) for e in each])
    pooled["positions_snr20"] = {
        "n": int(off.size),
        "median_offset_beams": float(np.median(off)) if off.size else None,
        "rms_offset_beams": float(np.sqrt(np.mean(off ** 2))) if off.size else None}
    news = [e["_new"] for e in each if "_new" in e]
    if news:
        # per unsurveyed source of the night (the hour's windows overlap: a source in two
        # mosaics is listed by the first and is "earlier" for the second), its best S/N
        # and whether any mosaic listed it
        best: dict[str, tuple[float, bool]] = {}
        for n in news:
            for name, s, f in zip(n["unsurveyed_names"], n["unsurveyed_snr"],
                                  n["unsurveyed_found"], strict=True):
                s0, f0 = best.get(name, (-np.inf, False))
                best[name] = (np.nanmax([s0, s]), f0 or bool(f))
        snr = np.array([v[0] for v in best.values()])
        got = np.array([v[1] for v in best.values()], bool)
        pooled["new_sources"] = {
            "listed": sum(n["n_listed"] for n in news),
            "listed_unsurveyed": sum(n["n_listed_unsurveyed"] for n in news),
            "listed_no_truth_source": sum(n["n_listed_no_truth"] for n in news),
            **{f"unsurveyed_snr{lo:g}": {"n": int((snr >= lo).sum()),
                                         "found": int((got & (snr >= lo)).sum())}
               for lo in (7.0, 10.0)}}
    jumps = [j for e in each for j in e.get("_jumps", [])]
    if jumps:
        j = np.abs(np.array(jumps))
        pooled["boundary_jumps"] = {"n": len(jumps), "max_abs_sigma": float(j.max()),
                                    "n_above_2sigma": int((j > 2).sum()),
                                    "expected_above_2sigma_by_chance":
                                        round(0.0455 * len(j), 2),
                                    "values": [round(x, 2) for x in jumps]}
    return pooled


def _score_one(image_path: Path, out: Path, truth: dict[float, dict[str, tuple]],
               pb_cut: float) -> dict[str, Any]:
    """One mosaic's figures; raw arrays under ``_``-keys for pooling."""
    from reproject import reproject_interp

    mdir = image_path.parent
    stem = image_path.name.removesuffix("-image.fits")
    image, hdr = _read(image_path)
    noise, _ = _read(mdir / f"{stem}-noise.fits")
    residual, _ = _read(mdir / f"{stem}-residual.fits")
    wcs = _celestial(hdr)
    cell = abs(float(hdr["CDELT1"]))
    bmaj_px, bmin_px = hdr["BMAJ"] / cell, hdr["BMIN"] / cell
    res: dict[str, Any] = {"stem": stem, "npix": list(image.shape)}

    # noise: residual / noise map, where covered
    z = residual / noise
    ok = np.isfinite(z)
    res["noise_z_width"] = robust_rms(z[ok])
    metrics_json = mdir / "validation" / f"{stem}_metrics.json"
    if metrics_json.exists():
        import json

        m = json.loads(metrics_json.read_text())
        res["validation_noise_ratio"] = (m.get("metrics", m).get("noise") or {}).get("ratio")
        res["validation_verdict"] = m.get("verdict") or m.get("metrics", {}).get("verdict")

    # the primary beam, on the mosaic grid, of each group it holds
    held = {str(hdr[k]) for k in hdr if k.startswith("GRP")}
    pbs = []
    for p in sorted((out / "images").glob("*-pb.fits")):
        gid = p.name.removesuffix("-pb.fits").removesuffix("_cal").replace("_", ":")
        if not any(h.replace("_", ":").startswith(gid[:19]) for h in held):
            continue
        pb, phdr = _read(p)
        on = reproject_interp((pb, _celestial(phdr)), wcs, shape_out=image.shape,
                              return_footprint=False)
        pbs.append(np.where(np.isfinite(on), on, 0.0))

    # fluxes of steady sources that two or more groups see
    names: dict[str, list[tuple]] = {}
    starts = [_start_s(h) for h in held]
    for start, per in truth.items():
        if not any(abs(start - t) < 90 for t in starts):
            continue
        for n, v in per.items():
            names.setdefault(n, []).append(v)
    sel = [(n, v) for n, v in names.items()
           if v[0][4] == "" and sum(t[3] >= pb_cut for t in v) >= 2]
    if sel:
        ra = np.degrees([v[0][0] for _, v in sel])
        dec = np.degrees([v[0][1] for _, v in sel])
        expect = np.array([_expected(v, pb_cut) for _, v in sel])
        x, y = wcs.world_to_pixel_values(ra, dec)
        inside = (x > 2 * bmaj_px) & (x < image.shape[1] - 2 * bmaj_px) & \
                 (y > 2 * bmaj_px) & (y < image.shape[0] - 2 * bmaj_px)
        ix = np.clip(np.rint(x).astype(int), 0, image.shape[1] - 1)
        iy = np.clip(np.rint(y).astype(int), 0, image.shape[0] - 1)
        sig = noise[iy, ix]
        inside &= np.isfinite(sig)
        half = int(np.ceil(bmaj_px))
        acf = noise_acf(np.where(np.isfinite(z), z, 0.0), half)
        got = forced_fluxes(np.nan_to_num(image), x[inside], y[inside], sig[inside],
                            bmaj_px, bmin_px, float(hdr["BPA"]),
                            factor=noise_factor(bmaj_px, bmin_px, float(hdr["BPA"]), acf),
                            half=half)
        good = ~got["edge"]
        res["_overlap"] = {"flux": got["flux"][good], "expect": expect[inside][good],
                           "err": got["err"][good]}

    # positions: the mosaic finder's sources matched to the truth
    src_csv = mdir / "validation" / f"{stem}_sources.csv"
    if src_csv.exists():
        with open(src_csv, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if float(r["snr"]) >= 20]
        if rows:
            all_ra = np.array([v[0][0] for v in names.values()])
            all_dec = np.array([v[0][1] for v in names.values()])
            sra = np.radians([float(r["ra_deg"]) for r in rows])
            sdec = np.radians([float(r["dec_deg"]) for r in rows])
            best = np.degrees(nearest(sra, sdec, all_ra, all_dec)[1]) / hdr["BMAJ"]
            res["_offsets"] = best[best < 1.0]

    # new sources: the truth's unsurveyed sources against the mosaic's new-source list
    new_csv = mdir / f"{stem}-new_sources.csv"
    if new_csv.exists():
        with open(new_csv, newline="") as fh:
            found = list(csv.DictReader(fh))
        fra = np.radians([float(r["ra_deg"]) for r in found])
        fdec = np.radians([float(r["dec_deg"]) for r in found])
        tnames = list(names)
        tra = np.array([names[n][0][0] for n in tnames])
        tdec = np.array([names[n][0][1] for n in tnames])
        radius = np.radians(hdr["BMAJ"])
        hit_t = _nearest(fra, fdec, tra, tdec, radius)  # per new source: truth index
        uns = [i for i, n in enumerate(tnames) if not names[n][0][5]]
        u_snr = []
        for i in uns:
            x, y = wcs.world_to_pixel_values(np.degrees(tra[i]), np.degrees(tdec[i]))
            ix, iy = int(np.rint(x)), int(np.rint(y))
            inside = 0 <= iy < noise.shape[0] and 0 <= ix < noise.shape[1] and \
                np.isfinite(noise[iy, ix])
            u_snr.append(_expected(names[tnames[i]], pb_cut) / noise[iy, ix]
                         if inside else np.nan)
        u_snr = np.array(u_snr)
        found_t = set(hit_t[hit_t >= 0].tolist())
        res["_new"] = {"unsurveyed_snr": u_snr,
                       "unsurveyed_names": [tnames[i] for i in uns],
                       "unsurveyed_found": np.array([i in found_t for i in uns], bool),
                       "n_listed": len(found),
                       "n_listed_unsurveyed": int(sum(1 for j in hit_t
                                                      if j >= 0 and not names[tnames[j]][0][5])),
                       "n_listed_no_truth": int((hit_t < 0).sum())}

    # jumps at each group's boundary, in units of their standard error: the mean of N
    # pixels of noise correlated over an area A (the sum of its autocorrelation, measured
    # within 3 beams: the residual's sidelobes make it about twice the restoring beam's
    # area) has the error of N / A independent ones
    beam_px = max(1.1331 * bmaj_px * bmin_px,
                  float(noise_acf(np.where(ok, z, 0.0), int(np.ceil(3 * bmaj_px))).sum()))
    res["noise_correlation_area_px"] = beam_px
    res["restoring_beam_area_px"] = 1.1331 * bmaj_px * bmin_px
    jumps = []
    for pb in pbs:
        inner = ok & (pb >= pb_cut) & (pb < 1.5 * pb_cut)
        outer = ok & (pb < pb_cut) & (pb >= pb_cut / 1.5)
        if inner.sum() < 20 * beam_px or outer.sum() < 20 * beam_px:
            continue  # the boundary lies outside the mosaic's coverage
        a, b = z[inner], z[outer]
        se = np.hypot(np.std(a) / np.sqrt(a.size / beam_px), np.std(b) / np.sqrt(b.size / beam_px))
        jumps.append(float((np.mean(a) - np.mean(b)) / se))
    res["_jumps"] = jumps
    return res


def nearest(ra: np.ndarray, dec: np.ndarray, tra: np.ndarray, tdec: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per position (rad): the index of the nearest truth position and its separation
    (rad, chord: equal to the angle at these scales); -1 and inf where there is none."""
    from scipy.spatial import cKDTree

    def xyz(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])

    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    if ra.size == 0 or np.size(tra) == 0:
        return np.full(ra.size, -1), np.full(ra.size, np.inf)
    dist, idx = cKDTree(xyz(tra, tdec)).query(xyz(ra, dec))
    return idx, dist


def _nearest(ra: np.ndarray, dec: np.ndarray, tra: np.ndarray, tdec: np.ndarray,
             radius: float) -> np.ndarray:
    """Per position (rad), the index of the nearest truth position within ``radius``
    (rad), -1 where none."""
    idx, dist = nearest(ra, dec, tra, tdec)
    return np.where(dist <= radius, idx, -1)


def _start_s(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("_", ":")[:19]).timestamp()
