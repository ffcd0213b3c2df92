"""The command line answers bad arguments and unwritable outputs in one line (issue 20)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dsa110_pipeline.run import main


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    return err.splitlines()[-1]


@pytest.mark.parametrize("argv, problem", [
    (["--start", "yesterday evening"], "--start 'yesterday evening' is not an ISO UTC time"),
    (["--end", "2026-02-30T00:00:00"], "--end '2026-02-30T00:00:00' is not an ISO UTC time"),
    (["--start", "2026-01-26T00:00:00", "--end", "2026-01-25T00:00:00"],
     "--start 2026-01-26T00:00:00 is later than --end 2026-01-25T00:00:00"),
])
def test_bad_window_is_a_usage_error(argv, problem, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--input", str(tmp_path), "--output", str(tmp_path / "out"), *argv])
    assert ei.value.code == 2
    line = _one_line_error(capsys)
    assert problem in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("output, problem", [
    ("/proc/x", "cannot write /proc/x: No such file or directory"),
    ("/sys/x", "permission denied writing /sys/x"),  # a mount that refuses writes
])
def test_uncreatable_output_is_one_line(output, problem, tmp_path, capsys) -> None:
    assert main(["--input", str(tmp_path), "--output", output, "--log-json"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("error: ") and problem in line


def test_output_that_is_a_file_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    assert main(["--input", str(tmp_path), "--output", str(out), "--log-json"]) == 2
    assert f"cannot write {out}" in _one_line_error(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_is_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["--input", str(tmp_path), "--output", str(out), "--log-json"]) == 2
    finally:
        out.chmod(0o755)
    assert f"permission denied writing {out}" in _one_line_error(capsys)


def test_dry_run_does_not_need_the_output(tmp_path, capsys) -> None:
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--dry-run"]) == 0
    assert not Path(tmp_path / "o").exists()


def test_failed_group_says_why_on_console_manifest_and_summary(tmp_path, capsys) -> None:
    """A night whose only group fails prints the reason, not just "failed=1"."""
    import json

    from dsa110_pipeline.simulate import SimulationConfig, simulate_observation

    inp = tmp_path / "in"
    simulate_observation(SimulationConfig(  # a target field: no calibrator tonight
        out_dir=inp, n_antennas=4, n_subbands=2, n_channels=4, n_integrations=2, n_sources=1,
        noise=False, rfi=False, seed=1, nthreads=1, jitter_s=0, dead_antennas=0))
    out = tmp_path / "out"
    rc = main(["--input", str(inp), "--output", str(out), "--log-json",
               "--set", "conversion.expected_subbands=[0,1]",
               "--set", "orchestrator.n_workers=1"])
    assert rc == 1
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()
               if line.startswith("{")]
    failed = [r for r in records if r["event"] in ("group failed", "group quarantined")]
    assert len(failed) == 1 and "which no stage makes tonight" in failed[0]["reason"], records
    reason = failed[0]["reason"]
    md = (out / "manifest.md").read_text()
    assert "## Failed groups" in md and reason in md
    html_page = (out / "night_summary.html").read_text()
    assert "which no stage makes tonight" in html_page
