"""Nightly batches: many observation groups in one plan, recorded in the state DB.

Each group's stages are the same stage classes seen through namespaced keys
(``<group>/ms``), so the runner schedules all groups of a night in one DAG:
groups run side by side, a target group's calibration waits for the calibrator
group whose solutions it uses, and one bad group never stops the others. The
orchestrator process is the only writer of the state DB: it records every stage
run as the runner reports it, then each group's products, status and verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import clean_stale_temporaries
from .cache import ResultCache
from .context import PipelineContext, Product, ProductRef
from .errors import RoleUnfit
from .log import get_logger
from .mapped import SEP, MappedStage, key
from .runner import Runner, RunResult, Runtime, StageRecord
from .stage import PipelineStage
from .staging import DEFAULT_SCRATCH_ROOT, FALLBACK_DIRNAME, cleanup_stale
from .state import StateDB
from .window import WINDOW_META, MappedWindowStage, WindowPlan, plan_windows

#: (state DB, group id, product) -> None: records a product a group made (the registry of
#: a stage); the orchestrator, the DB's one writer, calls it (``pipeline.on_product``).
ProductHook = Callable[[StateDB, str, Product], None]
#: (state DB, group spec) -> product or None: finds a product a group needs that no stage
#: makes tonight and no earlier run of the group recorded (``pipeline.find_product``).
ProductFinder = Callable[[StateDB, "GroupSpec"], Product | None]


@dataclass
class GroupSpec:
    """One observation group of a night, as the orchestrator plans it."""

    group_id: str
    inputs: dict[str, Product]
    role: str = "target"  # "calibrator" or "target"
    start_mjd: float | None = None
    dec_deg: float | None = None
    #: Inner key -> product key of another group (e.g. "caltables" -> "<cal>/caltables").
    shared: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    files: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    #: Whether every file of the group is in (a live night waits for the rest, see
    #: :mod:`dsa110_pipeline.realtime`); what is missing, in words.
    complete: bool = True
    missing: list[str] = field(default_factory=list)


StageFactory = Callable[[GroupSpec], Sequence[PipelineStage]]


def group_stages(spec: GroupSpec, stages: Sequence[PipelineStage],
                 wiring: dict[str, dict[str, str]] | None = None) -> list[MappedStage]:
    """The group's stages with keys mapped into the night's namespace.

    ``wiring[stage][k]`` names the group product a stage reads as ``k``;
    ``spec.shared[k]`` points at another group's product instead.
    """
    out = []
    for st in stages:
        wires = (wiring or {}).get(st.name, {})
        in_map = {}
        for k in st.requires:
            if k in spec.shared:
                in_map[k] = spec.shared[k]
            else:
                in_map[k] = key(spec.group_id, wires.get(k, k))
        out_map = {k: key(spec.group_id, k) for k in st.produces}
        out.append(MappedStage(st, name=key(spec.group_id, st.name), inputs=in_map,
                               outputs=out_map, group_id=spec.group_id,
                               metadata={"group_role": spec.role, **spec.metadata}))
    return out


@dataclass
class NightResult:
    result: RunResult | None
    status: dict[str, str]
    skipped: list[str]
    #: window id -> done | failed | skipped | empty, for the windows run tonight
    windows: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (all(s in ("done", "skipped") for s in self.status.values())
                and all(s == "done" for s in self.windows.values()))


def group_scoped(factory: StageFactory) -> StageFactory:
    """The factory's per-group stages only (window stages are planned per window)."""
    return lambda spec: [st for st in factory(spec) if st.scope != "window"]


def night_windows(specs: Sequence[GroupSpec], factory: StageFactory
                  ) -> list[tuple[WindowPlan, PipelineStage]]:
    """The windows the factory's window stages make of these groups."""
    return plan_windows((s.group_id, s.start_mjd, st) for s in specs for st in factory(s)
                        if st.scope == "window")


