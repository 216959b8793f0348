"""Every room imports only the rooms below it (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "batch_runner"
ROOMS = {
    *("manifest", "api", "store", "outputs", "run", "report", "exports", "serve", "cli"),
    "simulator",
}
# room -> the rooms it may import (besides the base and itself)
ALLOWED = {
    "base": set(),
    "manifest": set(),
    "api": set(),
    "store": set(),
    "outputs": {"api", "manifest"},
    "run": {"manifest", "api", "store", "outputs", "report", "simulator"},
    "report": {"store", "outputs", "manifest"},
    "exports": {"store", "outputs", "report"},
    "serve": {"store", "outputs", "report", "run"},
    "cli": {
        "manifest",
        "api",
        "store",
        "outputs",
        "run",
        "report",
        "exports",
        "serve",
        "simulator",
    },
    "simulator": {"manifest"},
}
# the finer arrows: outputs takes only the HTTP helpers and deadlines of api/, naming of manifest/
NARROW = {
    ("outputs", "api"): {"http", "deadlines"},
    ("outputs", "manifest"): {"naming"},
    ("serve", "run"): {"lock"},  # serve takes the run's lock to write marks, nothing else of run/
}


def room_of(module: str) -> str:
    parts = module.split(".")
    if parts[1:2] == ["__main__"]:
        return "cli"  # `python -m batch_runner` is the command line's entry point
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else "base"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("batch_runner"):
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("batch_runner")}
    return found


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        graph[".".join(rel.parts).removesuffix(".__init__")] = _imports(path)
    return graph


def test_rooms_import_only_downwards():
    wrong = []
    for module, targets in _modules().items():
        src = room_of(module)
        for target in targets:
            dst = room_of(target)
            if dst in ("base", src):
                continue
            narrow = NARROW.get((src, dst))
            if dst not in ALLOWED[src] or (narrow and target.split(".")[2] not in narrow):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_base_imports_no_room():
    for module, targets in _modules().items():
        if room_of(module) == "base":
            assert {room_of(t) for t in targets} <= {"base"}, module


def test_a_broken_arrow_is_caught():
    # the check itself must be able to fail: an arrow from api/ up to run/ is refused
    assert "run" not in ALLOWED["api"] and room_of("batch_runner.run.runner") == "run"
