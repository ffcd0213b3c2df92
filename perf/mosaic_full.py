"""12 full-scale group images for the mosaic's timing (the survey suite).

``python -m perf.mosaic_full make DIR``: writes 12 groups' image, residual and pb FITS at
the imaging stage's full-scale grid (2048^2 pixels of 6"), one group (309 s of RA) apart at
dec +33.2, with the Airy primary beam, beam-correlated noise and 200 point sources, plus
the reference catalog. ``python -m perf.mosaic_full run DIR``: runs the mosaic stage on
them as a night's hour window does (validation of the mosaic included) and prints its
metrics as JSON; ``run DIR CAR``: the same hour as a CAR tile of a night's strip. The
images are synthetic (imaging 12 full-scale groups takes half an hour): the mosaic's cost
depends on their size and overlap, which are the pipeline's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

N, CELL_DEG, DEC = 2048, 6.0 / 3600, 33.2
BEAM_DEG = 25.0 / 3600  # about DSA-110's synthesized beam at 1.4 GHz
STEP_DEG = 309.0 * 15.041 / 3600  # RA between consecutive groups
MJD0 = 61109.0 + 2 / 24
N_GROUPS = 12


def _header(ra0: float):
    from astropy.io import fits

    h = fits.Header()
    h.update(NAXIS=2, NAXIS1=N, NAXIS2=N, CTYPE1="RA---SIN", CTYPE2="DEC--SIN", CRVAL1=ra0,
             CRVAL2=DEC, CRPIX1=N / 2 + 1, CRPIX2=N / 2 + 1, CDELT1=-CELL_DEG,
             CDELT2=CELL_DEG, CUNIT1="deg", CUNIT2="deg", BMAJ=BEAM_DEG, BMIN=BEAM_DEG,
             BPA=0.0, BUNIT="JY/BEAM", TELESCOP="OVRO_MMA", RESTFRQ=1.405e9)
    return h


def make(d: Path) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    from dsa110_pipeline.instrument import airy_beam

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    ra_c = 30.0 + STEP_DEG * np.arange(N_GROUPS)
    src_ra = rng.uniform(ra_c[0] - 2, ra_c[-1] + 2, 200)
    src_dec = DEC + rng.uniform(-1.6, 1.6, 200)
    src_flux = 0.02 * rng.pareto(1.2, 200) + 0.02
    with open(d / "reference.csv", "w") as fh:
        fh.write("name,ra_deg,dec_deg,flux_jy,spectral_index\n")
        fh.writelines(f"S{i},{r},{dd},{f},0\n" for i, (r, dd, f) in
                      enumerate(zip(src_ra, src_dec, src_flux, strict=True)))
    s = BEAM_DEG / CELL_DEG / np.sqrt(8 * np.log(2))
    f = np.fft.rfftfreq(N)
    fy = np.fft.fftfreq(N)
    taper = np.exp(-2 * np.pi ** 2 * s ** 2 * (fy[:, None] ** 2 + f[None, :] ** 2))
    yy, xx = np.mgrid[0:N, 0:N].astype(np.float32)
    for k, ra0 in enumerate(ra_c):
        h = _header(float(ra0))
        w = WCS(h)
        noise = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(N, N))) * taper, s=(N, N))
        noise *= 0.001 / noise.std()
        ra, dec = w.pixel_to_world_values(xx, yy)
        cosd = np.sin(np.radians(dec)) * np.sin(np.radians(DEC)) + np.cos(
            np.radians(dec)) * np.cos(np.radians(DEC)) * np.cos(np.radians(ra - ra0))
        pb = airy_beam(np.arccos(np.clip(cosd, -1, 1)), 1.405e9).astype(np.float32)
        del ra, dec, cosd
        image = noise.copy()
        x, y = w.world_to_pixel_values(src_ra, src_dec)
        for xi, yi, fl in zip(x, y, src_flux, strict=True):
            if 10 < xi < N - 10 and 10 < yi < N - 10:
                ix, iy = int(xi), int(yi)
                sl = np.s_[max(iy - 20, 0):iy + 21, max(ix - 20, 0):ix + 21]
                g = np.exp(-((xx[sl] - xi) ** 2 + (yy[sl] - yi) ** 2) / (2 * s ** 2))
                image[sl] += fl * pb[iy, ix] * g
        gid = f"g{k:02d}"
        for role, data in (("image", image), ("residual", noise), ("pb", pb)):
            fits.writeto(d / f"{gid}-{role}.fits", data.astype(np.float32), h, overwrite=True)
    (d / "groups.json").write_text(json.dumps([f"g{k:02d}" for k in range(N_GROUPS)]))


def run(d: Path, projection: str = "SIN") -> dict:
    from dsa110_pipeline.cache import ResultCache
    from dsa110_pipeline.context import PipelineContext, ProductRef
    from dsa110_pipeline.night import GroupSpec, NightOrchestrator
    from dsa110_pipeline.stage import FunctionStage
    from dsa110_pipeline.state import StateDB
    from stages.mosaic import MosaicStage

    out = d / f"out-{projection}"
    groups = json.loads((d / "groups.json").read_text())

    def images(ctx):
        g = groups[ctx.metadata["index"]]
        return ctx.with_output("images", [ProductRef.for_path("fits", d / f"{g}-{r}.fits",
                                                              role=r)
                                          for r in ("image", "residual", "pb")])

    def validation(ctx):
        p = out / f"v{ctx.metadata['index']}.html"
        p.write_text("report")
        return ctx.with_output("validation", ProductRef.for_path(
            "html", p, verdict="ACCEPT", metrics={"noise": {"image_rms_jy": 0.001}},
            reference=str(d / "reference.csv")))

    out.mkdir(parents=True, exist_ok=True)
    stages = [FunctionStage(images, name="imaging", produces=("images",)),
              FunctionStage(validation, name="validation", produces=("validation",)),
              MosaicStage({"validator": "stages.validation.mosaic:validate_arrays",
                           "projection": projection})]
    stages[-1].run_output_dir = str(out)  # what bind_run takes from paths.output_dir
    specs = [GroupSpec(f"2026-03-10T02:{5 * k:02d}:00", {}, start_mjd=MJD0 + k * 309 / 86400,
                       metadata={"index": k}) for k in range(len(groups))]
    with StateDB(out / "state.sqlite") as db:
        res = NightOrchestrator(db, output_dir=out, cache=ResultCache(out / ".c")).run(
            specs, lambda s: stages, PipelineContext())
    rec = next(r for n, r in res.result.records.items() if n.endswith("/mosaic"))
    metrics = res.result.context.metrics
    return {"windows": res.windows, "stage_wall_s": rec.finished - rec.started,
            "metrics": {k: v for k, v in metrics.items() if "mosaic" in k}}


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    if what == "make":
        make(where)
    else:
        print(json.dumps(run(where, *sys.argv[3:4]), default=str))
