"""Scheduled Prefect deployments: nightly ``retrain`` and weekly ``evaluate-champion``.

``retrain``: export new human preference records from the feedback database (if one is
configured) into ``preferences.human_votes_path``, then run the whole pipeline
(``flows.pipeline``: ``dvc repro`` stage by stage, so DVC's cache decides what re-runs); the
evaluate stage promotes a better candidate (``promote.auto``). ``evaluate-champion``: score
the registry's champion on the promotion songs and fail the flow run -- the alert -- when its
listener score or win rate against the heuristic fell below the last recorded figures by more
than ``ops.drift_tolerance_*``. Both publish a Prefect artifact with their key figures and the
MLflow run link. Schedules (cron + timezone) come from ``params.yaml``'s ``ops`` section.

    prefect server start --host 127.0.0.1                 # or: make prefect-server
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python -m flows.deployments serve                     # both deployments, in this process (make serve-deployments)
    # or a process work pool + workers (any number of machines with this repo checked out):
    python -m flows.deployments deploy                    # creates the pool ops.work_pool if missing
    prefect worker start --pool beatedit-process          # make worker
    prefect deployment run retrain/beatedit               # run now through the server
    python -m flows.deployments run retrain               # run now, in this process (make retrain-now)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from tasks.telemetry import disable_telemetry

disable_telemetry()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402

from beatedit.config import Config, ConfigError  # noqa: E402
from flows.common import load_stage_config  # noqa: E402
from flows.errors import StageFailed  # noqa: E402
from tasks import ops, tracking  # noqa: E402

DEPLOYMENT_NAME = "beatedit"  # deployments are <flow>/beatedit: retrain/beatedit, evaluate-champion/beatedit
CHAMPION_URI = "models:/beatedit-policy@champion"


class ChampionDrift(StageFailed):
    """evaluate-champion: the champion fell below its last recorded figures (the flow run fails = the alert)."""

    exit_code = 5


# ----------------------------------------------------------------------------- flows
@flow(name="retrain", log_prints=True)
def retrain(params: str = "params.yaml", feedback_db: str | None = None, stages: list[str] | None = None,
            dry_run: bool = False) -> dict:
    """Gather new human preferences, reproduce the pipeline (DVC decides what re-runs), evaluate and promote.

    ``feedback_db``: SQLAlchemy URL of the feedback votes (default ops.feedback_db / BEATEDIT_FEEDBACK_DB);
    ``stages``: a subset of dvc.yaml's stages; ``dry_run``: export the votes and report, run no stage."""
    from flows.pipeline import dvc_stages, pipeline

    cfg = load_stage_config(params, [])
    exp_id = tracking.configure(cfg)  # an unreachable tracking server fails here, in seconds
    logger = get_run_logger()
    feedback = ops.export_feedback_task(ops.feedback_db_url(cfg, feedback_db), cfg.preferences.human_votes_path, cfg.ops.feedback_min_listened_s,
                                        cfg.preferences.human_analyses_dir)
    force = ops.stages_to_force(feedback)
    if force:
        logger.info("human votes changed since the last retrain; forcing %s (dvc.yaml does not track %s)", force, feedback["path"])
    result: dict[str, Any] = {"run_id": None, "stages": {}}
    error: str | None = None
    if dry_run:
        names = stages or (dvc_stages() if Path("dvc.yaml").exists() else [])
        result["stages"] = {s: "not run (dry run)" + (", would force" if s in force else "") for s in names}
    else:
        try:
            result = pipeline(params=params, stages=stages, force=force)
        except Exception as exc:  # publish what happened, then fail the flow run
            error = f"{type(exc).__name__}: {exc}"
        else:
            ops.record_retrain(feedback, result)
    ev = ops.eval_metrics(cfg) if not dry_run else {}
    figures = {"human_rows": feedback.get("total", 0), "human_rows_added": feedback.get("added", 0)}
    for key in ("win_rate_vs_heuristic", "win_rate_vs_champion", "listener_total", "candidate_version", "champion_version", "promoted"):
        if key in ev:
            figures[key] = ev[key]
    link = ops.mlflow_run_link(result.get("run_id"), exp_id)
    stage_rows = "\n".join(f"| {k} | {v} |" for k, v in result.get("stages", {}).items()) or "| (none) | |"
    create_markdown_artifact(key="retrain", description="beatedit retrain: feedback export, pipeline, promotion", markdown=(
        f"# beatedit retrain {'(dry run)' if dry_run else ''}\n\n"
        f"**Outcome:** {'FAILED: ' + error if error else 'completed'}\n\n"
        f"MLflow pipeline run: {link}\n\n"
        f"Feedback: {feedback.get('db') or 'no database configured'} -> `{feedback.get('path')}` "
        f"({feedback.get('added', 0)} new rows, {feedback.get('total', 0)} in all)"
        f"{'; forced: ' + ', '.join(force) if force else ''}\n\n"
        f"{ops.markdown_table(figures)}\n| stage | outcome |\n|---|---|\n{stage_rows}\n"
        f"{'' if dry_run or 'promoted' not in ev else chr(10) + 'Promotion: ' + str(ev.get('promotion_reason', ''))}\n"))
    if error:
        raise StageFailed(f"retrain failed: {error}")
    return {"feedback": feedback, "force": force, "pipeline_run_id": result.get("run_id"), "stages": result.get("stages", {}),
            "figures": figures, "mlflow_link": link}


