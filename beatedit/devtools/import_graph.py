"""The project's import graph, read with ``ast`` (nothing is imported or run).

Why: dvc.yaml's code deps, the rlhf run key and the preferences cache key must follow what a
stage really imports, not a hand-kept list or a whole folder. A stage's *closure* is every
project file (``beatedit``, ``models``, ``tasks``, ``flows``, ``app``) reachable from its
``python -m flows.<stage>`` module through absolute or relative imports, lazy imports inside
functions included, plus the package ``__init__.py`` files Python runs on the way. Imports under
``if TYPE_CHECKING:`` are left out: they never run.

    python -m beatedit.devtools.import_graph            # print every dvc.yaml stage's closure
    python -m beatedit.devtools.import_graph --check    # exit 1 when dvc.yaml's code deps differ
    python -m beatedit.devtools.import_graph --write    # rewrite dvc.yaml's code-dep blocks
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("beatedit", "models", "tasks", "flows", "app")
CODE_MARKER = "# code:"  # dvc.yaml: the line before each stage's generated code deps


@dataclass(frozen=True)
class Import:
    """One imported name, absolute (``a.b.c``), with where it was imported and whether inside a function."""

    name: str
    lineno: int
    lazy: bool


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.resolve().relative_to(root.resolve()).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str, root: Path = REPO) -> Path | None:
    """The file of a project module (``a/b.py`` or ``a/b/__init__.py``), None when it is not one."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def parse(path: Path) -> ast.Module:
    return _parse(path, path.stat().st_mtime_ns)


def imports_of(path: Path, root: Path = REPO) -> list[Import]:
    """Every name ``path`` imports, made absolute; ``from pkg import sub`` gives ``pkg.sub`` when sub is a module."""
    package = module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, lazy) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}" if alias.name != "*" else base
                found.append(Import(sub if module_file(sub, root) else base, node.lineno, lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(parse(path), False)
    return found


def project_files(root: Path = REPO) -> list[Path]:
    return sorted(p for pkg in PROJECT_PACKAGES for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def project_edges(root: Path = REPO) -> dict[str, dict[str, Import]]:
    """module -> {imported project module: the first such import}; names that are not project modules are left out,
    and so is a module importing itself (``if __name__ == "__main__": from flows.x import main``: a second copy, no cycle)."""
    edges: dict[str, dict[str, Import]] = {}
    for path in project_files(root):
        name = module_name(path, root)
        out: dict[str, Import] = {}
        for imp in imports_of(path, root):
            if imp.name != name and module_file(imp.name, root) is not None:
                out.setdefault(imp.name, imp)
        edges[name] = out
    return edges


def unresolved_imports(path: Path, root: Path = REPO) -> list[Import]:
    """Imports of project packages that name no file (a module that was moved or deleted)."""
    return [i for i in imports_of(path, root) if i.name.split(".")[0] in PROJECT_PACKAGES and module_file(i.name, root) is None]


def closure(start: str, root: Path = REPO) -> list[str]:
    """Repo-relative paths of every project file importing ``start`` runs, sorted."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run their __init__.py first
            path = module_file(".".join(parts[:i]), root)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(imp.name for imp in imports_of(path, root) if module_file(imp.name, root) is not None)
    return sorted(p.relative_to(root).as_posix() for p in seen)


# ----------------------------------------------------------------------------- fingerprints
def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(files: list[str], root: Path = REPO) -> str:
    """sha256 over the files' code without comments, docstrings or layout (``ast.dump``): a comment-only
    or formatting-only change keeps the fingerprint, any change to what runs moves it."""
    h = hashlib.sha256()
    for rel in sorted(files):
        tree = _strip_docstrings(ast.parse((root / rel).read_text(), filename=rel))
        h.update(rel.encode() + b"\0" + ast.dump(tree, annotate_fields=False, include_attributes=False).encode() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=16)
def stage_code_fingerprint(stage: str, root: Path = REPO) -> str:
    """``code_fingerprint`` of the stage's closure (from ``flows.<stage>``); computed once per process."""
    return code_fingerprint(closure(f"flows.{stage}", root), root)


# ----------------------------------------------------------------------------- dvc.yaml
def stage_module(cmd: str) -> str | None:
    """``python -m flows.rlhf`` -> ``flows.rlhf``."""
    m = re.search(r"python3?\s+-m\s+([\w.]+)", cmd)
    return m.group(1) if m else None


def dvc_code_deps(dvc_yaml: Path = REPO / "dvc.yaml") -> dict[str, list[str]]:
    """Each stage's listed .py deps, as written."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {name: [d for d in st.get("deps", []) if isinstance(d, str) and d.endswith(".py")] for name, st in stages.items()}


def stage_closures(dvc_yaml: Path = REPO / "dvc.yaml", root: Path = REPO) -> dict[str, list[str]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, st in stages.items():
        module = stage_module(str(st.get("cmd", "")))
        if module is not None:
            out[name] = closure(module, root)
    return out


def code_dep_problems(dvc_yaml: Path = REPO / "dvc.yaml", root: Path = REPO) -> list[str]:
    """One sentence per file dvc.yaml misses or lists needlessly, naming the stage."""
    listed, wanted = dvc_code_deps(dvc_yaml), stage_closures(dvc_yaml, root)
    problems = []
    for stage, files in wanted.items():
        have = listed.get(stage, [])
        problems += [f"stage {stage}: dvc.yaml does not list {f}, which the stage imports" for f in files if f not in have]
        problems += [f"stage {stage}: dvc.yaml lists {f}, which the stage never imports" for f in have if f not in files]
        if have != sorted(have):
            problems.append(f"stage {stage}: code deps are not sorted")
    return problems


def write_code_deps(dvc_yaml: Path = REPO / "dvc.yaml", root: Path = REPO) -> str:
    """dvc.yaml's text with every stage's code-dep block (the lines after its ``# code:`` marker) regenerated."""
    wanted = stage_closures(dvc_yaml, root)
    lines = dvc_yaml.read_text().splitlines()
    out: list[str] = []
    stage: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  (\w[\w-]*):\s*$", line)
        if m:
            stage = m.group(1)
        out.append(line)
        i += 1
        if line.strip().startswith(CODE_MARKER) and stage in wanted:
            indent = line[: len(line) - len(line.lstrip())]
            while i < len(lines) and re.match(rf"^{indent}- [\w./-]+\.py\s*$", lines[i]):
                i += 1
            out.extend(f"{indent}- {f}" for f in wanted[stage])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beatedit.devtools.import_graph", description=__doc__.splitlines()[0])
    ap.add_argument("--dvc-yaml", default=str(REPO / "dvc.yaml"))
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml's code deps differ from the closures")
    group.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code-dep blocks")
    args = ap.parse_args(argv)
    path = Path(args.dvc_yaml)
    if args.write:
        path.write_text(write_code_deps(path))
    if args.check or args.write:
        problems = code_dep_problems(path)
        print("\n".join(problems) or f"{path}: code deps match the import closures")
        return 1 if problems else 0
    for stage, files in stage_closures(path).items():
        print(f"{stage}:\n" + "\n".join(f"  {f}" for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
