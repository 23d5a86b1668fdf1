"""Resolve a policy from a registry URI (``models:/beatedit-policy@champion``), a run URI or a checkpoint file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.telemetry import disable_telemetry

disable_telemetry()


class PolicySourceError(ValueError):
    """The model URI cannot be resolved to a policy checkpoint."""


def checkpoint_from_uri(uri: str, kind: str = "policy") -> Path:
    """The project checkpoint inside a logged pyfunc model (or the file itself)."""
    if uri.endswith(".pt") and Path(uri).exists():
        return Path(uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except (MlflowException, OSError) as exc:
        raise PolicySourceError(f"cannot load model {uri!r} ({exc}); run `make pipeline` to train and promote one, "
                                "or pass --model PATH.pt / --editor heuristic") from None
    found = sorted(local.rglob("*.pt"))
    if not found:
        raise PolicySourceError(f"model {uri!r} holds no beatedit checkpoint")
    return found[0]


def load_policy_from_uri(uri: str, cfg: Any = None) -> Any:
    """A policy from a registry/run URI or a checkpoint; ``cfg`` (default: the built-in defaults) names the store.

    Read-only: the store must exist (``tracking.read_tracking_uri``) and no experiment is
    created, so editing from any folder never leaves an ``mlflow.db`` there.
    """
    from models.checkpoint import CheckpointError
    from models.policy import load_policy

    path = _resolve(uri, cfg)
    try:
        policy, _ = load_policy(path)
    except CheckpointError as exc:
        raise PolicySourceError(str(exc)) from None
    return policy


def load_reward_from_uri(uri: str, cfg: Any = None) -> Any:
    """The reward model from a registry/run URI (``models:/beatedit-reward@champion``) or a checkpoint file;
    read-only like ``load_policy_from_uri``. Best-of-N and ``--variations`` rank policy samples with it."""
    from models.checkpoint import CheckpointError
    from models.reward_model import load_reward_model

    path = _resolve(uri, cfg)
    try:
        model, _, _ = load_reward_model(path)
    except CheckpointError as exc:
        raise PolicySourceError(str(exc)) from None
    return model


def _resolve(uri: str, cfg: Any) -> Path:
    """The local checkpoint behind ``uri``, pointing MLflow at the existing store first for registry/run URIs."""
    if uri.startswith("models:/") or uri.startswith("runs:/"):
        import mlflow

        from beatedit.config import Config
        from tasks import tracking

        try:
            store = tracking.read_tracking_uri(cfg if cfg is not None else Config())
            tracking.check_tracking_server(store)
        except (tracking.TrackingStoreMissing, tracking.TrackingServerUnreachable) as exc:
            raise PolicySourceError(f"cannot load model {uri!r}: {exc}") from None
        mlflow.set_tracking_uri(store)
        mlflow.set_registry_uri(store)
    return checkpoint_from_uri(uri)
