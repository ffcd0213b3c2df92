import pytest
from pydantic import ValidationError

from dsa110_pipeline.context import PipelineContext, ProductRef, ProvenanceRecord


def _ref(tmp_path, name="a.txt", text="x"):
    p = tmp_path / name
    p.write_text(text)
    return ProductRef.for_path("text", p, band="L")


def test_with_output_returns_new_context(tmp_path):
    ctx = PipelineContext(group_id="g1")
    ref = _ref(tmp_path)
    new = ctx.with_output("a", ref)
    assert new is not ctx
    assert "a" not in ctx.outputs and new.outputs["a"] == ref
    assert new.group_id == "g1" and new.run_id == ctx.run_id


def test_context_is_frozen():
    ctx = PipelineContext()
    with pytest.raises(ValidationError):
        ctx.group_id = "x"


def test_json_round_trip(tmp_path):
    rec = ProvenanceRecord(stage="s", stage_version="1", config_hash="c", pipeline_version="0",
                           started=1.0, finished=2.0)
    ctx = (PipelineContext(group_id="g", config={"imaging": {"robust": 0.5}})
           .with_outputs({"a": _ref(tmp_path), "many": [_ref(tmp_path, "b"), _ref(tmp_path, "c")]})
           .with_metadata(dec_deg=16.1).with_metrics("s", wall_s=1.5).with_provenance(rec))
    back = PipelineContext.from_json(ctx.to_json())
    assert back == ctx
    assert back.digest() == ctx.digest()
    assert isinstance(back.outputs["many"], list) and back.outputs["many"][1].path.endswith("c")


def test_outputs_must_be_product_refs():
    with pytest.raises(TypeError, match="output 'x'"):
        PipelineContext().with_output("x", "not a ref")


def test_checksum_changes_with_content(tmp_path):
    a = _ref(tmp_path, "f", "one").checksum
    b = _ref(tmp_path, "f", "two").checksum
    assert a != b and a.startswith("sha256:")


def test_get_names_known_keys():
    with pytest.raises(KeyError, match="no product 'ms'"):
        PipelineContext().get("ms")


def test_client_without_runtime_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no dask client"):
        _ = PipelineContext().client


def test_runtime_survives_derivation(tmp_path):
    marker = object()
    ctx = PipelineContext().with_runtime(marker).with_output("a", _ref(tmp_path))
    assert ctx.runtime is marker
    import json

    assert set(json.loads(ctx.to_json())) == {"run_id", "group_id", "config", "inputs", "outputs",
                                              "metadata", "provenance", "metrics"}
