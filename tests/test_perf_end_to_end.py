"""The end_to_end perf suite's bookkeeping: overhead is idle worker time, not queueing."""

import pytest

from perf.suites.end_to_end import night_figures


def _rec(name, sub, start, end, back, scope="process", peak_mb=512.0):
    return {"name": name, "started": sub, "finished": back, "wall_s": back - sub,
            "profile": {"scope": scope, "started": start, "finished": end,
                        "wall_s": end - start, "peak_rss_mb": peak_mb}}


def test_queueing_behind_a_busy_worker_is_not_overhead():
    # one worker: B waits 10 s behind A (queueing); A starts 0.1 s late, each result
    # comes back 0.05 s after the stage ends
    recs = [_rec("g/a", 0.0, 0.1, 10.0, 10.05), _rec("g/b", 0.0, 10.1, 20.0, 20.05,
                                                     peak_mb=1024.0)]
    f = night_figures({"wall_s": 20.05, "groups": {"g": {"verdict": "ACCEPT",
                                                         "records": recs}}}, 1)
    # idle worker time: [0, 0.1) and [10.0, 10.1) while B waited; returns: 2 x 0.05
    assert f["overhead_s"] == pytest.approx(0.3, abs=0.03)
    assert f["overhead_frac"] == pytest.approx(0.3 / 20.05, rel=0.1)
    assert f["worker_peak_gb"] == pytest.approx(1.0)
    assert f["verdicts"] == {"g": "ACCEPT"}


def test_a_conversion_fan_out_keeps_every_worker_busy():
    conv = {"name": "g/conversion", "started": 0.0, "finished": 5.0, "wall_s": 5.0,
            "profile": {"scope": "thread", "started": 0.0, "finished": 5.0, "wall_s": 5.0}}
    recs = [conv, _rec("h/imaging", 0.0, 5.0, 9.0, 9.0)]
    f = night_figures({"wall_s": 9.0, "groups": {"g": {"records": recs}}}, 2)
    assert f["overhead_s"] == pytest.approx(0.0, abs=0.02)


def test_a_conversion_on_a_worker_fans_out_to_every_worker():
    # the conversion runs on a worker and its subband tasks occupy both: the imaging that
    # waits meanwhile is queueing, and only the 0.1 s late start of the conversion counts
    recs = [_rec("g/conversion", 0.0, 0.1, 5.0, 5.0), _rec("h/imaging", 0.0, 5.0, 9.0, 9.0)]
    f = night_figures({"wall_s": 9.0, "groups": {"g": {"records": recs}}}, 2)
    assert f["overhead_s"] == pytest.approx(0.2, abs=0.03)