@flow(name="evaluate-champion", log_prints=True)
def evaluate_champion(params: str = "params.yaml", model_uri: str = CHAMPION_URI, split: str | None = None) -> dict:
    """Re-score the champion on held-out songs; fail (alert) when it drifted below its last recorded figures."""
    cfg = load_stage_config(params, [])
    split = split or cfg.evaluate.split
    history_path = Path(cfg.ops.history_path)
    tolerances = {"listener_total": cfg.ops.drift_tolerance_listener, "win_rate_vs_heuristic": cfg.ops.drift_tolerance_win_rate}
    with tracking.stage_run("evaluate-champion", cfg, tags={"model_uri": model_uri, "split": split}) as run:
        exp_id = run.info.experiment_id
        policy, version = ops.load_policy_task(model_uri)
        df, summary = ops.score_champion_task(cfg, policy, split)
        figures = {k: float(v) for k, v in summary.items() if k in ("n_songs", "listener_total", "win_rate_vs_heuristic",
                   "win_rate_vs_heuristic_ci_low", "win_rate_vs_heuristic_ci_high", "win_rate_vs_random", "dense_total",
                   "duration_within_5pct")}
        base = ops.baseline(ops.read_json(history_path, []), version, ops.eval_metrics(cfg))
        problems = ops.drift_problems(base, figures, tolerances)
        record = {"timestamp": ops.now(), "version": version, "model_uri": model_uri, "split": split, "run_id": run.info.run_id,
                  "status": "drift" if problems else "ok", "problems": problems, **figures}
        history = ops.append_history(history_path, record)
        tracking.log_metrics({**figures, "drift": float(bool(problems))})
        tracking.log_json({"record": record, "baseline": base}, "evaluate_champion.json")
        df.drop(columns=["edl"], errors="ignore").to_csv(history_path.parent / "champion_eval_rows.csv", index=False)
    link = ops.mlflow_run_link(run.info.run_id, exp_id)
    verdict = ("**DRIFT** -- " + "; ".join(problems)) if problems else (
        "ok" + ("" if base else " (first evaluation: recorded as the baseline)"))
    create_markdown_artifact(key="evaluate-champion", description="beatedit champion re-evaluation", markdown=(
        f"# beatedit champion re-evaluation\n\n`{model_uri}` (version {version}) on {int(figures.get('n_songs', 0))} {split} songs.\n\n"
        f"**Verdict:** {verdict}\n\nMLflow run: {link}\n\n{ops.markdown_table(figures)}\n"
        f"Baseline: {('v' + str(base.get('version')) + ' at ' + str(base.get('timestamp'))) if base else 'none'}; "
        f"tolerances {tolerances}; history `{history_path}`\n"))
    create_table_artifact(key="champion-history", description="evaluate-champion history (newest last)", table=[
        {k: r.get(k) for k in ("timestamp", "version", "status", "listener_total", "win_rate_vs_heuristic", "n_songs")} for r in history[-20:]])
    if problems:
        raise ChampionDrift(f"champion {model_uri} (version {version}) drifted on the {split} songs: " + "; ".join(problems)
                            + f". MLflow run: {link}")
    return {"version": version, "figures": figures, "baseline": base, "mlflow_link": link, "status": record["status"]}


# ----------------------------------------------------------------------------- deployments
def schedule(cfg: Config, key: str) -> Any:
    """``prefect.schedules.Cron`` for ``ops.<key>``; a cron Prefect refuses is a ConfigError naming the key."""
    from prefect.schedules import Cron

    expr = getattr(cfg.ops, key)
    try:
        return Cron(expr, timezone=cfg.ops.timezone)
    except ValueError as exc:
        raise ConfigError(f"ops.{key}: {expr!r} is not a schedule Prefect accepts ({exc})") from None


