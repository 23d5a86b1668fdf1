"""Operations tasks for the scheduled deployments: feedback export, champion re-evaluation, drift, reports.

* ``export_feedback_task``: new human votes from the feedback database into the preference
  table the ``preferences`` stage merges (``preferences.human_votes_path``).
* ``stages_to_force``: ``dvc.yaml``'s preferences stage does not list the human-votes file as
  a dependency (it may not exist), so when its content changed since the last retrain the
  retrain deployment forces that stage; everything downstream then follows through DVC.
* champion history (``ops.history_path``, JSON): one record per evaluate-champion run; the
  drift baseline is the last record that passed (or, before the first run, the evaluate
  stage's ``metrics/eval.json`` when it evaluated the same champion version).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger, task

from beatedit.atomic import atomic_write_text
from beatedit.audio.io import file_sha256
from beatedit.config import Config
from beatedit.paths import StagePaths
from tasks.resilience import IO_RETRY

FEEDBACK_DB_ENV = "BEATEDIT_FEEDBACK_DB"
OPS_DIR = Path("artifacts/ops")
RETRAIN_STATE = OPS_DIR / "retrain_state.json"
DRIFT_KEYS = ("listener_total", "win_rate_vs_heuristic")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path, default: Any) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); fix or delete it") from None


# ----------------------------------------------------------------------------- MLflow links
def mlflow_run_link(run_id: str | None, experiment_id: str | None, tracking_uri: str | None = None) -> str:
    from tasks.tracking import run_link

    return run_link(run_id, experiment_id, tracking_uri)


# ----------------------------------------------------------------------------- feedback
def feedback_db_url(cfg: Config, override: str | None = None) -> str | None:
    return override or os.environ.get(FEEDBACK_DB_ENV) or cfg.ops.feedback_db or None


def _redact(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(db_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable URL>"


@task(name="export-feedback", **IO_RETRY)
def export_feedback_task(db_url: str | None, out_path: str | None, min_listened_s: float = 0.0,
                         analyses_dir: str | None = None) -> dict:
    """Export the feedback DB's votes into the human preference table (idempotent merge); report what is there.
    ``min_listened_s`` (``ops.feedback_min_listened_s``): votes heard less than this on a side are dropped and counted."""
    logger = get_run_logger()
    if out_path is None:
        logger.info("preferences.human_votes_path is null: human votes are not used")
        return {"db": None, "path": None, "added": 0, "total": 0, "sha256": None, "note": "preferences.human_votes_path is null"}
    out = Path(out_path)
    report: dict[str, Any] = {"db": None, "path": str(out), "added": 0}
    if db_url:
        from sqlalchemy.engine import make_url

        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
            raise FileNotFoundError(f"feedback database {db_url} not found (ops.feedback_db / {FEEDBACK_DB_ENV})")
        from beatedit.feedback.export import export_votes

        r = export_votes(db_url, out, min_listened_s=min_listened_s, analyses_dir=analyses_dir)
        report.update(db=_redact(db_url), exported=r.exported, skipped=r.skipped, added=r.added, dropped_unheard=r.dropped_unheard)
        logger.info("feedback %s: %d votes (%d new, %d dropped as not listened to for %.0f s) -> %s (%d rows)", _redact(db_url), r.exported,
                    r.added, r.dropped_unheard, min_listened_s, out, r.total)
    else:
        logger.info("no feedback database configured (ops.feedback_db / %s); using %s as it is", FEEDBACK_DB_ENV, out)
    if out.exists():
        import pandas as pd

        report.update(total=int(len(pd.read_parquet(out))), sha256=file_sha256(out))
    else:
        report.update(total=0, sha256=None)
    return report


def _interpolate(text: str, params: dict) -> str:
    """dvc.yaml's ``${section.key}`` from params.yaml (left as it is when the key is not there)."""
    def value(m: re.Match) -> str:
        node: Any = params
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return m.group(0)
            node = node[part]
        return str(node)

    return re.sub(r"\$\{\s*([\w.-]+)\s*\}", value, text)


