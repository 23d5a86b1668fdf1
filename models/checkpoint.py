"""One checkpoint format for the reward model and the policy.

A checkpoint is a single ``torch.save`` file holding a dict:

    kind            "reward" | "policy" | "value" (free-form, checked on load)
    state_dict      the module's tensors (moved to CPU before saving)
    config          the module's constructor kwargs (plain JSON-able dict)
    schema_version  beatedit.audio.schema.SCHEMA_VERSION at save time
    action_vocab    beatedit.editing.actions.ACTION_VOCAB_VERSION at save time
    provenance      git commit, dvc.lock hash, created-at, anything else
    extra           free-form (e.g. reward normalisation stats, optimizer state, step)

Loading checks kind, feature schema and action vocabulary and names the file when
any disagrees. Everything loads on CPU (``map_location="cpu"``).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from beatedit.editing.actions import ACTION_VOCAB_VERSION
from beatedit.audio.schema import SchemaMismatchError, check_schema

FORMAT_VERSION = "beatedit-ckpt-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: wrong kind, schema, vocabulary or a damaged file."""


def git_commit(cwd: str | Path = ".") -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_lock_hash(path: str | Path = "dvc.lock") -> str:
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else "none"


def provenance(**more: Any) -> dict[str, Any]:
    return {"git_commit": git_commit(), "dvc_lock_hash": dvc_lock_hash(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **more}


def save_checkpoint(path: str | Path, *, kind: str, module: torch.nn.Module, config: dict, extra: dict | None = None,
                    prov: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "config": dict(config),
        "schema_version": _schema_version(),
        "action_vocab": ACTION_VOCAB_VERSION,
        "provenance": prov if prov is not None else provenance(),
        "extra": extra or {},
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a killed process never leaves half a checkpoint
    return path


def load_checkpoint(path: str | Path, *, kind: str | None = None) -> dict:
    """Load and verify; raises CheckpointError / SchemaMismatchError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a beatedit checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {payload.get('kind')!r} model, expected {kind!r}")
    try:
        check_schema(payload.get("schema_version", "<none>"), str(path))
    except SchemaMismatchError:
        raise
    if payload.get("action_vocab") != ACTION_VOCAB_VERSION:
        raise CheckpointError(f"{path}: trained on action vocabulary {payload.get('action_vocab')!r}, this code uses {ACTION_VOCAB_VERSION!r}")
    return payload


def _schema_version() -> str:
    from beatedit.audio.schema import SCHEMA_VERSION

    return SCHEMA_VERSION
