"""The truth stays with the judges: no pipeline code reads the simulator's ``*_truth*`` files.

A real night has a survey catalog (NVSS) and no truth. The simulator (which writes the
truth), tests and perf scoring may read it; nothing under ``stages/``, and nothing in
``dsa110_pipeline/`` outside ``simulate/``, may name it in code (docstrings may explain).
The end-to-end night tests (``tests/test_end_to_end.py``) run with the truth files moved
out of the input directory, so a stage that needed them would fail there.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pipeline_modules() -> list[Path]:
    out = []
    for root in (REPO / "stages", REPO / "dsa110_pipeline"):
        for p in root.rglob("*.py"):
            rel = p.relative_to(REPO).parts
            if "tests" in rel or rel[:2] == ("dsa110_pipeline", "simulate"):
                continue
            out.append(p)
    return out


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def truth_uses(source: str) -> list[str]:
    """Names, attributes, imports and string constants (not docstrings) naming the truth."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and "truth" in node.id.lower():
            hits.append(node.id)
        elif isinstance(node, ast.Attribute) and "truth" in node.attr.lower():
            hits.append(node.attr)
        elif isinstance(node, ast.ImportFrom) and (
                "truth" in (node.module or "") or
                any("truth" in a.name.lower() for a in node.names)):
            hits.append(f"from {node.module} import ...")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docs and "truth" in node.value.lower()):
            hits.append(repr(node.value[:60]))
    return hits


def test_the_check_finds_a_truth_reader():
    src = 'import numpy as np\ndef f(d):\n    """Reads no truth."""\n' \
          '    return np.load(d / "g_truth.npz")\n'
    assert truth_uses(src) == ["'g_truth.npz'"]
    assert truth_uses("from dsa110_pipeline.simulate.truth import read_truth\n")
    assert truth_uses('"""The truth stays out."""\nx = 1\n') == []


def test_no_stage_and_no_framework_module_reads_the_truth():
    offenders = {}
    for p in _pipeline_modules():
        hits = truth_uses(p.read_text())
        if hits:
            offenders[str(p.relative_to(REPO))] = hits
    assert not offenders, f"pipeline code names the simulator's truth: {offenders}"
    assert len(_pipeline_modules()) > 50  # the scan saw the code
