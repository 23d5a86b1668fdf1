"""What every stage flow shares: the command line, the task runner, clean failures, the per-song stage shape."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from tasks.telemetry import disable_telemetry

disable_telemetry()

from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from beatedit.config import Config, ConfigError, load_config  # noqa: E402
from flows.errors import StageFailed, TooManyQuarantined  # noqa: E402
from tasks import tracking  # noqa: E402
from tasks.resilience import settle  # noqa: E402
from tasks.tracking import TrackingServerUnreachable, check_tracking_server, tracking_uri  # noqa: E402

PARAMS_ENV = "BEATEDIT_PARAMS"

def task_runner(cfg: Config) -> Any:
    """Thread pool by default; a Dask cluster when ``orchestration.task_runner: dask``."""
    if cfg.orchestration.task_runner == "dask":
        from flows.dask_runner import dask_task_runner

        return dask_task_runner(cfg)
    return ThreadPoolTaskRunner(max_workers=cfg.orchestration.max_workers)


def load_stage_config(params: str, overrides: list[str] | tuple[str, ...]) -> Config:
    return load_config(params, list(overrides))


def apply_torch_threads(cfg: Config) -> None:
    """Pin torch's CPU threads (``torch_threads``) for the training stages: the reward model and policy are
    small, and on a shared few-core machine extra threads mostly contend (one thread measured 4-6x faster
    than the default while another stage ran beside it)."""
    if cfg.torch_threads > 0:
        import torch

        torch.set_num_threads(cfg.torch_threads)


def stage_main(flow: Callable[..., Any], argv: list[str] | None = None) -> None:
    """``python -m flows.<stage> [--params FILE] [--set key=value ...]`` for DVC's ``cmd``."""
    name = getattr(flow, "name", getattr(flow, "__name__", "stage"))
    parser = argparse.ArgumentParser(prog=f"python -m flows.{name}", description=(flow.__doc__ or "").strip().splitlines()[0] if flow.__doc__ else None)
    parser.add_argument("--params", default=os.environ.get(PARAMS_ENV, "params.yaml"), help="parameters file (default params.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.params, args.overrides)  # fail fast, before Prefect starts its server
        check_tracking_server(tracking_uri(cfg))  # an unreachable MLflow server: seconds, not minutes of retries
        flow(params=args.params, overrides=args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StageFailed as exc:
        print(f"error: stage {name} failed: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except TrackingServerUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_with_runner(flow_obj: Any, params: str, overrides: list[str] | tuple[str, ...]) -> Any:
    """Run a per-song flow (``flow_obj(params, overrides)``) with the task runner params.yaml asks for (thread pool or Dask)."""
    cfg = load_stage_config(params, overrides)
    return flow_obj.with_options(task_runner=task_runner(cfg))(params=params, overrides=list(overrides))


def per_song_stage(stage: str, params: str, overrides: list[str], files: Callable[[Config], list[Path]], song_task: Any,
                   report: Callable[[list[dict], Config], dict], tags: Callable[[Config], dict] | None = None,
                   songs_key: str = "songs") -> dict:
    """The body every per-song stage flow shares: one MLflow stage run, ``song_task`` mapped over ``files(cfg)``
    with the per-song timeout (a failed song becomes a quarantine record), ``report`` over the results, then
    the quarantine gate (``metrics[songs_key]`` songs went on)."""
    cfg = load_stage_config(params, overrides)
    with tracking.stage_run(stage, cfg, overrides, tags=tags(cfg) if tags else None):
        items = files(cfg)
        futures = song_task.map(items, cfg=cfg)
        metrics = report(settle(futures, items, stage), cfg)
    quarantine_gate(stage, {"songs": metrics[songs_key], "quarantined": metrics["quarantined"]}, cfg)
    return metrics


def quarantine_gate(stage: str, metrics: dict, cfg: Config) -> None:
    """Say how many songs were quarantined; fail the stage when too few songs are left to go on with."""
    n_bad, n_ok = int(metrics.get("quarantined", 0)), int(metrics.get("songs", 0))
    if n_bad:
        print(f"{stage}: {n_bad} song(s) quarantined (see the stage's quarantine.json); {n_ok} went on", file=sys.stderr)
    total = n_bad + n_ok
    if total == 0 or n_ok == 0 or n_bad / total > cfg.audio.max_quarantined_fraction:
        raise TooManyQuarantined(f"{n_bad} of {total} songs quarantined (limit audio.max_quarantined_fraction = {cfg.audio.max_quarantined_fraction})")