def deployments(params: str = "params.yaml", cfg: Config | None = None, schedules: bool = True, **kwargs: Any) -> list[Any]:
    """The two RunnerDeployments (named ``beatedit``) with their schedules from params."""
    from prefect.types.entrypoint import EntrypointType

    cfg = cfg or load_stage_config(params, [])
    kwargs.setdefault("entrypoint_type", EntrypointType.MODULE_PATH)  # flows.deployments.retrain: importable from any cwd
    out = []
    for fl, key, desc in ((retrain, "retrain_cron", "nightly: new human votes -> dvc repro -> evaluate -> promote"),
                          (evaluate_champion, "evaluate_champion_cron", "weekly: re-score the champion, fail on drift")):
        sched = schedule(cfg, key)  # validated even when not attached
        out.append(fl.to_deployment(name=DEPLOYMENT_NAME, schedules=[sched] if schedules else None, parameters={"params": params},
                                    tags=["beatedit", fl.name], description=f"{fl.name} ({desc}); schedule ops.{key} = {getattr(cfg.ops, key)!r} "
                                    f"{cfg.ops.timezone}", **kwargs))
    return out


def require_api(timeout: float = 5.0) -> str:
    """PREFECT_API_URL must name a running server (serve/deploy need one; local ephemeral mode does not schedule)."""
    import requests

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        raise SystemExit("error: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after `make prefect-server`)")
    try:
        requests.get(url.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        raise SystemExit(f"error: Prefect server {url} is unreachable ({type(exc).__name__}); start it with `make prefect-server`") from None
    return url


def ensure_work_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            print(f"created process work pool {name!r}")


def deploy_to_pool(params: str, cfg: Config, pool: str, workdir: str | Path, schedules: bool = True) -> list[Any]:
    """Register both deployments on a process work pool.

    The entrypoint is the module path (``flows.deployments.retrain``), so a worker needs no code
    download: it imports the flow from its own installed checkout (``pip install -e .``) and runs it
    in ``workdir`` (job variable ``working_dir``: the project directory with params.yaml, dvc.yaml, data/)."""
    from prefect.types.entrypoint import EntrypointType

    ids = []
    for fl, key in ((retrain, "retrain_cron"), (evaluate_champion, "evaluate_champion_cron")):
        sched = schedule(cfg, key)
        ids.append(fl.deploy(name=DEPLOYMENT_NAME, work_pool_name=pool, schedules=[sched] if schedules else None,
                             parameters={"params": params}, job_variables={"working_dir": str(Path(workdir).resolve())},
                             tags=["beatedit", fl.name], entrypoint_type=EntrypointType.MODULE_PATH, build=False, push=False,
                             print_next_steps=False, ignore_warnings=True))
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.deployments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("serve", "serve both deployments from this process (needs PREFECT_API_URL)"),
                       ("deploy", "register both deployments on a process work pool (needs PREFECT_API_URL)"),
                       ("schedules", "print and validate the schedules"),
                       ("run", "run one flow now, in this process")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--params", default="params.yaml")
        if name in ("serve", "deploy"):
            p.add_argument("--no-schedule", action="store_true", help="register without the cron schedules (manual runs only)")
        if name == "deploy":
            p.add_argument("--pool", default=None, help="work pool (default ops.work_pool)")
            p.add_argument("--workdir", default=".", help="project directory the worker runs flows in (default: here)")
        if name == "serve":
            p.add_argument("--limit", type=int, default=1, help="concurrent flow runs (default 1: retrains never overlap)")
        if name == "run":
            p.add_argument("flow", choices=["retrain", "evaluate-champion"])
            p.add_argument("--dry-run", action="store_true", help="retrain: export votes and report, run no stage")
            p.add_argument("--feedback-db", default=None)
            p.add_argument("--model", default=CHAMPION_URI, help="evaluate-champion: model URI or checkpoint")
    args = parser.parse_args(argv)
    try:
        cfg = load_stage_config(args.params, [])
        if args.cmd == "schedules":
            for key in ("retrain_cron", "evaluate_champion_cron"):
                schedule(cfg, key)
                print(f"ops.{key}: {getattr(cfg.ops, key)!r} ({cfg.ops.timezone})")
        elif args.cmd == "serve":
            from prefect import serve

            require_api()
            serve(*deployments(args.params, cfg, schedules=not args.no_schedule), limit=args.limit)
        elif args.cmd == "deploy":
            require_api()
            pool = args.pool or cfg.ops.work_pool
            ensure_work_pool(pool)
            ids = deploy_to_pool(args.params, cfg, pool, args.workdir, schedules=not args.no_schedule)
            print(f"deployed {len(ids)} deployments to pool {pool!r}; start a worker: prefect worker start --pool {pool}")
        elif args.flow == "retrain":
            out = retrain(params=args.params, feedback_db=args.feedback_db, dry_run=args.dry_run)
            print(f"retrain: {out['stages']}  MLflow: {out['mlflow_link']}")
        else:
            out = evaluate_champion(params=args.params, model_uri=args.model)
            print(f"evaluate-champion: {out['status']} {out['figures']}  MLflow: {out['mlflow_link']}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (StageFailed, tracking.TrackingServerUnreachable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None


if __name__ == "__main__":
    # run the module's own copy (flows.deployments, not __main__): deployments must name an importable flow
    from flows.deployments import main as _main

    _main()
