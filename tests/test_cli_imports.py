"""The command line and manifest rooms import one way: no circles, nothing back from above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "batch_runner"
BASE = {"batch_runner", "batch_runner.errors", "batch_runner.jobs", "batch_runner.jsonenc"}
BASE |= {"batch_runner.settings", "batch_runner.catalog", "batch_runner.catalog_shape"}
BASE |= {"batch_runner.digests"}


def imports_of(room: str) -> dict[str, set[str]]:
    """module → the batch_runner modules it imports (lazy imports inside functions too)."""
    graph = {}
    for path in sorted((PACKAGE / room).glob("*.py")):
        module = f"batch_runner.{room}.{path.stem}".removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("batch_runner"):
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("batch_runner")}
        graph[module] = found
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str] | None:
        if module in trail:
            return trail[trail.index(module) :] + [module]
        if module in done or module not in graph:
            return None
        for target in sorted(graph[module]):
            found = visit(target, [*trail, module])
            if found:
                return found
        done.add(module)
        return None

    return next((c for m in graph if (c := visit(m, []))), None)


@pytest.mark.parametrize("room", ["cli", "manifest"])
def test_no_import_circle(room):
    assert cycle(imports_of(room)) is None


def test_only_the_entry_point_imports_the_argument_parser():
    # the two entry points: the command line, and the Python API (which parses the same flags)
    for module, targets in imports_of("cli").items():
        if module not in ("batch_runner.cli.main", "batch_runner.cli.pyapi"):
            assert "batch_runner.cli.main" not in targets, module


def test_the_manifest_room_imports_only_the_base_and_itself():
    def allowed(target: str) -> bool:
        rooms = (BASE - {"batch_runner"}) | {"batch_runner.manifest"}
        return target in BASE or any(target.startswith(f"{room}.") for room in rooms)

    for module, targets in imports_of("manifest").items():
        assert all(allowed(t) for t in targets), (module, sorted(targets))


def test_the_readers_build_on_the_rows_not_on_each_other():
    graph = imports_of("manifest")
    for reader in ("read_yaml", "read_csv", "read_jsonl"):
        targets = graph[f"batch_runner.manifest.{reader}"]
        assert "batch_runner.manifest.read" not in targets, reader
