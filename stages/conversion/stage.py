"""ConversionStage: subband UVH5 files -> one Measurement Set (staged, atomic, idempotent)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from dsa110_pipeline import instrument
from dsa110_pipeline.atomic import write_text_atomic
from dsa110_pipeline.checksum import path_checksum
from dsa110_pipeline.cluster import same_host_workers
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.errors import ContractError, InputError
from dsa110_pipeline.log import get_logger
from dsa110_pipeline.runner import task_priority
from dsa110_pipeline.stage import PipelineStage, Resources, StageConfig
from dsa110_pipeline.staging import (
    DEFAULT_SCRATCH_ROOT,
    atomic_move,
    cleanup_stale,
    lease_scratch,
)

from . import convert, ms_writer
from .reader import STAGE
from .ready import DaskReady


class ConversionConfig(StageConfig):
    """Typed config of the conversion stage (the ``conversion`` branch)."""

    #: Integrations read, phased and written per step (bounds worker memory).
    chunk_integrations: int = Field(4, ge=1)
    #: One spectral window per subband instead of one contiguous ascending SPW.
    spw_per_subband: bool = False
    #: Convert a group with missing subbands, their channels flagged.
    allow_partial: bool = False
    #: Subband indices a DSA-110 group must have; None: all of them (sb00..sb15). A group
    #: missing one is an input error unless ``allow_partial``. Set it for reduced
    #: observations (e.g. a simulation of 2 subbands: [0, 1]).
    expected_subbands: tuple[int, ...] | None = None
    #: Scratch root for staging (tmpfs); falls back beside the output when too small.
    #: None: the run's ``paths.scratch_dir`` (``Runtime.scratch_root``), else /dev/shm.
    scratch_dir: str | None = None
    #: Products directory; None: ``paths.output_dir`` of the run config, else ./products.
    output_dir: str | None = None
    #: Station coordinates CSV for antenna positions; None: positions in the files.
    station_csv: str | None = None
    #: Pointing declination (deg) of drift data; None: from the files (else zenith).
    pointing_dec_deg: float | None = Field(None, ge=-90, le=90)
    #: WEIGHT_SPECTRUM (= nsamples, as pyuvdata writes it): True, False, or "auto": left
    #: out when nsamples is the same in every channel of a row (DSA-110), where WEIGHT
    #: holds exactly the same numbers; a third of the MS less to write, move and read.
    write_weight_spectrum: bool | Literal["auto"] = "auto"
    #: Multiply weights by the integration time (s) instead of pure nsamples.
    weight_times_integration: bool = False
    #: Visibilities with |V| above this many times the file's median |V| are impossible
    #: (e.g. 4e37 from a corrupt correlator dump): flagged, and counted in the log.
    max_amplitude_ratio: float = Field(1e6, gt=1)
    #: Rebuild even when a complete MS for the same inputs exists.
    overwrite: bool = False


class ConversionStage(PipelineStage):
    """Convert one group of subband UVH5 files into one Measurement Set."""

    name = "conversion"
    version = "1"
    Config = ConversionConfig
    requires = ("subband_files",)
    produces = ("ms",)
    resources = Resources(cpu=2.0, memory_gb=1.5, scratch_gb=2.5)
    executor = "thread"

    config: ConversionConfig

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    def _inputs_fingerprint(files: list[Path]) -> str:
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:24]

    @staticmethod
    def _runner(ctx: PipelineContext) -> Any:
        """Subband tasks go to the dask workers on this machine, which see the scratch
        directory the MS is staged in; with none (or no client), they run here."""
        rt = ctx.runtime
        client = getattr(rt, "client", None) if rt is not None else None
        if client is None:
            return None
        workers = same_host_workers(client)
        return DaskRunner(client, workers) if workers != [] else None

    # -- contract -----------------------------------------------------------------
    def execute(self, ctx: PipelineContext) -> PipelineContext:
        cfg = self.config
        product = ctx.get("subband_files")
        refs = product if isinstance(product, list) else [product]
        files = [Path(r.path) for r in refs]
        for r in refs:
            if r.kind not in ("uvh5", "hdf5"):
                raise InputError(f"input of kind '{r.kind}' is not a UVH5 file", stage=STAGE,
                                 files=[r.path])
        t0 = time.perf_counter()
        plan = convert.plan_conversion(
            # a live night lets a group that timed out with enough subbands proceed
            files, allow_partial=cfg.allow_partial or bool(ctx.metadata.get("allow_partial")),
            expected_subbands=cfg.expected_subbands,
            spw_per_subband=cfg.spw_per_subband, chunk_integrations=cfg.chunk_integrations,
            pointing_dec_deg=cfg.pointing_dec_deg, station_csv=cfg.station_csv)
        out_dir = self.products_dir(ctx)
        out_dir.mkdir(parents=True, exist_ok=True)
        cleanup_stale(out_dir)
        group_id = safe_name(ctx.group_id) if ctx.group_id else _group_name(plan)
        final = out_dir / f"{group_id}.ms"
        sidecar = out_dir / f"{group_id}.ms.json"
        fingerprint = self._inputs_fingerprint(files)
        expected = {"nrows": plan.nrows, "fingerprint": fingerprint,
                    "config": self.config_hash(), "version": self.version}
        if not cfg.overwrite:
            ref = _reuse(final, sidecar, expected)
            if ref is not None:
                return (ctx.with_output("ms", ref)
                        .with_metrics(self.name, reused=True, nrows=plan.nrows))
        t_plan = time.perf_counter()
        est = plan.estimate_bytes(cfg.write_weight_spectrum is not False)
        rt = ctx.runtime
        scratch = cfg.scratch_dir or (rt.scratch_root if rt is not None else None) \
            or DEFAULT_SCRATCH_ROOT
        with lease_scratch(est, root=scratch, fallback_dir=out_dir) as lease:
            staged = lease.path / final.name
            history = (f"dsa110_pipeline conversion v{self.version}: "
                       f"{len(files)} file(s) -> {final.name}; "
                       f"phase centre ICRS ({plan.phase_center[0]:.8f}, "
                       f"{plan.phase_center[1]:.8f}) rad")
            report = convert.build_ms(plan, staged, lease.path, runner=self._runner(ctx),
                                      write_weight_spectrum=cfg.write_weight_spectrum,
                                      weight_times_integration=cfg.weight_times_integration,
                                      history=history,
                                      max_amplitude_ratio=cfg.max_amplitude_ratio)
            t_built = time.perf_counter()
            checksum = path_checksum(staged)
            t_sum = time.perf_counter()
            atomic_move(staged, final, overwrite=True)
            t_moved = time.perf_counter()
        screened = _report_screening(report.subband_results)
        meta = {**expected, "checksum": checksum, "group_id": group_id, **screened,
                "nchan": report.nchan, "nspw": report.nspw,
                "weight_spectrum": report.weight_spectrum,
                "phase_center_ra_deg": float(_deg(plan.phase_center[0])),
                "phase_center_dec_deg": float(_deg(plan.phase_center[1])),
                "missing_subbands": plan.missing_names,
                "inputs": [str(f) for f in files]}
        _write_json_atomic(sidecar, meta)
        ref = ProductRef(kind="ms", path=str(final), checksum=checksum,
                         meta={k: v for k, v in meta.items() if k != "inputs"})
        return (ctx.with_output("ms", ref)
                .with_metrics(self.name, reused=False, nrows=report.nrows, nchan=report.nchan,
                              plan_s=t_plan - t0, build_s=t_built - t_plan,
                              checksum_s=t_sum - t_built, move_s=t_moved - t_sum,
                              total_s=time.perf_counter() - t0, **report.timings,
                              bytes_read=report.bytes_read, staged_on_tmpfs=lease.on_scratch_root,
                              scratch_root=str(scratch),
                              weight_spectrum=report.weight_spectrum,
                              direct_tiles=report.direct_tiles))

    def validate_outputs(self, ctx: PipelineContext) -> None:
        super().validate_outputs(ctx)
        ref = ctx.outputs["ms"]
        assert isinstance(ref, ProductRef)
        if not ms_writer.ms_is_complete(ref.path, int(ref.meta["nrows"])):
            raise ContractError("the Measurement Set is incomplete", stage=self.name,
                                files=[ref.path])


class DaskRunner:
    """Runs the subband tasks on the runner's dask client, one task per subband."""

    background = True  # tasks run while the orchestrating process goes on

    def __init__(self, client: Any, workers: list[str] | None = None) -> None:
        self.client = client
        self.workers = workers  # None: any worker
        self.futures: list[Any] = []

    def start(self, fn: Any, tasks: list[Any]) -> None:
        # a night's calibrator group (the head of the longest chain) converts first
        self.futures = self.client.map(fn, tasks, pure=False, priority=task_priority(),
                                       workers=self.workers)

    def results(self) -> list[Any]:
        return self.client.gather(self.futures)

    def cancel(self) -> None:
        if self.futures:
            self.client.cancel(self.futures)

    def ready_signal(self) -> DaskReady:
        """How the tasks learn that the MS exists: an event on the scheduler."""
        return DaskReady(self.client)


