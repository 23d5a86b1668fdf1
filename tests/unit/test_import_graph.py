"""The import walker behind dvc.yaml's code deps and the code fingerprints of the rlhf run key / preferences cache."""

from __future__ import annotations

from pathlib import Path

from beatedit.devtools.import_graph import closure, code_fingerprint


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_closure_follows_relative_lazy_and_package_imports_but_not_type_checking(tmp_path):
    root = _tree(tmp_path, {
        "flows/__init__.py": "from tasks import t\n",
        "flows/s.py": "from typing import TYPE_CHECKING\nfrom beatedit.audio import io\nif TYPE_CHECKING:\n    import models.m\n"
                      "def f():\n    from .helper import x\n",
        "flows/helper.py": "import numpy\n",
        "tasks/__init__.py": "", "tasks/t.py": "", "tasks/unused.py": "",
        "beatedit/__init__.py": "", "beatedit/audio/__init__.py": "", "beatedit/audio/io.py": "from . import schema\n",
        "beatedit/audio/schema.py": "", "models/__init__.py": "", "models/m.py": "",
    })
    assert closure("flows.s", root) == ["beatedit/__init__.py", "beatedit/audio/__init__.py", "beatedit/audio/io.py",
                                        "beatedit/audio/schema.py", "flows/__init__.py", "flows/helper.py", "flows/s.py",
                                        "tasks/__init__.py", "tasks/t.py"]


def test_fingerprint_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    def fp(text: str) -> str:
        (tmp_path / "tasks").mkdir(exist_ok=True)
        (tmp_path / "tasks" / "a.py").write_text(text)
        return code_fingerprint(["tasks/a.py"], tmp_path)

    base = fp('"""Doc."""\ndef f(x):\n    return x + 1\n')
    assert fp('"""Other doc."""\n# a comment\ndef f(x):  # why\n    """Says what."""\n\n    return (x +\n            1)\n') == base
    assert fp('"""Doc."""\ndef f(x):\n    return x + 2\n') != base
