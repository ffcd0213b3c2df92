import os
import time

import pytest

from dsa110_pipeline.cache import ResultCache
from dsa110_pipeline.context import PipelineContext, ProductRef
from dsa110_pipeline.demo import MakeArrayStage, ScaleStage, SummaryStage
from dsa110_pipeline.errors import ContractError, InputError, PlanError, TransientError
from dsa110_pipeline.runner import Runner, build_plan, expand_sweep
from dsa110_pipeline.stage import FunctionStage, PipelineStage
from tests.helpers import file_stage

# -- planning ---------------------------------------------------------------------

def test_cycle_is_rejected_with_its_members(tmp_path):
    a = file_stage("a", tmp_path, "x", requires=("z",))
    b = file_stage("b", tmp_path, "y", requires=("x",))
    c = file_stage("c", tmp_path, "z", requires=("y",))
    with pytest.raises(PlanError, match="cycle") as exc:
        build_plan([a, b, c])
    assert all(n in str(exc.value) for n in "abc")


def test_missing_producer_is_rejected_before_anything_runs(tmp_path):
    log = []
    a = file_stage("a", tmp_path, "x", log=log)
    b = file_stage("b", tmp_path, "y", requires=("nothing",), log=log)
    with pytest.raises(PlanError, match="'b' requires 'nothing'"):
        Runner([a, b]).run()
    assert log == []


def test_duplicate_producer_is_rejected(tmp_path):
    with pytest.raises(PlanError, match="produced by both"):
        build_plan([file_stage("a", tmp_path, "x"), file_stage("b", tmp_path, "x")])


