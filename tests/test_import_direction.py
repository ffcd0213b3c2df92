"""One direction of imports (../shared/design.md): the framework imports no stage, and no
stage imports another stage (a stage reaches another's work only through products and
the hooks its config names)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute names of the modules ``source`` (a module of ``package``) imports."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module or "")
    return out


def _code(root: Path):
    for p in sorted(root.rglob("*.py")):
        if "tests" not in p.relative_to(REPO).parts:
            yield p, ".".join(p.relative_to(REPO).with_suffix("").parts[:-1])


def test_the_check_sees_relative_and_absolute_imports():
    src = "from ..validation import stage\nimport stages.imaging\nfrom . import combine\n"
    assert imported_modules(src, "stages.mosaic") == {
        "stages.validation", "stages.imaging", "stages.mosaic"}


def test_the_framework_imports_no_stage():
    bad = [f"{p.relative_to(REPO)}: {m}" for p, pkg in _code(REPO / "dsa110_pipeline")
           for m in imported_modules(p.read_text(), pkg)
           if m == "stages" or m.startswith("stages.")]
    assert not bad, bad


def test_no_stage_imports_another_stage():
    bad = []
    for p, pkg in _code(REPO / "stages"):
        own = pkg.split(".")[:2]
        for m in imported_modules(p.read_text(), pkg):
            parts = m.split(".")
            if parts[0] == "stages" and len(parts) > 1 and parts[:2] != own:
                bad.append(f"{p.relative_to(REPO)}: {m}")
    assert not bad, bad
