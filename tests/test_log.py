import io
import json

from dsa110_pipeline.context import PipelineContext
from dsa110_pipeline.log import configure_logging, get_logger
from dsa110_pipeline.runner import Runner
from dsa110_pipeline.stage import FunctionStage


def _logs_inside(ctx):
    get_logger().info("working", step=1)
    return ctx


def test_json_lines_carry_run_group_and_stage():
    buf = io.StringIO()
    configure_logging(json_lines=True, stream=buf)
    try:
        ctx = PipelineContext(run_id="r1", group_id="2026-01-25T22:00:00")
        Runner([FunctionStage(_logs_inside, name="logger_stage")]).run(ctx)
    finally:
        configure_logging()
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    rec = next(r for r in records if r["event"] == "working")
    assert rec["run_id"] == "r1"
    assert rec["group_id"] == "2026-01-25T22:00:00"
    assert rec["stage"] == "logger_stage"
    assert rec["level"] == "info" and rec["step"] == 1


def test_console_output_is_readable_text():
    buf = io.StringIO()
    configure_logging(json_lines=False, stream=buf)
    try:
        get_logger(stage="s").warning("disk nearly full", free_gb=1.5)
    finally:
        configure_logging()
    line = buf.getvalue()
    assert "disk nearly full" in line and "free_gb=1.5" in line and not line.startswith("{")