def test_initial_inputs_satisfy_requirements(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("hello")
    ctx = PipelineContext(inputs={"raw": ProductRef.for_path("text", f)})
    res = Runner([file_stage("a", tmp_path, "x", requires=("raw",))]).run(ctx)
    assert res.ok and res.context.outputs["x"].exists()


def test_plan_describes_order(tmp_path):
    plan = build_plan([file_stage("b", tmp_path, "y", requires=("x",)),
                       file_stage("a", tmp_path, "x")])
    text = plan.describe()
    assert text.index(" a ") < text.index(" b ")


# -- contract -----------------------------------------------------------------------

class ForgetfulStage(PipelineStage):
    name = "forgetful"
    produces = ("thing",)

    def execute(self, ctx):
        return ctx


def test_missing_declared_output_names_stage_and_key():
    res = Runner([ForgetfulStage()]).run()
    rec = res.records["forgetful"]
    assert rec.status == "failed" and rec.error_type == "ContractError"
    assert "forgetful" in rec.error and "'thing'" in rec.error
    with pytest.raises(Exception, match="thing"):
        res.raise_for_failures()


class Tracking(PipelineStage):
    name = "tracking"
    produces = ("out",)
    calls: list

    def __init__(self, fail_in: str, **kw):
        super().__init__(**kw)
        self.fail_in = fail_in
        self.calls = []

    def validate(self, ctx):
        self.calls.append("validate")
        if self.fail_in == "validate":
            raise InputError("input is bad", files=["/data/x.hdf5"])

    def execute(self, ctx):
        self.calls.append("execute")
        if self.fail_in == "execute":
            raise ValueError("boom")
        return ctx

    def cleanup(self, ctx):
        self.calls.append("cleanup")


def test_failing_validate_stops_execute_and_cleans_up():
    st = Tracking("validate")
    res = Runner([st]).run()
    assert st.calls == ["validate", "cleanup"]
    err = res.records["tracking"].error
    assert "tracking" in err and "input is bad" in err and "/data/x.hdf5" in err


def test_cleanup_runs_after_execute_failure_and_error_carries_cause(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("x")
    st = Tracking("execute", requires=("raw",))
    ctx = PipelineContext(inputs={"raw": ProductRef.for_path("text", f)})
    res = Runner([st]).run(ctx)
    assert st.calls == ["validate", "execute", "cleanup"]
    err = res.records["tracking"].error
    assert "ValueError: boom" in err and str(f) in err


def test_failure_skips_descendants_but_independent_branches_continue(tmp_path):
    bad = Tracking("execute")
    after_bad = file_stage("after", tmp_path, "y", requires=("out",))
    other = file_stage("other", tmp_path, "z")
    res = Runner([bad, after_bad, other]).run()
    assert res.records["tracking"].status == "failed"
    assert res.records["after"].status == "skipped"
    assert res.records["other"].status == "ok"
    assert "z" in res.context.outputs


def test_a_stage_taking_partial_inputs_runs_on_what_its_producers_made(tmp_path):
    """A window-like stage waits for every producer, then runs on the inputs that exist;
    when every producer failed it is skipped, and so is what depends on it."""
    def gather(ctx: PipelineContext) -> PipelineContext:
        have = sorted(k for k in ("a", "b", "c") if ctx.has(k))
        out = tmp_path / f"gathered_{len(have)}.txt"
        out.write_text(",".join(have))
        return ctx.with_output("all", ProductRef.for_path("text", out))

    def stages(fail: set[str]):
        makers = [file_stage(k, tmp_path, k, sleep=0.05 * i) if k not in fail
                  else FunctionStage(_boom, name=k, produces=(k,))
                  for i, k in enumerate(("a", "b", "c"))]
        gatherer = FunctionStage(gather, name="gather", requires=("a", "b", "c"),
                                 produces=("all",))
        gatherer.partial_inputs = True
        return [*makers, gatherer, file_stage("after", tmp_path, "z", requires=("all",))]

    res = Runner(stages({"b"})).run()
    assert res.records["gather"].status == "ok" and res.records["after"].status == "ok"
    assert (tmp_path / "gathered_2.txt").read_text() == "a,c"
    res = Runner(stages({"a", "b", "c"})).run()
    assert res.records["gather"].status == "skipped"
    assert res.records["after"].status == "skipped"
    assert "upstream stage" in res.records["gather"].error


def _boom(ctx: PipelineContext) -> PipelineContext:
    raise RuntimeError("boom")


# -- parallelism -----------------------------------------------------------------------

def test_independent_branches_overlap_in_time(tmp_path):
    log = []
    stages = [file_stage(f"s{i}", tmp_path, f"k{i}", sleep=0.3, log=log) for i in range(4)]
    res = Runner(stages).run()
    assert res.ok
    starts = [s for _, s, _ in log]
    ends = [e for _, _, e in log]
    # Every stage started before any stage finished: they ran at the same time.
    assert max(starts) < min(ends)


def test_dependent_stages_do_not_overlap(tmp_path):
    log = []
    a = file_stage("a", tmp_path, "x", sleep=0.05, log=log)
    b = file_stage("b", tmp_path, "y", requires=("x",), log=log)
    Runner([b, a]).run()
    (na, sa, ea), (nb, sb, eb) = log
    assert (na, nb) == ("a", "b") and sb >= ea


def _cpu_bound(ctx):
    total = sum(i * i for i in range(200_000))
    path = os.path.join(ctx.metadata["dir"], f"{os.getpid()}.txt")
    with open(path, "w") as fh:
        fh.write(str(total))
    return ctx.with_output(ctx.metadata["key"], ProductRef.for_path("text", path))


def test_process_stage_runs_in_another_process(tmp_path):
    st = FunctionStage(_cpu_bound, name="cpu", produces=("cpu_out",), executor="process")
    ctx = PipelineContext(metadata={"dir": str(tmp_path), "key": "cpu_out"})
    res = Runner([st]).run(ctx)
    assert res.ok
    assert os.path.basename(res.context.outputs["cpu_out"].path) != f"{os.getpid()}.txt"


def test_runner_is_reusable(tmp_path):
    runner = Runner([file_stage("a", tmp_path, "x"), file_stage("b", tmp_path, "y",
                                                                 requires=("x",))])
    assert runner.run().ok and runner.run().ok


# -- retries and timeouts ---------------------------------------------------------------

class Flaky(PipelineStage):
    name = "flaky"
    produces = ("f",)

    def __init__(self, fail_times, error, out, **kw):
        super().__init__(**kw)
        self.fail_times, self.error, self.out, self.tries = fail_times, error, out, 0

    def execute(self, ctx):
        self.tries += 1
        if self.tries <= self.fail_times:
            raise self.error
        self.out.write_text("ok")
        return ctx.with_output("f", ProductRef.for_path("text", self.out))


def test_transient_errors_are_retried_with_backoff(tmp_path):
    st = Flaky(2, TransientError("worker lost"), tmp_path / "f", retries=3)
    t0 = time.perf_counter()
    res = Runner([st], retry_backoff_s=0.05).run()
    assert res.ok and st.tries == 3 and res.records["flaky"].attempts == 3
    assert time.perf_counter() - t0 >= 0.05 + 0.1  # backoff doubled between tries


def test_bad_input_is_never_retried(tmp_path):
    st = Flaky(5, InputError("corrupt header", files=["x.hdf5"]), tmp_path / "f", retries=3)
    res = Runner([st], retry_backoff_s=0.0).run()
    assert st.tries == 1 and res.records["flaky"].status == "failed"


def test_retries_exhausted_is_a_failure(tmp_path):
    st = Flaky(5, TransientError("still down"), tmp_path / "f", retries=1)
    res = Runner([st], retry_backoff_s=0.0).run()
    assert st.tries == 2 and res.records["flaky"].status == "failed"


def _sleep_then_write(ctx):
    marker = ctx.metadata["marker"]
    time.sleep(3)
    with open(marker, "w") as fh:  # must never happen: the process was killed
        fh.write("finished")
    return ctx


def test_timeout_really_stops_the_work(tmp_path):
    marker = tmp_path / "marker"
    st = FunctionStage(_sleep_then_write, name="slow", timeout=0.5)
    t0 = time.perf_counter()
    res = Runner([st]).run(PipelineContext(metadata={"marker": str(marker)}))
    assert res.records["slow"].error_type == "StageTimeout"
    assert "timeout" in res.records["slow"].error
    time.sleep(3.5 - (time.perf_counter() - t0))
    assert not marker.exists()


# -- caching --------------------------------------------------------------------------------

def _demo(tmp_path, factor=2.0, size=1000, version=None):
    stages = [MakeArrayStage({"size": size, "out_dir": str(tmp_path)}),
              ScaleStage({"factor": factor, "out_dir": str(tmp_path)}),
              SummaryStage({"out_dir": str(tmp_path)})]
    if version:
        stages[1].version = version
    return stages


def _statuses(res):
    return {n: r.status for n, r in res.records.items()}


def test_rerun_hits_cache_and_records_it(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    first = Runner(_demo(tmp_path), cache=cache).run()
    assert set(_statuses(first).values()) == {"ok"}
    second = Runner(_demo(tmp_path), cache=cache).run()
    assert set(_statuses(second).values()) == {"cached"}
    assert all(p.cache_hit for p in second.context.provenance)
    assert second.context.outputs["summary"] == first.context.outputs["summary"]


def test_config_change_invalidates_downstream_only(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    Runner(_demo(tmp_path), cache=cache).run()
    res = Runner(_demo(tmp_path, factor=3.0), cache=cache).run()
    assert _statuses(res) == {"make_array": "cached", "scale": "ok", "summary": "ok"}


def test_code_version_change_invalidates(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    Runner(_demo(tmp_path), cache=cache).run()
    res = Runner(_demo(tmp_path, version="2"), cache=cache).run()
    assert _statuses(res)["scale"] == "ok" and _statuses(res)["make_array"] == "cached"


def test_input_change_invalidates(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    Runner(_demo(tmp_path), cache=cache).run()
    res = Runner(_demo(tmp_path, size=2000), cache=cache).run()
    # New array -> new checksum -> everything downstream reruns.
    assert set(_statuses(res).values()) == {"ok"}


def test_deleted_product_is_not_taken_from_cache(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    first = Runner(_demo(tmp_path), cache=cache).run()
    os.remove(first.context.outputs["summary"].path)
    res = Runner(_demo(tmp_path), cache=cache).run()
    assert _statuses(res)["summary"] == "ok"


def test_rerun_flag_ignores_cache(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    Runner(_demo(tmp_path), cache=cache).run()
    res = Runner(_demo(tmp_path), cache=cache, rerun=True).run()
    assert set(_statuses(res).values()) == {"ok"}


def test_cache_stores_references_not_arrays(tmp_path):
    cache = ResultCache(tmp_path / "cache")
    Runner(_demo(tmp_path, size=200_000), cache=cache).run()
    sizes = [f.stat().st_size for f in (tmp_path / "cache").rglob("*.json")]
    assert sizes and max(sizes) < 4096


# -- sweeps ------------------------------------------------------------------------------------

def test_parameter_sweep_variants_keep_provenance(tmp_path):
    make, scale, _ = _demo(tmp_path)
    variants = expand_sweep(scale, {"factor": [0.5, 1.0, 3.0]})
    res = Runner([make, *variants]).run()
    assert res.ok
    keys = sorted(k for k in res.context.outputs if k.startswith("scaled"))
    assert keys == ["scaled[factor=0.5]", "scaled[factor=1.0]", "scaled[factor=3.0]"]
    paths = {res.context.outputs[k].path for k in keys}
    assert len(paths) == 3
    prov = {p.stage: p.variant for p in res.context.provenance}
    assert prov["scale[factor=3.0]"] == {"factor": 3.0}


def test_sweep_over_unknown_key_is_rejected(tmp_path):
    with pytest.raises(Exception, match="unknown config key"):
        expand_sweep(_demo(tmp_path)[1], {"robust": [0]})


def test_contract_error_class_is_exported():
    assert issubclass(ContractError, Exception)


def test_mapped_stages_run_one_stage_class_per_group(tmp_path):
    from dsa110_pipeline.mapped import MappedStage

    stages = []
    for g in ("g1", "g2"):
        out = tmp_path / g
        out.mkdir()
        make, scale, _ = _demo(out)
        stages.append(MappedStage(make, name=f"{g}/make", inputs={},
                                  outputs={"array": f"{g}/array"}, group_id=g))
        stages.append(MappedStage(scale, name=f"{g}/scale", inputs={"array": f"{g}/array"},
                                  outputs={"scaled": f"{g}/scaled"}, group_id=g))
    res = Runner(stages).run()
    assert res.ok
    assert set(res.context.outputs) == {"g1/array", "g1/scaled", "g2/array", "g2/scaled"}
    assert "/g2/" in res.context.outputs["g2/scaled"].path
    with pytest.raises(ValueError, match="lacks key"):
        MappedStage(stages[1].inner, name="x", inputs={}, outputs={"scaled": "s"})


def test_runner_profiles_named_stage_with_cprofile(tmp_path):
    from dsa110_pipeline.profiling import RunProfiler

    prof = RunProfiler()
    with prof:
        Runner(_demo(tmp_path), profiler=prof, cprofile=["scale"]).run()
    by_name = {p.name: p for p in prof.report().stages}
    assert set(by_name) == {"make_array", "scale", "summary"}
    assert "execute" in (by_name["scale"].cprofile_text or "")
    assert by_name["summary"].cprofile_text is None
    assert by_name["make_array"].wall_s > 0


class CountingStage(PipelineStage):
    name = "counting"
    produces = ("count",)

    def execute(self, ctx):
        return (ctx.with_outputs({"count": ProductRef(kind="n", path="/dev/null")})
                .with_metrics(self.name, rows=12, read_s=0.5, table=[1, 2]))


def test_record_carries_the_stage_metrics_into_the_manifest():
    rec = Runner([CountingStage()]).run().records["counting"]
    # scalars only: a list is no manifest number
    assert rec.metrics == {"rows": 12, "read_s": 0.5}
    assert rec.to_dict()["metrics"] == {"rows": 12, "read_s": 0.5}


def test_plan_depth_counts_the_longest_chain_to_the_end(tmp_path):
    plan = build_plan([file_stage("leaf", tmp_path, "l"),
                       file_stage("a", tmp_path, "x"),
                       file_stage("b", tmp_path, "y", requires=("x",)),
                       file_stage("c", tmp_path, "z", requires=("y",)),
                       file_stage("d", tmp_path, "w", requires=("x",))])
    assert dict(zip([s.name for s in plan.stages], plan.depth)) == {
        "leaf": 1, "a": 3, "b": 2, "c": 1, "d": 1}


def test_plan_priority_breaks_depth_ties_by_the_stages_waiting_downstream(tmp_path):
    # a night in miniature: the calibration and a target's conversion head chains of the
    # same depth, but both targets' applies wait on the calibration
    plan = build_plan([file_stage("conv_cal", tmp_path, "mc"),
                       file_stage("cal", tmp_path, "sol", requires=("mc",)),
                       file_stage("conv_t1", tmp_path, "m1"),
                       file_stage("conv_t2", tmp_path, "m2"),
                       file_stage("apply_t1", tmp_path, "c1", requires=("m1", "sol")),
                       file_stage("apply_t2", tmp_path, "c2", requires=("m2", "sol"))])
    depth = dict(zip([s.name for s in plan.stages], plan.depth))
    prio = dict(zip([s.name for s in plan.stages], plan.priority))
    assert depth["cal"] == depth["conv_t1"] == 2
    assert prio["conv_cal"] > prio["cal"] > prio["conv_t1"] == prio["conv_t2"] \
        > prio["apply_t1"] == prio["apply_t2"]
    # depth still comes first: a deeper stage outranks any number of waiting stages
    assert all(prio[a] > prio[b] for a in prio for b in prio if depth[a] > depth[b])


def test_head_of_the_longest_chain_is_dispatched_first(tmp_path):
    # one thread: the order of dispatch is the order of execution
    log = []
    stages = [file_stage("short", tmp_path, "s", log=log),
              file_stage("long1", tmp_path, "x", log=log),
              file_stage("long2", tmp_path, "y", requires=("x",), log=log)]
    assert Runner(stages, max_workers=1).run().ok
    # listed first, "short" would run first in plan order; "long1" heads a longer chain
    assert [name for name, _, _ in log][0] == "long1"


def test_a_running_stage_sees_its_plan_priority_as_task_priority(tmp_path):
    from dsa110_pipeline.runner import task_priority

    seen = {}

    def probe(name, produces, requires=()):
        def fn(ctx):
            seen[name] = task_priority()
            path = tmp_path / f"{produces}.txt"
            path.write_text(name)
            return ctx.with_output(produces, ProductRef.for_path("text", path))
        return FunctionStage(fn, name=name, requires=requires, produces=(produces,))

    runner = Runner([probe("a", "x"), probe("b", "y", ("x",)), probe("c", "z")])
    assert runner.run().ok
    plan = runner.plan()
    assert seen == dict(zip([s.name for s in plan.stages], plan.priority))
    assert seen["a"] > seen["b"] == seen["c"] > 0
    assert task_priority() == 0  # outside a stage
