import pytest

from dsa110_pipeline.config import DEFAULT_CONFIG_FILE, build_config, load_config
from dsa110_pipeline.errors import ConfigError


def test_default_yaml_loads_and_validates():
    cfg = load_config(environ={})
    assert cfg.orchestrator.threads_per_worker == 1
    assert DEFAULT_CONFIG_FILE.exists()


def test_unknown_key_names_its_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("orchestrator:\n  retries: 2\n  retires: 3\n")
    with pytest.raises(ConfigError, match=r"orchestrator\.retires: unknown key"):
        load_config(f, environ={})


def test_wrong_type_names_its_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("profiling:\n  sample_interval_s: fast\n")
    with pytest.raises(ConfigError, match=r"profiling\.sample_interval_s: .*'fast'"):
        load_config(f, environ={})


def test_dask_config_merges_over_the_quiet_defaults_and_names_a_bad_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("orchestrator:\n  dask_config:\n    distributed.admin.tick.interval: 50ms\n")
    got = load_config(f, environ={}).orchestrator.dask_config
    assert got["distributed.admin.tick.interval"] == "50ms"
    assert got["distributed.worker.profile.interval"] == "100ms"  # the default kept
    f.write_text("orchestrator:\n  dask_config:\n    distributed.admin.tik.interval: 5s\n")
    with pytest.raises(ConfigError, match=r"distributed\.admin\.tik\.interval.*not a dask"):
        load_config(f, environ={})
    f.write_text("orchestrator:\n  dask_config:\n    array.chunk-size: 1MiB\n")
    with pytest.raises(ConfigError, match=r"array\.chunk-size.*only distributed"):
        load_config(f, environ={})


def test_env_and_set_overrides_in_order(tmp_path):
    cfg = load_config(environ={"DSA110_ORCHESTRATOR__RETRIES": "5"})
    assert cfg.orchestrator.retries == 5
    cfg = load_config(environ={"DSA110_ORCHESTRATOR__RETRIES": "5"},
                      overrides=["orchestrator.retries=7"])
    assert cfg.orchestrator.retries == 7


def test_other_dsa110_variables_are_not_overrides():
    cfg = load_config(environ={"DSA110_SHARED_DATA": "/data", "DSA110_CASA_PYTHON": "/x/py"})
    assert cfg.orchestrator.retries == 2


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(environ={}, overrides=["novalue"])


def test_stage_branch_is_typed_by_the_stage_config():
    raw = {"pipeline": {"stages": {"scaler": "dsa110_pipeline.demo:ScaleStage"}},
           "scaler": {"factor": 3.0}}
    cfg = build_config(raw)
    assert cfg.stage_config("scaler").factor == 3.0
    with pytest.raises(ConfigError, match=r"scaler\.factor"):
        build_config({**raw, "scaler": {"factor": "big"}})


def test_bad_stage_path_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot import stage module"):
        build_config({"pipeline": {"stages": {"x": "no_such_module:Stage"}}})


def test_config_is_frozen():
    cfg = load_config(environ={})
    with pytest.raises(Exception):  # noqa: B017 - pydantic frozen instance error
        cfg.orchestrator.retries = 1


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = ("import logging, dsa110_pipeline, dsa110_pipeline.config, dsa110_pipeline.runner;"
            "import structlog;"
            "assert not logging.getLogger().handlers;"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_config_pickles_as_its_data_for_dask_workers():
    import pickle

    cfg = load_config(overrides=["imaging.robust=0.5", "orchestrator.stage_threads=2"])
    back = pickle.loads(pickle.dumps(cfg))
    assert type(back).__name__ == type(cfg).__name__
    assert back.digest() == cfg.digest()
    assert back.stage_config("imaging").robust == 0.5
    assert back.orchestrator.stage_threads == 2


def test_config_keys_named_in_the_docs_exist():
    """Every `branch.key` the operator docs name is a real config key (issue 20: they
    once recommended a key that did not exist)."""
    import re
    from pathlib import Path

    from dsa110_pipeline.config import load_config

    cfg = load_config()
    branches = set(type(cfg).model_fields)
    docs = Path(__file__).resolve().parents[1] / "docs" / "pipeline"
    bad = []
    for md in sorted(docs.glob("*.md")):
        for branch, key in re.findall(r"`([a-z_]+)\.([a-z_]+)(?:=[^`]*)?`", md.read_text()):
            if branch in branches and key not in type(getattr(cfg, branch)).model_fields:
                bad.append(f"{md.name}: {branch}.{key}")
    assert not bad, bad


@pytest.mark.parametrize("override, message", [
    ("pipeline.roles.target=[conversion, apply_calibration, imagng, validation]",
     "pipeline.roles.target: 'imagng' is not a stage"),
    ("pipeline.wiring.imagin={ms: ms_calibrated}",
     "pipeline.wiring.imagin: 'imagin' is not a stage"),
    ("pipeline.executors.valdation=dask",
     "pipeline.executors.valdation: 'valdation' is not a stage"),
    ("pipeline.windows.mosiac=hour", "pipeline.windows.mosiac: 'mosiac' is not a stage"),
    ("pipeline.roles.target=[conversion, imaging, validation]",
     "stage(s) apply_calibration are in no role and would never run"),
])
def test_stage_names_in_the_pipeline_section_are_checked(override, message):
    """A typo in roles, wiring or executors, or a stage that no role runs, is a config error
    that names the key, not a KeyError later or a stage that silently never runs."""
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides=[override])
    assert message in str(err.value)
    assert "Value error" not in str(err.value)


def test_a_window_length_for_a_group_stage_is_a_config_error():
    from dsa110_pipeline.run import build_stage

    cfg = load_config(None, overrides=["pipeline.windows.imaging=hour"])
    with pytest.raises(ConfigError, match=r"pipeline\.windows\.imaging: stage 'imaging' runs "
                                          "per group"):
        build_stage(cfg, "imaging")


def test_a_stage_set_to_null_is_switched_off_everywhere(tmp_path):
    """An operator switches a default stage off with one line (here the survey stages),
    without editing the defaults: its branch, roles, executors and windows go with it."""
    off = ["pipeline.stages.photometry=null", "pipeline.stages.mosaic=null",
           "pipeline.stages.lightcurves=null"]
    cfg = load_config(None, environ={}, overrides=off)
    p = cfg.pipeline
    assert set(p.stages) == {"conversion", "calibration", "apply_calibration", "imaging",
                             "validation"}
    assert all("photometry" not in names and "mosaic" not in names
               for names in p.roles.values())
    assert "mosaic" not in p.windows and "lightcurves" not in p.executors
    assert not hasattr(cfg, "photometry")
    assert load_config(None, environ={}).pipeline.stages["photometry"]  # still the default
    # a stage named only in roles is still a typo, switched off or not
    with pytest.raises(ConfigError, match="'imagng' is not a stage"):
        load_config(None, environ={}, overrides=[*off, "pipeline.roles.target=[conversion, "
                                                 "apply_calibration, imagng, validation]"])