class NightOrchestrator:
    """Runs a night of groups; resumable through the state DB and the result cache."""

    def __init__(self, state: StateDB, *, output_dir: str | Path, cache: ResultCache | None,
                 runtime: Runtime | None = None, profiler: Any = None, rerun: bool = False,
                 max_groups_in_flight: int = 2, quarantine_after: int = 3,
                 retry_backoff_s: float = 1.0, runner_options: dict[str, Any] | None = None,
                 on_group_done: Callable[[str, PipelineContext | None], None] | None = None,
                 wiring: dict[str, dict[str, str]] | None = None,
                 on_stage_done: Callable[[str, str, StageRecord], None] | None = None,
                 on_product: dict[str, ProductHook] | None = None,
                 find_product: dict[str, ProductFinder] | None = None,
                 role_fallback: dict[str, str] | None = None) -> None:
        self.state = state
        self.output_dir = Path(output_dir)
        self.cache = cache
        self.runtime = runtime
        self.profiler = profiler
        self.rerun = rerun
        self.max_groups_in_flight = max_groups_in_flight
        self.quarantine_after = quarantine_after
        self.retry_backoff_s = retry_backoff_s
        self.runner_options = runner_options or {}
        self.on_group_done = on_group_done
        self.on_stage_done = on_stage_done
        self.wiring = wiring or {}
        #: product key -> hook called when a group makes it (registries, verdicts)
        self.on_product = on_product or {}
        #: product key -> finder of it for a group when nothing makes it tonight
        self.find_product = find_product or {}
        #: role -> the role a group runs in when its stages say it cannot serve the first
        #: (:class:`RoleUnfit`)
        self.role_fallback = role_fallback or {}
        self.run_id = ""
        self._runner: Runner | None = None
        self._stop_reason: str | None = None
        #: window id -> the :class:`WindowInfo` (as a dict) its stage ran with tonight
        self._window_runs: dict[str, dict[str, Any]] = {}

    # -- planning -----------------------------------------------------------------
    def sweep(self, wait_s: float = 0.0) -> None:
        """Remove what killed writers left: temporaries in the products tree whose PID is
        gone; with ``wait_s``, wait that long at most for staging directories' owners that
        are still exiting."""
        if not self.output_dir.is_dir():
            return
        for d in [self.output_dir, *(p for p in self.output_dir.iterdir()
                                     if p.is_dir() and not p.name.startswith("."))]:
            clean_stale_temporaries(d)
        # staging directories of dead writers (a worker that died on a full disk leaves
        # its partial MS there): freed before the manifest is written
        for root in {self.output_dir / FALLBACK_DIRNAME,
                     Path(getattr(self.runtime, "scratch_root", None) or DEFAULT_SCRATCH_ROOT)}:
            cleanup_stale(root, wait_s=wait_s)

    def _todo(self, specs: Sequence[GroupSpec]) -> tuple[list[GroupSpec], dict[str, str]]:
        """Groups to run, and those left alone with why ("skipped": done, "quarantined")."""
        self.sweep()
        self.state.reconcile()
        todo: list[GroupSpec] = []
        skipped: dict[str, str] = {}
        for spec in specs:
            self.state.upsert_group(spec.group_id, start_mjd=spec.start_mjd,
                                    dec_deg=spec.dec_deg, role=spec.role, files=spec.files)
            status = (self.state.group(spec.group_id) or {}).get("status")
            finished = status == "quarantined" or (status == "done" and self._complete(spec))
            if finished and not self.rerun:
                skipped[spec.group_id] = "quarantined" if status == "quarantined" else "skipped"
            else:
                todo.append(spec)
        return todo, skipped

    def _complete(self, spec: GroupSpec) -> bool:
        prods = self.state.products(spec.group_id)
        return bool(prods) and all(Path(p["path"]).exists() for p in prods)

    def windows(self, specs: Sequence[GroupSpec], factory: StageFactory
                ) -> list[tuple[WindowPlan, PipelineStage]]:
        """The night's windows: of tonight's groups and of groups earlier runs recorded
        (an ``--start``/``--end`` run still fills its windows with the groups already
        done)."""
        listed = {s.group_id for s in specs}
        earlier = [GroupSpec(r["group_id"], {}, role=r["role"] or "target",
                             start_mjd=r["start_mjd"], dec_deg=r["dec_deg"])
                   for r in self.state.groups() if r["group_id"] not in listed]
        return night_windows([*specs, *earlier], factory)

    def _window_todo(self, plans: list[tuple[WindowPlan, PipelineStage]],
                     running: set[str]) -> list[tuple[WindowPlan, PipelineStage]]:
        """Windows to run: those with a group running tonight, not done, missing a
        product, or done on other groups than those finished now."""
        todo = []
        for plan, stage in plans:
            row = self.state.window(plan.window_id)
            done_now = {g for g in plan.members
                        if (self.state.group(g) or {}).get("status") == "done"}
            prods = self.state.products(plan.window_id)
            current = (row is not None and row["status"] == "done" and bool(prods)
                       and all(Path(p["path"]).exists() for p in prods)
                       and set(row["groups"]) == done_now)
            if self.rerun or running & set(plan.members) or not current:
                todo.append((plan, stage))
        return todo

    def _window_stage(self, plan: WindowPlan, stage: PipelineStage,
                      planned: Sequence[MappedStage], inputs: dict[str, Product]
                      ) -> MappedWindowStage:
        """The window's stage wired to its members' products: made tonight, else recorded
        by earlier runs; a member with neither is a gap, with the group's state as why."""
        produced = {k for st in planned for k in st.produces}
        wires = self.wiring.get(stage.name, {})
        group_inputs: dict[str, dict[str, str]] = {}
        gaps: dict[str, str] = {}
        for gid in plan.members:
            outer = {k: key(gid, wires.get(k, k)) for k in stage.requires}
            missing = []
            for k, o in outer.items():
                if o in produced or o in inputs:
                    continue
                found = self._recorded(o)
                if found is None:
                    missing.append(k)
                else:
                    inputs[o] = found
            if missing:
                gaps[gid] = f"no {', '.join(missing)} ({self._group_state(gid)})"
            else:
                group_inputs[gid] = outer
        return MappedWindowStage(stage, plan, group_inputs, gaps)

    def plan(self, specs: Sequence[GroupSpec], factory: StageFactory) -> list[MappedStage]:
        stages: list[MappedStage] = []
        for spec in specs:
            stages.extend(group_stages(spec, factory(spec), self.wiring))
        return stages

    def _recorded(self, outer: str) -> Product | None:
        """A product of an earlier run, from the state DB, if its files still exist."""
        gid, _, inner = outer.partition(SEP)
        rows = [p for p in self.state.products(gid) if p["key"] == inner]
        if not rows or not all(Path(p["path"]).exists() for p in rows):
            return None
        refs = [ProductRef(kind=p["kind"], path=p["path"], checksum=p["checksum"],
                           meta=json.loads(p["meta"] or "{}")) for p in rows]
        return refs if len(refs) > 1 else refs[0]

    def _resolve(self, specs: list[GroupSpec], factory: StageFactory,
                 inputs: dict[str, Product]) -> tuple[list[MappedStage], dict[str, str]]:
        """Plan the night; inputs no stage makes tonight come from earlier runs' products.

        A group needing a product that is nowhere fails alone, with a clear message.
        """
        failed: dict[str, str] = {}
        while True:
            live = [s for s in specs if s.group_id not in failed]
            stages = self.plan(live, factory)
            produced = {k for st in stages for k in st.produces}
            changed = False
            for st in stages:
                for outer in st.requires:
                    if outer in produced or outer in inputs:
                        continue
                    found = self._recorded(outer)
                    finder = self.find_product.get(outer.partition(SEP)[2])
                    if found is None and finder is not None:
                        # asked for the group that needs it (which may share another's)
                        spec = next((s for s in specs if s.group_id == st.group_id), None)
                        found = finder(self.state, spec) if spec is not None else None
                    if found is not None:
                        inputs[outer] = found
                        continue
                    gid = st.group_id or ""
                    failed[gid] = (f"stage '{st.name}' needs '{outer}', which no stage makes "
                                   f"tonight and no earlier run recorded")
                    changed = True
            if not changed:
                return stages, failed

    # -- running ----------------------------------------------------------------------
    def stop(self, reason: str) -> None:
        """Start no more stages (SIGTERM): the stages running finish and the groups not
        finished go back to pending, no failure counted. Safe from a signal handler."""
        self._stop_reason = reason
        runner = self._runner
        if runner is not None:
            runner.stop_dispatch(reason)

    def run(self, specs: Sequence[GroupSpec], factory: StageFactory,
            ctx: PipelineContext | None = None, *, windows_closed_before: float | None = None,
            defer_unplannable: bool = False, _fallback: bool = False) -> NightResult:
        """Run the groups not finished yet, then the windows they touch.

        ``windows_closed_before`` (MJD): only windows ending by then run; later ones may
        still get groups (a live night). ``defer_unplannable``: a group needing a product
        that nothing gives yet (tonight's calibrator has not come) is left ``waiting``,
        no failure counted, instead of failed.
        """
        todo, skipped = self._todo(specs)
        ctx = ctx or PipelineContext()
        self.run_id = ctx.run_id
        plans = self.windows(specs, factory)
        if windows_closed_before is not None:
            plans = [(p, st) for p, st in plans
                     if p.end_mjd is not None and p.end_mjd <= windows_closed_before]
        window_todo = self._window_todo(plans, {s.group_id for s in todo})
        if not todo and not window_todo:
            return NightResult(None, dict(skipped), list(skipped))
        inputs: dict[str, Product] = dict(ctx.inputs)
        for spec in todo:
            for k, v in spec.inputs.items():
                inputs[key(spec.group_id, k)] = v
        stages, unplannable = self._resolve(todo, group_scoped(factory), inputs)
        status: dict[str, str] = {}
        for gid, message in unplannable.items():
            state = "waiting" if defer_unplannable else "failed"
            self.state.set_group_status(gid, state, message, failed=not defer_unplannable)
            status[gid] = state
        # a group none of whose stages runs tonight (--only-stage of a window stage) keeps
        # its state
        planned = {st.group_id for st in stages}
        live = [s for s in todo if s.group_id not in unplannable and s.group_id in planned]
        for spec in todo:
            if spec.group_id not in unplannable and spec.group_id not in planned:
                kept = (self.state.group(spec.group_id) or {}).get("status")
                status[spec.group_id] = "skipped" if kept in ("done", None) else str(kept)
        for spec in live:
            self.state.set_group_status(spec.group_id, "running")
        windows, window_status = self._start_windows(window_todo, stages, inputs)
        owner = {st.name: st.group_id or "" for st in [*stages, *windows]}
        self._window_runs = {}
        self._runner = runner = Runner([*stages, *windows], cache=self.cache, runtime=self.runtime,
                        profiler=self.profiler,
                        rerun=self.rerun, max_workers=self.max_groups_in_flight,
                        retry_backoff_s=self.retry_backoff_s, on_done=self._recorder(owner),
                        **self.runner_options)
        if self._stop_reason is not None:
            runner.stop_dispatch(self._stop_reason)
        try:
            result = runner.run(ctx._derive(inputs=inputs))
        finally:
            self._runner = None
        # again at the end: a writer of a killed run still dying (or unreaped) at the start
        # is gone now, so its temporary does not outlive this run
        self.sweep()
        status.update(self._finish(live, result, owner))
        status.update(skipped)
        window_status.update(self._finish_windows(windows, result))
        orphans = [] if _fallback else [*self._orphans(live, result, owner, status),
                                        *self._demoted(live, result, owner, status)]
        if orphans:
            # groups that failed only because a product they share failed (their
            # calibrator's solve) run again at once without it: a finder (the
            # calibration registry) may give another; so do groups that could not serve
            # their role (a calibrator whose solutions failed QA), in their fallback role
            again = self.run(orphans, factory, ctx, windows_closed_before=windows_closed_before,
                             defer_unplannable=defer_unplannable, _fallback=True)
            status.update({g: st for g, st in again.status.items() if g in status})
            window_status.update(again.windows)
        return NightResult(result, status, list(skipped), window_status)

    def _orphans(self, live: Sequence[GroupSpec], result: RunResult, owner: dict[str, str],
                 status: dict[str, str]) -> list[GroupSpec]:
        """Failed groups whose failure is another group's (a product they share failed):
        copies of their specs without the shared products of failed groups."""
        out = []
        failed_owners = {g for g, st in status.items() if st not in ("done", "skipped")}
        for spec in live:
            if status.get(spec.group_id) != "failed":
                continue
            recs = [r for n, r in result.records.items() if owner[n] == spec.group_id]
            if any(r.status == "failed" for r in recs):
                continue  # a stage of its own failed
            lost = {k for k, v in spec.shared.items()
                    if v.partition(SEP)[0] in failed_owners}
            if lost:
                out.append(replace(spec, shared={k: v for k, v in spec.shared.items()
                                                 if k not in lost}))
        return out

    def _demoted(self, live: Sequence[GroupSpec], result: RunResult, owner: dict[str, str],
                 status: dict[str, str]) -> list[GroupSpec]:
        """Groups a stage of which found them unfit for their role (:class:`RoleUnfit`),
        as copies in the role ``role_fallback`` names, sharing nothing (what they need
        comes from the finders), with why in their metadata (``role_fallback``)."""
        out = []
        for spec in live:
            new = self.role_fallback.get(spec.role or "")
            if new is None or status.get(spec.group_id) not in ("failed", "quarantined"):
                continue
            unfit = next((r for n, r in result.records.items() if owner[n] == spec.group_id
                          and r.status == "failed" and r.error_type == RoleUnfit.__name__),
                         None)
            if unfit is None:
                continue
            why = f"{spec.role} -> {new}: {unfit.name}: {unfit.error}"
            get_logger().warning("group cannot serve its role: runs again in another",
                                 group=spec.group_id, role=spec.role, fallback=new,
                                 reason=unfit.error)
            out.append(replace(spec, role=new, shared={},
                               metadata={**spec.metadata, "role_fallback": why}))
        return out

    def _start_windows(self, todo: list[tuple[WindowPlan, PipelineStage]],
                       stages: Sequence[MappedStage], inputs: dict[str, Product]
                       ) -> tuple[list[MappedWindowStage], dict[str, str]]:
        """The window stages to run, recorded as running; a window none of whose groups
        can give products is recorded as empty instead."""
        out: list[MappedWindowStage] = []
        status: dict[str, str] = {}
        for plan, stage in todo:
            w = self._window_stage(plan, stage, stages, inputs)
            running = "running" if w.group_inputs else "empty"
            self.state.set_window(plan.window_id, stage=plan.stage, start_mjd=plan.start_mjd,
                                  end_mjd=plan.end_mjd, status=running, gaps=w.gaps,
                                  message=None if w.group_inputs else "no group has products")
            if w.group_inputs:
                out.append(w)
            else:
                status[plan.window_id] = "empty"
        return out, status

    def _group_state(self, gid: str) -> str:
        """A group's state in words, for a window's gap: "group quarantined: <why>"."""
        row = self.state.group(gid) or {}
        why = f": {row['message']}" if row.get("message") else ""
        return f"group {row.get('status', 'unknown')}{why}"

    def _finish_windows(self, windows: Sequence[MappedWindowStage], result: RunResult
                        ) -> dict[str, str]:
        status: dict[str, str] = {}
        for w in windows:
            rec, plan = result.records[w.name], w.plan
            run = self._window_runs.get(plan.window_id)
            if rec.status in ("ok", "cached") and run is not None:
                state, groups, message = "done", run["groups"], None
            else:  # failed, or skipped: every member failed upstream
                state, groups, message = rec.status, [], rec.error
            # the groups left out (failed tonight), with what the state DB now says of them
            left = [g for g in plan.members if g not in groups] if state == "done" else [
                g for g in plan.members if (self.state.group(g) or {}).get("status") != "done"]
            gaps = {**{g: self._group_state(g) for g in left}, **w.gaps}
            self.state.set_window(plan.window_id, stage=plan.stage, start_mjd=plan.start_mjd,
                                  end_mjd=plan.end_mjd, status=state, groups=groups,
                                  gaps=gaps, message=message)
            status[plan.window_id] = state
        return status

    def _recorder(self, owner: dict[str, str]) -> Callable[[PipelineStage, StageRecord, Any],
                                                            None]:
        def record(stage: PipelineStage, rec: StageRecord, out: PipelineContext | None) -> None:
            gid = owner[stage.name]
            if rec.error_type == "StorageError":
                self.sweep()  # what a writer that died on the full disk left: room for the DB
            d = rec.to_dict()
            d["name"] = stage.name.split(SEP, 1)[1]
            self.state.record_stage_run(self.run_id, gid, d)
            if out is not None:
                produced = {k.split(SEP, 1)[1]: out.outputs[k] for k in stage.produces}
                self.state.record_products(gid, produced)
                for k, product in produced.items():
                    if k in self.on_product:
                        self.on_product[k](self.state, gid, product)
                window = out.metadata.get(key(gid, WINDOW_META))
                if window is not None:
                    self._window_runs[gid] = window
            if self.on_stage_done is not None:
                self.on_stage_done(gid, d["name"], rec)

        return record

    def _finish(self, todo: Sequence[GroupSpec], result: RunResult,
                owner: dict[str, str]) -> dict[str, str]:
        status: dict[str, str] = {}
        for spec in todo:
            gid = spec.group_id
            recs = [r for n, r in result.records.items() if owner[n] == gid]
            bad = [r for r in recs if r.status in ("failed", "skipped")]
            if not bad:
                self.state.set_group_status(gid, "done")
                status[gid] = "done"
                if self.on_group_done is not None:
                    self.on_group_done(gid, result.context)
                continue
            first = next((r for r in bad if r.status == "failed"), bad[0])
            message = f"{first.name}: {first.error}"
            if first.error_type == "Stopped":  # the service stopped first: not a failure
                self.state.set_group_status(gid, "pending", message)
                status[gid] = "pending"
                continue
            if (first.error_type == RoleUnfit.__name__
                    and self.role_fallback.get(spec.role or "")):
                # the role's failure, not the group's: it runs again in its fallback role
                self.state.set_group_status(gid, "failed", message)
                status[gid] = "failed"
                continue
            # a full disk is not the group's fault: it neither counts towards nor triggers
            # quarantine, so the group runs again once there is space
            storage = first.error_type == "StorageError"
            self.state.set_group_status(gid, "failed", message, failed=not storage)
            row = self.state.group(gid) or {}
            if storage:
                status[gid] = "failed"
            elif row.get("failures", 0) >= self.quarantine_after or _is_bad_input(first):
                self._quarantine(gid, recs)
                status[gid] = "quarantined"
            else:
                status[gid] = "failed"
        return status

    def _quarantine(self, gid: str, recs: list[StageRecord]) -> None:
        folder = self.output_dir / "quarantine" / gid.replace(":", "")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "errors.json").write_text(json.dumps(
            {"group_id": gid, "time": time.time(), "stages": [r.to_dict() for r in recs],
             "stage_runs": self.state.stage_runs(gid)}, indent=2, default=str))
        row = self.state.group(gid) or {}
        self.state.set_group_status(gid, "quarantined", row.get("message"))


def _is_bad_input(rec: StageRecord) -> bool:
    """Bad input fails the same way every time: quarantine at once."""
    return rec.error_type in ("InputError", RoleUnfit.__name__)
