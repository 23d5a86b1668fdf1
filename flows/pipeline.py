"""The whole pipeline as one Prefect flow: a subflow per DVC stage, under one MLflow run.

Each subflow runs ``dvc repro --single-item <stage>``, so DVC's lock decides what
re-runs (an unchanged stage is skipped) and every stage still runs in its own
process through its ``cmd`` (``python -m flows.<stage>``). The MLflow pipeline run's
id travels to those processes in ``BEATEDIT_PARENT_RUN_ID``, so every stage run is
nested under it. Parameter changes go through params.yaml or ``dvc exp run -S``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tasks.telemetry import disable_telemetry

disable_telemetry()

import mlflow  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from beatedit.paths import REPORT_STAGES, StagePaths  # noqa: E402
from beatedit.summary import headline_table  # noqa: E402
from flows.common import load_stage_config  # noqa: E402
from flows.errors import StageFailed  # noqa: E402
from tasks import tracking  # noqa: E402


def dvc_stages(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """The pipeline's stage names in dvc.yaml order (the file lists them upstream first): every stage but the final
    report's (``REPORT_STAGES``: the frozen test set and the report, `make report`), which no pipeline run may look at."""
    return [s for s in yaml.safe_load(Path(dvc_yaml).read_text())["stages"] if s not in REPORT_STAGES]


def dvc_lock_busy(task_obj, task_run, state) -> bool:
    """Retry ``dvc repro`` only when another DVC process held the repository lock (a real, transient clash)."""
    exc = getattr(state, "data", None)
    return isinstance(exc, BaseException) and "unable to acquire lock" in str(exc).lower()


@task(name="dvc-repro", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5,
      retry_condition_fn=dvc_lock_busy)
def dvc_repro_task(stage: str, env: dict[str, str], force: bool = False) -> str:
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", *(["--force"] if force else []), stage]
    logger.info("$ %s", " ".join(cmd[2:]))
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        print(line, end="", flush=True)
    if proc.wait() != 0:
        tail = "\n".join(lines[-15:])
        raise StageFailed(f"dvc repro {stage} failed (exit {proc.returncode}):\n{tail}")
    skipped = any("didn't change, skipping" in ln for ln in lines)
    return "skipped (unchanged)" if skipped else "ran"


@flow(name="stage", flow_run_name="{stage}")
def stage_subflow(stage: str, env: dict[str, str], force: bool = False) -> str:
    """One DVC stage, reproduced only if its deps or params changed (or ``force``)."""
    return dvc_repro_task(stage, env, force)


@flow(name="pipeline")
def pipeline(params: str = "params.yaml", stages: list[str] | None = None, force: list[str] | None = None) -> dict:
    """Reproduce every DVC stage in order under one MLflow pipeline run; summarise the metrics.

    ``force``: stages to re-run even if DVC sees no change (the retrain deployment forces
    ``preferences`` when new human votes arrived in a file the stage does not declare as a dep)."""
    cfg = load_stage_config(params, [])
    tracking.configure(cfg)
    names = stages or dvc_stages()
    outcome: dict[str, str] = {}
    with mlflow.start_run(run_name="pipeline", tags={"stage": "pipeline", "git_commit": tracking.git_commit()}) as run:
        env = {tracking.PARENT_RUN_ENV: run.info.run_id}
        for name in names:
            outcome[name] = stage_subflow(name, env, name in set(force or ()))
        mlflow.set_tag("dvc_lock_hash", tracking.dvc_lock_hash())
        metrics = {p.stem: json.loads(p.read_text()) for p in sorted(StagePaths.from_config(cfg).metrics_dir.glob("*.json"))}
        tracking.log_metrics(metrics)
        tracking.describe_pipeline(metrics)
        mlflow.log_dict({"stages": outcome, "metrics": metrics}, "pipeline_summary.json")
    rows = "\n".join(f"| {k} | {v} |" for k, v in outcome.items())
    create_markdown_artifact(key="pipeline-summary", markdown=f"# beatedit pipeline\n\nMLflow run `{run.info.run_id}`: {tracking.run_link(run.info.run_id, run.info.experiment_id)}\n\n| stage | outcome |\n|---|---|\n{rows}\n")
    return {"run_id": run.info.run_id, "stages": outcome, "metrics": metrics}


if __name__ == "__main__":
    try:
        result = pipeline()
    except (StageFailed, tracking.TrackingServerUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(result["stages"], indent=1))
    print("\nHeadline figures (metrics/*.json):\n" + headline_table(result["metrics"]))
