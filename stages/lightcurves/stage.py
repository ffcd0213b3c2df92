"""The light-curve window stage: a night's forced photometry into the store, then every
source's variability statistics and the candidates.

Window scope (a night by default, ``pipeline.windows``). Requires each group's
``photometry`` and ``validation``; a group whose verdict is in ``leave_out`` (REJECT) is not
stored (its earlier measurements are removed) and is named with the window's gaps.
Produces ``lightcurves``: the store (SQLite, :mod:`.store`) and the candidates CSV.

Candidates: at least ``min_epochs`` good measurements and either an ``eta`` this unlikely
for a steady source (``eta_logp``) with ``v`` above its floor, or a dip of ``dip_epochs``
epochs at ``dip_sigma`` or more. The thresholds are set from injection-recovery
(``python -m perf survey``), not the literature.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from pydantic import Field

from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import InputError
from dsa110_pipeline.stage import Resources, StageConfig
from dsa110_pipeline.window import WindowStage

from .plots import eta_v_plot, light_curve_plot
from .store import LightCurveStore
from .variability import statistics


class LightCurveConfig(StageConfig):
    """Typed config of the light-curve stage (the ``lightcurves`` branch)."""

    #: The store; None: <output>/lightcurves.sqlite (one per products tree, across nights).
    store: str | None = None
    #: Verdicts whose groups are left out of the light curves.
    leave_out: tuple[str, ...] = ("REJECT", "NOT_VALIDATED")
    #: A drift-scan source is in a group's image for only 3-4 groups a day (the survey
    #: suite's night: median 3), and twice where the night starts or ends as it passes:
    #: the significance below counts the epochs (n - 1 degrees of freedom), so two are
    #: enough (with 3, the survey hour missed 3 of 25 variables of 10-41 sigma, all seen
    #: twice; the steady sources' false-alarm rate stayed below 1 %).
    min_epochs: int = Field(2, ge=2)
    #: A candidate's eta must be this unlikely for a steady source: -log10 of its chance
    #: probability (chi^2 with n - 1 dof; right for any number of epochs when the errors
    #: are right, as the photometry's pulls show), and its V at least ``v_threshold``
    #: (above what calibration errors alone give bright sources).
    eta_logp_threshold: float = Field(4.0, gt=0)
    v_threshold: float = Field(0.05, ge=0)
    dip_epochs: int = Field(3, ge=1)
    dip_sigma: float = Field(5.0, gt=0)
    #: Candidates whose light curve is plotted (the night summary shows them).
    max_plots: int = Field(20, ge=0)
    output_dir: str | None = None


class LightCurveStage(WindowStage):
    name = "lightcurves"
    version = "2"  # 2: candidates from two epochs on
    Config = LightCurveConfig
    requires = ("photometry", "validation")
    produces = ("lightcurves",)
    resources = Resources(cpu=1, memory_gb=1.0)
    window_s = 86400.0

    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg: LightCurveConfig = self.config  # type: ignore[assignment]
        info = self.window(ctx)
        phot = self.group_products(ctx, "photometry")
        val = self.group_products(ctx, "validation")
        out_dir = self.products_dir(ctx, "lightcurves")
        out_dir.mkdir(parents=True, exist_ok=True)
        store_path = Path(cfg.store) if cfg.store else self.products_dir(ctx) / \
            "lightcurves.sqlite"
        left_out: dict[str, str] = {}
        stored = 0
        with LightCurveStore(store_path) as store:
            for gid in info.groups:
                p, v = _one(phot[gid]), _one(val[gid])
                verdict = v.meta.get("verdict")
                rows = [] if verdict in cfg.leave_out else _read_rows(p.path)
                if verdict in cfg.leave_out:
                    left_out[gid] = f"verdict {verdict}"
                noise = (v.meta.get("metrics") or {}).get("noise") or {}
                stored += store.store_image(gid, rows, mjd=p.meta.get("mjd"), path=p.path,
                                            verdict=verdict, rms_jy=noise.get("image_rms_jy"))
            sids, s, e, _ = store.light_curves()
            stats = statistics(s, e, cfg.dip_epochs)
            with np.errstate(invalid="ignore"):
                cand = (stats["n"] >= cfg.min_epochs) & (
                    ((stats["eta_logp"] >= cfg.eta_logp_threshold)
                     & (stats["v"] >= cfg.v_threshold))
                    | (stats["dip_sigma"] >= cfg.dip_sigma))
            store.store_variability(sids, stats, cand)
            stem = info.window_id.replace(":", "")
            cands = out_dir / f"{stem}.candidates.csv"
            n_cand = store.write_candidates(cands)
            plots = [eta_v_plot(out_dir / f"{stem}.eta_v.png", stats["eta"], stats["v"],
                                cand, None, cfg.v_threshold)]
            mjd = store.image_times()
            names = store.source_names()
            for i in np.flatnonzero(cand)[:cfg.max_plots]:
                plots.append(light_curve_plot(out_dir / f"{stem}.lc{i:05d}.png",
                                              names[sids[i]], mjd, s[i], e[i]))
        return (ctx.with_output("lightcurves", [
                    ProductRef.for_path("sqlite", store_path, role="store"),
                    ProductRef.for_path("csv", cands, role="candidates", n=n_cand,
                                        left_out=left_out, gaps=info.gaps),
                    *(ProductRef.for_path("png", p, role="plot") for p in plots)])
                .with_metrics(self.name, groups=len(info.groups) - len(left_out),
                              left_out=len(left_out), measurements=stored,
                              sources=len(sids), candidates=n_cand))


def _one(product: object) -> ProductRef:
    return product[0] if isinstance(product, list) else product  # type: ignore[return-value]


def _read_rows(path: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"cannot read photometry table ({exc})", files=[path]) from exc
