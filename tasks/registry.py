"""MLflow model registry: register versions, read aliases, promote and roll back safely.

Aliases: ``champion`` (production), ``challenger`` (the newest candidate) and
``previous-champion`` (what rollback restores). Promotion is a compare-and-set:
the candidate names the champion version it was evaluated against, and under an
exclusive lock the promotion only goes ahead if that is still the champion -- so two
promotions at once cannot both win (the second finds the champion changed).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tasks.telemetry import disable_telemetry

disable_telemetry()

from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

REWARD_MODEL = "beatedit-reward"
POLICY_MODEL = "beatedit-policy"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
LOCK_FILE_ENV = "BEATEDIT_PROMOTION_LOCK"


def client() -> MlflowClient:
    return MlflowClient()


def register(model_uri: str, model_name: str, tags: dict[str, str] | None = None, aliases: tuple[str, ...] = ()) -> str:
    """Register a logged model (``ModelInfo.model_uri``, e.g. ``models:/m-...``) as a new version; returns the version.

    MLflow 3 keeps a logged model's files under its own ``models:/m-...`` location, so the
    version must point there (a ``runs:/<run>/<name>`` source would resolve to nothing).
    """
    import mlflow

    mv = mlflow.register_model(model_uri, model_name, tags=tags or {})
    for alias in aliases:
        client().set_registered_model_alias(model_name, alias, mv.version)
    return str(mv.version)


def alias_version(model_name: str, alias: str) -> str | None:
    try:
        return str(client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def version_tags(model_name: str, version: str) -> dict[str, str]:
    return dict(client().get_model_version(model_name, version).tags)


@contextmanager
def promotion_lock() -> Iterator[None]:
    """An exclusive lock around read-check-write of the aliases (a file lock next to the store)."""
    path = Path(os.environ.get(LOCK_FILE_ENV) or ".beatedit-promotion.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    policy_version: str | None
    reward_version: str | None
    previous_policy: str | None
    previous_reward: str | None


def promote(policy_version: str, reward_version: str | None, evaluated_against: str | None, evaluation_run_id: str,
            approved: bool, reason: str) -> PromotionDecision:
    """Set ``champion`` on the candidate (and its reward model) if approved and the champion did not change meanwhile."""
    c = client()
    with promotion_lock():
        current = alias_version(POLICY_MODEL, CHAMPION)
        current_reward = alias_version(REWARD_MODEL, CHAMPION)
        if not approved:
            return PromotionDecision(False, reason, policy_version, reward_version, current, current_reward)
        if current != evaluated_against:
            return PromotionDecision(False, f"champion changed from {evaluated_against} to {current} since the evaluation; re-evaluate",
                                     policy_version, reward_version, current, current_reward)
        if current is not None:
            c.set_registered_model_alias(POLICY_MODEL, PREVIOUS, current)
        c.set_registered_model_alias(POLICY_MODEL, CHAMPION, policy_version)
        c.set_model_version_tag(POLICY_MODEL, policy_version, "evaluation_run_id", evaluation_run_id)
        c.set_model_version_tag(POLICY_MODEL, policy_version, "promoted_reason", reason)
        if reward_version is not None and reward_version != current_reward:
            if current_reward is not None:
                c.set_registered_model_alias(REWARD_MODEL, PREVIOUS, current_reward)
            c.set_registered_model_alias(REWARD_MODEL, CHAMPION, reward_version)
            c.set_model_version_tag(REWARD_MODEL, reward_version, "evaluation_run_id", evaluation_run_id)
        return PromotionDecision(True, reason, policy_version, reward_version, current, current_reward)


def rollback() -> PromotionDecision:
    """Restore ``previous-champion`` as champion (policy and, if recorded, its reward model)."""
    c = client()
    with promotion_lock():
        prev = alias_version(POLICY_MODEL, PREVIOUS)
        current = alias_version(POLICY_MODEL, CHAMPION)
        if prev is None:
            return PromotionDecision(False, "no previous-champion to roll back to", current, None, None, None)
        c.set_registered_model_alias(POLICY_MODEL, CHAMPION, prev)
        if current is not None:
            c.set_registered_model_alias(POLICY_MODEL, PREVIOUS, current)
        # the restored policy's own reward model (recorded at registration) comes back with it
        prev_reward = version_tags(POLICY_MODEL, prev).get("reward_version")
        cur_reward = alias_version(REWARD_MODEL, CHAMPION)
        if prev_reward and prev_reward != cur_reward:
            c.set_registered_model_alias(REWARD_MODEL, CHAMPION, prev_reward)
            if cur_reward is not None:
                c.set_registered_model_alias(REWARD_MODEL, PREVIOUS, cur_reward)
        return PromotionDecision(True, f"rolled back policy {current} -> {prev}", prev, prev_reward, current, cur_reward)
