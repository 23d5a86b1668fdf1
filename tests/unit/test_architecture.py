"""Import rules of the house, read from the source with ``ast`` (lazy imports inside functions count too)."""

from __future__ import annotations

import pytest

from beatedit.devtools.import_graph import imports_of, module_name, project_edges, project_files
from tests.conftest import REPO

FRAMEWORKS = ("prefect", "prefect_dask", "mlflow", "dvc")
#: package -> top-level names it must never import
FORBIDDEN = {
    "beatedit": FRAMEWORKS + ("tasks", "flows", "app", "models"),
    "models": FRAMEWORKS + ("tasks", "flows", "app"),
    "tasks": ("flows", "app"),
    "flows": ("app",),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_imports(package):
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for imp in imports_of(path, REPO):
            if imp.name.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)}:{imp.lineno} imports {imp.name}{' (inside a function)' if imp.lazy else ''}")
    assert not bad, f"{package}/ must not import {', '.join(FORBIDDEN[package])}:\n" + "\n".join(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import): Tarjan, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in edges.get(node, ()):
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_project_modules():
    detail = project_edges(REPO)
    edges = {m: set(targets) for m, targets in detail.items()}
    cycles = _cycles(edges)
    lines = []
    for comp in cycles:
        members = set(comp)
        lines.append(" <-> ".join(comp) + ":")
        lines += [f"    {m} imports {t} (line {detail[m][t].lineno}{', inside a function' if detail[m][t].lazy else ''})"
                  for m in comp for t in sorted(edges[m] & members)]
    assert not cycles, "import cycles:\n" + "\n".join(lines)


def test_every_project_file_is_walked():
    names = {module_name(p, REPO) for p in project_files(REPO)}
    assert {"beatedit.config", "flows.common", "tasks.rlhf", "models.policy", "app.cli"} <= names
