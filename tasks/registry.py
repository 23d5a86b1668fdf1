"""MLflow model registry: register versions, read aliases, promote and roll back safely.

Aliases: ``champion`` (production), ``challenger`` (the newest candidate) and
``previous-champion`` (what rollback restores).

Why it is built this way (docs/operations.md, "Guarantees"):

* **Exclusion**: every promotion and rollback runs under an exclusive file lock that lives
  *next to the store* (``<mlflow.db>.promotion.lock``), so runs from any folder on a host
  exclude each other; for a remote store (an MLflow server) the lock must be named with
  ``BEATEDIT_PROMOTION_LOCK`` on storage every promoting host shares, or promotion refuses.
* **Compare-and-set**: a promotion goes ahead only if the champion is still the version the
  candidate was evaluated against; a rollback with ``expected_champion`` only if the champion
  is still that version.
* **Atomic and resumable**: an operation is planned first (every alias / tag write), the plan
  is written to the registry as one tag (the journal), then applied, then the journal is
  deleted. Each write is idempotent, and every operation first finishes a journal left by a
  killed one, so a kill between any two writes converges on the next run.
* **Idempotent**: the candidate version records the evaluation run whose decision promoted it,
  so a decision is applied once: re-applying it reports "already applied", and after a
  rollback it is refused (re-evaluate to promote again).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

from tasks.telemetry import disable_telemetry

disable_telemetry()

from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

REWARD_MODEL = "beatedit-reward"
POLICY_MODEL = "beatedit-policy"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
LOCK_FILE_ENV = "BEATEDIT_PROMOTION_LOCK"
FAULT_ENV = "BEATEDIT_PROMOTION_FAULT"  # test hook "K:kill" | "K:raise": fail before the K-th registry write
JOURNAL_TAG = "beatedit.promotion.pending"  # registered-model tag on the policy: the plan being applied
LAST_TAG = "beatedit.promotion.last"  # registered-model tag on the policy: the last completed operation
DECISION_TAG = "evaluation_run_id"  # version tag: the evaluation whose decision promoted this version
REPLACED_TAG = "replaced_champion"  # version tag: the champion this version replaced (what a rollback restores next)
ROLLED_BACK_TAG = "rolled_back"  # version tag: "true" once rolled back


class PromotionLockError(RuntimeError):
    """No lock file can be shared by everyone who promotes against this store."""


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook (tests only)."""


def client() -> MlflowClient:
    return MlflowClient()


#: what each registered model is, shown on its page in the MLflow UI (a version's description says what it was trained on)
MODEL_DESCRIPTIONS = {
    REWARD_MODEL: ("beatedit reward model: a transformer that scores a whole edit of a song (beat features + the edit's "
                   "actions + the target length) as a listener would; trained on pairwise preferences between edits of the "
                   "same song. pyfunc input: features [n_beats][125], actions [n_beats], optional target_ratio; output: one score per row."),
    POLICY_MODEL: ("beatedit policy: walks a song beat by beat choosing keep / cut / loop / fade / end to reach a target length; "
                   "behaviour-cloned, then trained with PPO (or DPO) against the reward model plus a dense musical reward. "
                   "pyfunc input: target and analysis_path (features .npz) or audio_path; output: an EDL per row. "
                   "Alias `champion` is production."),
}


def register(model_uri: str, model_name: str, tags: dict[str, str] | None = None, aliases: tuple[str, ...] = (),
             description: str | None = None) -> str:
    """Register a logged model (``ModelInfo.model_uri``, e.g. ``models:/m-...``) as a new version; returns the version.

    MLflow 3 keeps a logged model's files under its own ``models:/m-...`` location, so the
    version must point there (a ``runs:/<run>/<name>`` source would resolve to nothing).
    ``description``: the version's (what it was trained on, its headline figures); the registered
    model's own description (``MODEL_DESCRIPTIONS``) is set when missing or out of date.
    """
    import mlflow

    mv = mlflow.register_model(model_uri, model_name, tags=tags or {})
    c = client()
    if description:
        c.update_model_version(model_name, mv.version, description=description)
    about = MODEL_DESCRIPTIONS.get(model_name)
    if about and c.get_registered_model(model_name).description != about:
        c.update_registered_model(model_name, description=about)
    for alias in aliases:
        c.set_registered_model_alias(model_name, alias, mv.version)
    return str(mv.version)


