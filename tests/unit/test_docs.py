"""Docs that match the code: every module docs/contracts.md names imports, and every name it attributes
to a module (the backticked identifiers on that module's bullet) exists there; every file path the README's
layout and the contracts name exists in the repo."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import REPO

CONTRACTS = (REPO / "docs" / "contracts.md").read_text()
_BULLET = re.compile(r"^- `((?:beatedit|models|tasks|flows|app)(?:\.\w+)*)`", re.M)
_CALL = re.compile(r"`(\w+)\(")  # `name(` ... : a function or class the bullet documents


def _bullets() -> list[tuple[str, str]]:
    """(module, text of its bullet incl. continuation lines)."""
    out = []
    starts = [(m.start(), m.group(1)) for m in _BULLET.finditer(CONTRACTS)]
    for k, (pos, mod) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(CONTRACTS)
        text = CONTRACTS[pos:end].split("\n## ")[0].split("\n### ")[0]
        out.append((mod, text))
    return out


BULLETS = _bullets()


def test_the_contracts_page_documents_modules():
    assert len(BULLETS) >= 15


@pytest.mark.parametrize("module,text", BULLETS, ids=[m for m, _ in BULLETS])
def test_each_documented_name_exists(module, text):
    mod = importlib.import_module(module)
    missing = []
    for name in set(_CALL.findall(text)):
        owner = mod
        if not hasattr(owner, name):
            # names documented as methods of a class on the same bullet (e.g. `StemCache(root)` ... `get_or_compute(`)
            if not any(hasattr(getattr(mod, c), name) for c in dir(mod) if isinstance(getattr(mod, c), type)):
                missing.append(name)
    assert not missing, f"docs/contracts.md documents {missing} in {module}, which has no such name"


def test_paths_named_in_the_docs_exist():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"`((?:beatedit|models|tasks|flows|app|tests|bench|docs)/[\w/]+\.(?:py|md))`", readme + CONTRACTS))
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert named and not missing, missing