def preferences_declares(path: str, dvc_yaml: str | Path = "dvc.yaml") -> bool:
    """Does dvc.yaml's preferences stage list ``path`` (or a folder holding it) as a dependency?"""
    try:
        deps = yaml.safe_load(Path(dvc_yaml).read_text())["stages"]["preferences"].get("deps", [])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return False
    params_file = Path(dvc_yaml).with_name("params.yaml")
    try:
        params = yaml.safe_load(params_file.read_text()) if params_file.exists() else {}
    except yaml.YAMLError:
        params = {}
    target = Path(path)
    for dep in deps:
        d = Path(_interpolate(str(dep), params if isinstance(params, dict) else {}))
        if target == d or d in target.parents:
            return True
    return False


def stages_to_force(feedback: dict, state_path: str | Path = RETRAIN_STATE) -> list[str]:
    """``["preferences"]`` when the human votes changed since the last retrain and DVC would not notice."""
    if not feedback.get("path"):
        return []
    last = read_json(state_path, {}).get("human_votes_sha256")
    if feedback.get("sha256") == last or preferences_declares(feedback["path"]):
        return []
    if last is None and not feedback.get("total"):
        return []  # no retrain recorded yet and no human rows: nothing new for the stage to merge
    return ["preferences"]


def record_retrain(feedback: dict, result: dict, state_path: str | Path = RETRAIN_STATE) -> None:
    write_json(state_path, {"human_votes_sha256": feedback.get("sha256"), "human_rows": feedback.get("total"), "finished": now(),
                            "pipeline_run_id": result.get("run_id"), "stages": result.get("stages")})


def eval_metrics(cfg: Config) -> dict:
    """The evaluate stage's metrics file (empty when it has not run)."""
    return read_json(StagePaths.from_config(cfg).metrics("evaluate"), {})


# ----------------------------------------------------------------------------- champion re-evaluation
@task(name="load-policy-for-evaluation", **IO_RETRY)
def load_policy_task(model_uri: str) -> tuple[Any, str]:
    """(policy, version label): the registry version for ``models:/NAME@alias`` or ``models:/NAME/N``, else the file name."""
    from models.policy import load_policy
    from tasks import registry
    from tasks.policy_source import checkpoint_from_uri

    path = checkpoint_from_uri(model_uri)
    policy, _ = load_policy(path)
    version = Path(model_uri).name
    if model_uri.startswith("models:/"):
        ref = model_uri.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            version = registry.alias_version(name, alias) or "?"
        else:
            version = ref.rsplit("/", 1)[-1]
    return policy, str(version)


@task(name="score-champion")
def score_champion_task(cfg: Config, policy: Any, split: str) -> tuple[Any, dict]:
    """The champion against the heuristic and random editors on the split's songs, judged by the listener."""
    from models.heldout import compare_editors
    from tasks.rlhf import songs_by_split

    songs = songs_by_split(cfg).get(split) or []
    if not songs:
        raise ValueError(f"no {split} songs to evaluate the champion on (see {StagePaths.from_config(cfg).splits_table})")
    return compare_editors(songs, cfg, policy, None, seed=cfg.evaluate.seed, n_boot=cfg.evaluate.n_bootstrap, progress=False)


def baseline(history: list[dict], version: str, eval_json: dict | None = None) -> dict | None:
    """The figures to compare with: the last passing record, else the evaluate stage's figures for this version."""
    for rec in reversed(history):
        if rec.get("status") == "ok":
            return rec
    if eval_json and str(eval_json.get("candidate_version")) == str(version) and all(k in eval_json for k in DRIFT_KEYS):
        return {**{k: eval_json[k] for k in DRIFT_KEYS}, "version": version, "timestamp": "evaluate stage", "source": "metrics/eval.json"}
    return None


def drift_problems(base: dict | None, current: dict, tolerances: dict[str, float]) -> list[str]:
    """One sentence per figure that fell below the baseline by more than its tolerance."""
    if base is None:
        return []
    problems = []
    for key, tol in tolerances.items():
        if key in base and key in current and float(current[key]) < float(base[key]) - tol:
            problems.append(f"{key} {float(current[key]):.3f} is {float(base[key]) - float(current[key]):.3f} below the last recorded "
                            f"{float(base[key]):.3f} (champion v{base.get('version')}, {base.get('timestamp')}; tolerance {tol:g})")
    return problems


def append_history(path: str | Path, record: dict, keep: int = 200) -> list[dict]:
    history = read_json(path, [])
    history = (history + [record])[-keep:]
    write_json(path, history)
    return history


def markdown_table(rows: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {fmt(v)} |" for k, v in rows.items()) + "\n"