def alias_version(model_name: str, alias: str) -> str | None:
    try:
        return str(client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        return None


def version_tags(model_name: str, version: str) -> dict[str, str]:
    return dict(client().get_model_version(model_name, version).tags)


def _model_tags(c: MlflowClient, model_name: str) -> dict[str, str]:
    try:
        return dict(c.get_registered_model(model_name).tags)
    except MlflowException:
        return {}


# --- the lock ------------------------------------------------------------------------------------------
def promotion_lock_path(registry_uri: str | None = None) -> Path:
    """Where the promotion lock lives: ``$BEATEDIT_PROMOTION_LOCK``, else next to the store
    (``<db>.promotion.lock`` for SQLite, inside the folder of a file store). A remote store has no
    "next to", so it needs the variable: refusing beats two hosts promoting at once."""
    explicit = os.environ.get(LOCK_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    if registry_uri is None:
        import mlflow

        registry_uri = mlflow.get_registry_uri()
    parts = urlsplit(registry_uri)
    if parts.scheme == "sqlite":
        db = unquote(registry_uri.split(":///", 1)[1]) if ":///" in registry_uri else ""
        if not db or db == ":memory:":
            raise PromotionLockError(f"registry {registry_uri}: not a SQLite file; set {LOCK_FILE_ENV}")
        db_path = Path(db.split("?", 1)[0]).expanduser().resolve()
        return db_path.with_name(db_path.name + ".promotion.lock")
    if parts.scheme in ("", "file"):
        folder = Path(unquote(parts.path) if parts.scheme == "file" else registry_uri).expanduser().resolve()
        return folder / ".beatedit-promotion.lock"
    raise PromotionLockError(f"registry {registry_uri} is remote: set {LOCK_FILE_ENV} to a lock file on storage shared by "
                             "every host that promotes or rolls back (or run them from one host)")


@contextmanager
def promotion_lock() -> Iterator[Path]:
    """An exclusive lock around read-check-write of the aliases (a file lock next to the store)."""
    path = promotion_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- journalled writes ---------------------------------------------------------------------------------
class _Faults:
    """The fault-injection hook: counts registry writes and fails before write ``K`` when
    ``$BEATEDIT_PROMOTION_FAULT`` is ``K:kill`` (SIGKILL, as a crash) or ``K:raise``."""

    def __init__(self) -> None:
        spec = os.environ.get(FAULT_ENV, "")
        at, _, how = spec.partition(":")
        self.at = int(at) if at.strip().lstrip("-").isdigit() else None
        self.how, self.n = how or "raise", 0

    def before_write(self) -> None:
        if self.at is not None and self.n == self.at:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFault(f"injected fault before registry write {self.n}")
        self.n += 1


def _apply_step(c: MlflowClient, step: list) -> None:
    kind = step[0]
    if kind == "alias":
        c.set_registered_model_alias(step[1], step[2], step[3])
    elif kind == "unalias":
        try:
            c.delete_registered_model_alias(step[1], step[2])
        except MlflowException:
            pass  # already gone: the write was done before a crash
    elif kind == "vtag":
        c.set_model_version_tag(step[1], step[2], step[3], step[4])
    elif kind == "mtag":
        c.set_registered_model_tag(step[1], step[2], step[3])
    else:
        raise ValueError(f"unknown journal step {step!r}")


def _run_plan(c: MlflowClient, op: dict, steps: list[list], faults: _Faults) -> None:
    """Journal the plan, apply it write by write, then drop the journal."""
    faults.before_write()
    c.set_registered_model_tag(POLICY_MODEL, JOURNAL_TAG, json.dumps({"op": op, "steps": steps}, sort_keys=True))
    for step in steps:
        faults.before_write()
        _apply_step(c, step)
    faults.before_write()
    c.delete_registered_model_tag(POLICY_MODEL, JOURNAL_TAG)


def resume_pending() -> dict | None:
    """Finish an operation a crash left half-applied (call under the lock); returns its ``op``."""
    c = client()
    raw = _model_tags(c, POLICY_MODEL).get(JOURNAL_TAG)
    if raw is None:
        return None
    plan = json.loads(raw)
    for step in plan["steps"]:
        _apply_step(c, step)
    c.delete_registered_model_tag(POLICY_MODEL, JOURNAL_TAG)
    return plan["op"]


def last_operation() -> dict | None:
    raw = _model_tags(client(), POLICY_MODEL).get(LAST_TAG)
    return json.loads(raw) if raw else None


# --- promotion and rollback ----------------------------------------------------------------------------
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
    """Set ``champion`` on the candidate (and its reward model) if approved and the champion did not change meanwhile.

    Applying the same decision again is a no-op ("already applied"); after a rollback it is refused."""
    c = client()
    faults = _Faults()
    with promotion_lock():
        resume_pending()
        current = alias_version(POLICY_MODEL, CHAMPION)
        current_reward = alias_version(REWARD_MODEL, CHAMPION)
        if version_tags(POLICY_MODEL, policy_version).get(DECISION_TAG) == evaluation_run_id:
            if current == policy_version:
                return PromotionDecision(True, f"already applied: evaluation {evaluation_run_id} promoted policy {policy_version}",
                                         policy_version, reward_version, alias_version(POLICY_MODEL, PREVIOUS), None)
            return PromotionDecision(False, f"the decision of evaluation {evaluation_run_id} was already applied and policy "
                                     f"{policy_version} is no longer champion (rolled back?); re-evaluate to promote it again",
                                     policy_version, reward_version, current, current_reward)
        if not approved:
            return PromotionDecision(False, reason, policy_version, reward_version, current, current_reward)
        if current != evaluated_against:
            return PromotionDecision(False, f"champion changed from {evaluated_against} to {current} since the evaluation; re-evaluate",
                                     policy_version, reward_version, current, current_reward)
        steps: list[list] = []
        if current is not None and current != policy_version:
            steps += [["alias", POLICY_MODEL, PREVIOUS, current], ["vtag", POLICY_MODEL, policy_version, REPLACED_TAG, current]]
        steps += [["alias", POLICY_MODEL, CHAMPION, policy_version],
                  ["vtag", POLICY_MODEL, policy_version, "promoted_reason", reason[:4000]]]
        if reward_version is not None and reward_version != current_reward:
            if current_reward is not None:
                steps.append(["alias", REWARD_MODEL, PREVIOUS, current_reward])
            steps += [["alias", REWARD_MODEL, CHAMPION, reward_version],
                      ["vtag", REWARD_MODEL, reward_version, DECISION_TAG, evaluation_run_id]]
        op = {"op": "promote", "from": current, "to": policy_version, "evaluation_run_id": evaluation_run_id}
        # the decision is marked used last: it is what makes a re-run report "already applied"
        steps += [["mtag", POLICY_MODEL, LAST_TAG, json.dumps(op, sort_keys=True)],
                  ["vtag", POLICY_MODEL, policy_version, DECISION_TAG, evaluation_run_id]]
        _run_plan(c, op, steps, faults)
        return PromotionDecision(True, reason, policy_version, reward_version, current, current_reward)


def rollback(expected_champion: str | None = None) -> PromotionDecision:
    """Restore ``previous-champion`` as champion (policy and, if recorded, its reward model).

    With ``expected_champion`` it is a compare-and-set: nothing happens unless that version is
    still the champion, and a re-run after it was rolled back reports "already rolled back".
    ``previous-champion`` then moves one step further back (what the restored version replaced),
    so a second rollback never brings back the version just rolled back."""
    c = client()
    faults = _Faults()
    with promotion_lock():
        resumed = resume_pending()
        current = alias_version(POLICY_MODEL, CHAMPION)
        last = last_operation()
        if expected_champion is not None and current != str(expected_champion):
            if last and last.get("op") == "rollback" and last.get("from") == str(expected_champion) and last.get("to") == current:
                return PromotionDecision(True, f"already rolled back: policy {expected_champion} -> {current}", current, None, expected_champion, None)
            return PromotionDecision(False, f"champion is {current}, not {expected_champion}: nothing rolled back", current, None, None, None)
        if expected_champion is None and resumed and resumed.get("op") == "rollback":
            return PromotionDecision(True, f"finished an interrupted rollback: policy {resumed['from']} -> {resumed['to']}",
                                     resumed["to"], None, resumed["from"], None)
        prev = alias_version(POLICY_MODEL, PREVIOUS)
        if prev is None or prev == current:
            return PromotionDecision(False, "no previous-champion to roll back to", current, None, None, None)
        prev_tags = version_tags(POLICY_MODEL, prev)
        prev_reward = prev_tags.get("reward_version") or None
        cur_reward = alias_version(REWARD_MODEL, CHAMPION)
        before_prev = prev_tags.get(REPLACED_TAG)
        steps: list[list] = [["alias", POLICY_MODEL, CHAMPION, prev]]
        if before_prev and before_prev not in (prev, current):
            steps.append(["alias", POLICY_MODEL, PREVIOUS, before_prev])
        else:
            steps.append(["unalias", POLICY_MODEL, PREVIOUS])
        if current is not None:
            steps.append(["vtag", POLICY_MODEL, current, ROLLED_BACK_TAG, "true"])
        if prev_reward and prev_reward != cur_reward:
            steps.append(["alias", REWARD_MODEL, CHAMPION, prev_reward])
            if cur_reward is not None:
                steps.append(["alias", REWARD_MODEL, PREVIOUS, cur_reward])
        op = {"op": "rollback", "from": current, "to": prev}
        steps.append(["mtag", POLICY_MODEL, LAST_TAG, json.dumps(op, sort_keys=True)])
        _run_plan(c, op, steps, faults)
        return PromotionDecision(True, f"rolled back policy {current} -> {prev}", prev, prev_reward, current, cur_reward)