def _report_screening(results: list[convert.SubbandResult]) -> dict[str, Any]:
    """Log what the workers flagged as impossible, per file; the totals for the MS's
    metadata (dead subbands by file name)."""
    log = get_logger(stage=STAGE)
    out: dict[str, Any] = {"flagged_bad_nsamples": 0, "flagged_absurd_amplitudes": 0,
                           "dead_subbands": []}
    for r in results:
        c = r.screen
        if c.dead:
            out["dead_subbands"].append(Path(r.path).name)
            log.warning("dead subband: every visibility is zero; flagged", file=r.path)
        if c.unrecorded is not None:
            out.setdefault("unrecorded_nsamples", []).append(Path(r.path).name)
            log.warning(f"nsample_array holds {c.unrecorded:.6g} everywhere (never recorded "
                        "by the writer): unit weights used", file=r.path)
        if c.bad_nsamples:
            log.warning("samples with nsamples <= 0 flagged (weight 0)", file=r.path,
                        count=c.bad_nsamples)
        if c.absurd:
            log.warning("samples with absurd amplitudes flagged", file=r.path, count=c.absurd)
        out["flagged_bad_nsamples"] += c.bad_nsamples
        out["flagged_absurd_amplitudes"] += c.absurd
    return out


def _deg(rad: float) -> float:
    import math

    return math.degrees(rad)


def _group_name(plan: convert.ConversionPlan) -> str:
    from astropy.time import Time

    t = Time(float(plan.ref.time_array.min()), format="jd", scale="utc").isot[:19]
    name = safe_name(plan.ref.telescope_name) or "obs"
    if name.upper().replace("_", "-") == instrument.TELESCOPE_NAME:
        return t
    return f"{name}_{t}"


def safe_name(text: str) -> str:
    """``text`` as one harmless file-name component: letters, digits, '-', '_' and '.'
    only, no leading dot, so a header's name (e.g. '../escaped/DSA') never leaves the
    output directory."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).lstrip(".")[:64]


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def _reuse(final: Path, sidecar: Path, expected: dict[str, Any]) -> ProductRef | None:
    """A reference to an existing complete MS made from the same inputs, else None."""
    if not (final.is_dir() and sidecar.is_file()):
        return None
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if any(meta.get(k) != v for k, v in expected.items()):
        return None
    if not ms_writer.ms_is_complete(final, int(expected["nrows"])):
        return None
    if path_checksum(final) != meta.get("checksum"):
        return None
    return ProductRef(kind="ms", path=str(final), checksum=meta["checksum"],
                      meta={k: v for k, v in meta.items() if k != "inputs"})
