"""Operations: real servers on loopback (Prefect, MLflow, Dask), scheduled deployments, robustness, bad input.

Every server is started with ``subprocess.Popen`` in its own process group on a free loopback
port, waited for through its health endpoint in a bounded loop, and stopped by its process id
(SIGTERM to the group it leads, SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
import requests

from beatedit.config import Config, ConfigError, CorpusConfig, default_params_yaml, load_config
from beatedit.cron import cron_problem
from tasks.telemetry import disable_telemetry

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
BIN = Path(PY).parent


# ----------------------------------------------------------------------------- process helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING", "BEATEDIT_"))}
    disable_telemetry(env, force=True)
    env.update({"PREFECT_HOME": str(tmp / "prefect-home"), "PYTHONUNBUFFERED": "1",
                "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "PREFECT_UI_ENABLED": "false",
                "PREFECT_RUNNER_POLL_FREQUENCY": "2", "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_LOGGING_LEVEL": "INFO"})
    env.update(extra)
    return env


class Server:
    """A process we started (leader of its own process group), its log, and how to stop it."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def wait_http(self, url: str, deadline_s: float) -> None:
        """Bounded: poll ``url`` every 0.5 s until it answers 200, the process dies or the deadline passes."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before {url} answered:\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        pytest.fail(f"{self.name}: {url} did not answer within {deadline_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM to the group this process leads (its pid), SIGKILL after ``grace_s``; returns the exit status."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        try:  # children left in the group (uvicorn workers, flow-run subprocesses)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def group_gone(self, deadline_s: float = 20.0) -> bool:
        """Bounded wait until no process of the group is left (killed children are reaped by init)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        return False


@contextmanager
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        yield started
    finally:
        for s in reversed(started):
            s.stop()


def write_params(root: Path, **sections: dict) -> Path:
    import yaml

    raw = yaml.safe_load(default_params_yaml())
    for section, values in sections.items():
        raw[section].update(values)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- schedules and bad input
@pytest.mark.parametrize("expr", ["0 2 * * *", "*/15 * * * *", "0 6 * * 1", "30 4 1 jan *", "0 0 * * mon-fri", "@daily", "5/10 1-5 * * 0,7"])
def test_valid_cron(expr):
    assert cron_problem(expr) is None


@pytest.mark.parametrize("expr,words", [("61 2 * * *", "minute"), ("0 2 * *", "5"), ("0 24 * * *", "hour"), ("0 0 32 * *", "day of month"),
                                        ("0 0 * 13 *", "month"), ("0 0 * * 8", "day of week"), ("0 0 L * *", "day of month"),
                                        ("@sometimes", "macro"), ("", "not a cron"), ("0 0 5-1 * *", "backwards")])
def test_malformed_cron_is_explained(expr, words):
    problem = cron_problem(expr)
    assert problem is not None and words in problem


def test_malformed_schedule_in_params_is_config_error_naming_key(tmp_path):
    params = write_params(tmp_path, ops={"evaluate_champion_cron": "0 6 * * 1 *"})
    with pytest.raises(ConfigError) as err:
        load_config(params)
    assert "evaluate_champion_cron" in str(err.value) and "ops" in str(err.value) and str(params) in str(err.value)
    with pytest.raises(ConfigError, match="retrain_cron.*minute"):
        load_config(tmp_path / "params.yaml", ["ops.evaluate_champion_cron=0 6 * * 1", "ops.retrain_cron=99 * * * *"])
    with pytest.raises(ConfigError, match="timezone"):
        load_config(tmp_path / "params.yaml", ["ops.evaluate_champion_cron=0 6 * * 1", "ops.timezone=Mars/Olympus"])
    # the command line says so too, with exit status 2
    from flows.deployments import main

    with pytest.raises(SystemExit) as exit_:
        main(["schedules", "--params", str(params)])
    assert exit_.value.code == 2


def test_deployments_carry_schedules_from_params(tmp_path):
    from flows.deployments import DEPLOYMENT_NAME, deployments

    cfg = load_config(write_params(tmp_path, ops={"retrain_cron": "15 3 * * *", "timezone": "Europe/Berlin"}))
    deps = {d.flow_name: d for d in deployments(str(tmp_path / "params.yaml"), cfg)}
    assert set(deps) == {"retrain", "evaluate-champion"} and all(d.name == DEPLOYMENT_NAME for d in deps.values())
    (sched,) = deps["retrain"].schedules
    assert sched.schedule.cron == "15 3 * * *" and sched.schedule.timezone == "Europe/Berlin"
    assert deps["evaluate-champion"].schedules[0].schedule.cron == "0 6 * * 1"


def test_unreachable_tracking_server_fails_within_seconds(tmp_path, monkeypatch):
    from tasks import tracking

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with pytest.raises(tracking.TrackingServerUnreachable) as err:
        tracking.configure(Config())
    assert time.monotonic() - start < 15
    assert uri in str(err.value) and "unreachable" in str(err.value)
    # a stage on the command line: one clear line, exit 2
    write_params(tmp_path)
    proc = subprocess.run([PY, "-m", "flows.stems"], capture_output=True, text=True, cwd=tmp_path,
                          env=base_env(tmp_path, MLFLOW_TRACKING_URI=uri), timeout=120)
    assert proc.returncode == 2 and uri in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_unreachable_dask_scheduler_fails_within_seconds(tmp_path, monkeypatch):
    from flows.dask_runner import DASK_ADDRESS_ENV, DaskSchedulerUnreachable, dask_task_runner
    from flows.features import features

    address = f"tcp://127.0.0.1:{free_port()}"
    cfg = load_config(write_params(tmp_path, orchestration={"task_runner": "dask", "dask_address": address}))
    start = time.monotonic()
    with pytest.raises(DaskSchedulerUnreachable) as err:
        dask_task_runner(cfg)
    assert time.monotonic() - start < 15 and address in str(err.value)
    # the environment overrides params, and the stage fails before any flow starts
    monkeypatch.chdir(tmp_path)
    other = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv(DASK_ADDRESS_ENV, other)
    start = time.monotonic()
    with pytest.raises(DaskSchedulerUnreachable, match=other.replace(".", r"\.")):
        features("params.yaml")
    assert time.monotonic() - start < 15
    with pytest.raises(ConfigError, match="dask_address"):
        from flows.dask_runner import check_scheduler

        check_scheduler("inproc://nowhere")


# ----------------------------------------------------------------------------- robustness (real Prefect, local API)
def test_retries_only_transient_failures(prefect_harness):
    from prefect import flow, task

    from tasks.resilience import IO_RETRY

    calls = {"flaky": 0, "bug": 0}

    @task(**{**IO_RETRY, "retry_delay_seconds": 0, "retry_jitter_factor": None})
    def flaky() -> str:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("tracking server hiccup")
        return "ok"

    @task(**{**IO_RETRY, "retry_delay_seconds": 0, "retry_jitter_factor": None})
    def bug() -> None:
        calls["bug"] += 1
        raise ValueError("not transient")

    @flow
    def run() -> tuple:
        return flaky(), bug(return_state=True)

    value, bug_state = run()
    assert value == "ok" and calls["flaky"] == 3
    assert bug_state.is_failed() and calls["bug"] == 1


def test_timed_out_song_is_quarantined_not_fatal(prefect_harness):
    import dataclasses
    import logging

    from prefect import flow, task
    from prefect.task_runners import ThreadPoolTaskRunner

    from beatedit.config import Config
    from tasks.resilience import settle, song_deadline

    cfg = Config()
    cfg = dataclasses.replace(cfg, orchestration=dataclasses.replace(cfg.orchestration, song_timeout_s=0.3))

    @task
    def per_song(name: str) -> dict:
        with song_deadline(cfg):  # as the stems / features / preferences tasks do
            deadline = time.monotonic() + (3.0 if name == "slow.wav" else 0.0)
            while time.monotonic() < deadline:  # Python-level work: the deadline interrupts it
                sum(range(1000))
            return {"song_id": Path(name).stem}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def stage(names: list[str]) -> list[dict]:
        return settle(per_song.map(names), names, "features")

    class Grab(logging.Handler):  # Prefect's loggers do not propagate to the root logger (caplog sees nothing)
        messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    grab = Grab()
    logging.getLogger("prefect").addHandler(grab)
    start = time.monotonic()
    try:
        out = stage(["a.wav", "slow.wav", "b.wav"])
    finally:
        logging.getLogger("prefect").removeHandler(grab)
    assert time.monotonic() - start < 60
    assert any("Beginning flow run" in m for m in grab.messages)  # the handler does see Prefect's log
    assert not [m for m in grab.messages if "worker thread" in m]  # no warning a user cannot act on (task timeout_seconds)
    assert [r["song_id"] for r in out] == ["a", "slow", "b"]
    assert "quarantine" not in out[0] and "quarantine" not in out[2]
    q = out[1]["quarantine"]
    assert q.reason == "timeout" and q.file == "slow.wav" and q.stage == "features"


def world_features(root: Path, n: int = 3) -> list[str]:
    """A few small songs with audio, written where the stages read them (data/features, splits.csv)."""
    from tests.worldkit import make_world_song

    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        song, _ = make_world_song(audio, n_bars=16, seed=i, song_id=f"w{i}", channels=1, sr=22050)
        song.save(root / "data" / "features" / f"{song.song_id}.npz")
        ids.append(song.song_id)
    pd.DataFrame({"song_id": ids}).to_parquet(root / "data" / "features" / "index.parquet")
    (root / "data" / "preferences").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"song_id": ids, "split": ["test"] * n}).to_csv(root / "data" / "preferences" / "splits.csv", index=False)
    return ids


def test_song_pairs_cached_by_content(prefect_harness, in_tmp_repo):
    from prefect import flow

    from tasks.preferences import song_pairs_task
    from tasks.resilience import song_pairs_cache_key

    world_features(in_tmp_repo, n=1)
    cfg = load_config(write_params(in_tmp_repo, preferences={"candidates_per_song": 6, "pairs_per_song": 4, "ood_pairs_per_song": 2}))
    path = in_tmp_repo / "data" / "features" / "w0.npz"
    key = song_pairs_cache_key(None, {"path": path, "cfg": cfg})
    assert key and key == song_pairs_cache_key(None, {"path": path, "cfg": cfg})
    other = load_config(in_tmp_repo / "params.yaml", ["preferences.seed=12"])
    assert song_pairs_cache_key(None, {"path": path, "cfg": other}) != key
    assert song_pairs_cache_key(None, {"path": path, "cfg": load_config(in_tmp_repo / "params.yaml", ["orchestration.max_workers=7"])}) == key

    @flow
    def twice() -> tuple:
        a = song_pairs_task(path, cfg, return_state=True)
        b = song_pairs_task(path, cfg, return_state=True)
        return a, b

    first, second = twice()
    assert first.is_completed() and second.name == "Cached"
    assert second.result()["rows"] == first.result()["rows"] and len(first.result()["rows"]) > 0


# ----------------------------------------------------------------------------- retrain bookkeeping, drift
def test_retrain_forces_preferences_only_when_votes_changed(in_tmp_repo):
    from tasks import ops

    (in_tmp_repo / "dvc.yaml").write_text("stages:\n  preferences:\n    cmd: x\n    deps: [data/features]\n")
    state = in_tmp_repo / "state.json"
    fb = {"path": "data/feedback/human_pairs.parquet", "sha256": "a", "total": 3}
    assert ops.stages_to_force(fb, state) == ["preferences"]
    ops.record_retrain(fb, {"run_id": "r", "stages": {}}, state)
    assert ops.stages_to_force(fb, state) == []
    assert ops.stages_to_force({**fb, "sha256": "b"}, state) == ["preferences"]
    assert ops.stages_to_force({"path": fb["path"], "sha256": "x", "total": 0}, in_tmp_repo / "none.json") == []
    (in_tmp_repo / "dvc.yaml").write_text("stages:\n  preferences:\n    cmd: x\n    deps: [data/feedback]\n")
    assert ops.stages_to_force({**fb, "sha256": "c"}, state) == []  # DVC tracks it: no force needed


def test_drift_baseline_and_problems():
    from tasks import ops

    tol = {"listener_total": 0.02, "win_rate_vs_heuristic": 0.05}
    assert ops.baseline([], "3") is None
    seeded = ops.baseline([], "3", {"candidate_version": "3", "listener_total": 0.8, "win_rate_vs_heuristic": 0.7})
    assert seeded["source"] == "metrics/eval.json"
    hist = [{"status": "ok", "listener_total": 0.8, "win_rate_vs_heuristic": 0.7, "version": "3", "timestamp": "t1"},
            {"status": "drift", "listener_total": 0.5, "win_rate_vs_heuristic": 0.2, "version": "3", "timestamp": "t2"}]
    base = ops.baseline(hist, "3")
    assert base["timestamp"] == "t1"  # a drifted run never becomes the baseline
    assert ops.drift_problems(base, {"listener_total": 0.79, "win_rate_vs_heuristic": 0.66}, tol) == []
    problems = ops.drift_problems(base, {"listener_total": 0.70, "win_rate_vs_heuristic": 0.60}, tol)
    assert len(problems) == 2 and "listener_total 0.700" in problems[0] and "0.800" in problems[0]


def test_evaluate_champion_records_then_alerts_on_drift(prefect_harness, mlflow_store, in_tmp_repo):
    from flows.deployments import ChampionDrift, evaluate_champion
    from models.policy import policy_for_env, save_policy

    world_features(in_tmp_repo, n=3)
    params = write_params(in_tmp_repo, evaluate={"n_bootstrap": 200})
    cfg = load_config(params)
    import torch

    torch.manual_seed(0)
    ckpt = save_policy(in_tmp_repo / "champion.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    first = evaluate_champion(params=str(params), model_uri=str(ckpt))
    assert first["status"] == "ok" and first["baseline"] is None and first["figures"]["n_songs"] == 3
    history_path = in_tmp_repo / cfg.ops.history_path
    history = json.loads(history_path.read_text())
    assert len(history) == 1 and history[0]["status"] == "ok"
    second = evaluate_champion(params=str(params), model_uri=str(ckpt))  # same champion, same songs: no drift
    assert second["status"] == "ok" and second["baseline"]["run_id"] == history[0]["run_id"]
    # the recorded figures were better than today's: the run fails with the numbers in the message
    history = json.loads(history_path.read_text())
    history[-1]["listener_total"] += 0.2
    history_path.write_text(json.dumps(history))
    with pytest.raises(ChampionDrift) as err:
        evaluate_champion(params=str(params), model_uri=str(ckpt))
    assert "listener_total" in str(err.value) and "below the last recorded" in str(err.value)
    assert json.loads(history_path.read_text())[-1]["status"] == "drift"
    import mlflow

    runs = mlflow.search_runs(experiment_names=["beatedit"], filter_string="tags.stage = 'evaluate-champion'")
    assert len(runs) == 3 and sorted(runs["metrics.drift"]) == [0.0, 0.0, 1.0]
    # observability: each run published its figures + MLflow link as Prefect artifacts (also the drifted one)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["evaluate-champion", "evaluate-champion-run"])))
    texts = [str(a.data) for a in arts if a.key == "evaluate-champion"]
    assert sum("**DRIFT**" in t for t in texts) >= 1 and all("/#/experiments/" in t for t in texts)
    assert any(a.key == "evaluate-champion-run" and "listener_total" in str(a.data) for a in arts)


# ----------------------------------------------------------------------------- real servers
@pytest.mark.slow
def test_mlflow_server_stage_logs_over_http(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from tasks import tracking

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with servers() as started:
        started.append(Server("mlflow", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                                         "--artifacts-destination", str(tmp_path / "server-artifacts")],
                              base_env(tmp_path), tmp_path, tmp_path))
        started[0].wait_http(f"{uri}/health", 120)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.delenv("BEATEDIT_PARENT_RUN_ID", raising=False)
        monkeypatch.chdir(tmp_path)
        with tracking.stage_run("stems", Config(), ["stems.hpss_margin=3.0"]) as run:
            tracking.write_metrics(tmp_path / "metrics" / "stems.json", {"songs": 3, "quarantined": 1, "seconds": 1.5})
        client = MlflowClient(uri)
        got = client.get_run(run.info.run_id)
        assert got.info.status == "FINISHED" and got.data.tags["stage"] == "stems"
        assert got.data.metrics["songs"] == 3 and got.data.params["stems.backend"] == "hpss"
        assert got.data.tags["override.stems.hpss_margin"] == "3.0"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "metrics")] == ["metrics/stems.json"]
        assert (tmp_path / "server-artifacts").exists() and any((tmp_path / "server-artifacts").rglob("stems.json"))
        assert client.get_experiment_by_name("beatedit") is not None
        server = started.pop()
        server.stop()
        assert server.group_gone(), "mlflow server processes outlived their stop"


@pytest.mark.slow
def test_prefect_server_runs_deployments_served_and_on_a_work_pool(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from beatedit.feedback.db import make_engine, migrate
    from flows.deployments import deploy_to_pool, ensure_work_pool

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    project = tmp_path / "project"
    project.mkdir()
    write_params(project)
    engine = make_engine(f"sqlite:///{tmp_path / 'votes.db'}")
    migrate(engine)
    engine.dispose()
    env = base_env(tmp_path, PREFECT_API_URL=api)
    with servers() as started:
        server = Server("prefect-server", [PY, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                        base_env(tmp_path), tmp_path, tmp_path)
        started.append(server)
        server.wait_http(f"{api}/health", 150)
        serve = Server("serve", [PY, "-m", "flows.deployments", "serve", "--no-schedule"], env, project, tmp_path)
        started.append(serve)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            end = time.monotonic() + 120
            with get_client(sync_client=True) as client:
                while time.monotonic() < end:  # bounded: wait for serve to register its deployments
                    assert serve.proc.poll() is None, serve.log_tail()
                    try:
                        client.read_deployment_by_name("retrain/beatedit")
                        client.read_deployment_by_name("evaluate-champion/beatedit")
                        break
                    except Exception:  # noqa: BLE001 - not registered yet
                        time.sleep(1)
                else:
                    pytest.fail("serve did not register its deployments:\n" + serve.log_tail())
            run = run_deployment("retrain/beatedit", parameters={"dry_run": True, "feedback_db": f"sqlite:///{tmp_path / 'votes.db'}"},
                                 timeout=240, poll_interval=2)
            assert run.state.is_completed(), f"{run.state}\n{serve.log_tail()}"
            assert (project / "data" / "feedback" / "human_pairs.parquet").exists()  # the served run worked in the project dir
            with get_client(sync_client=True) as client:
                fr = client.read_flow_run(run.id)
                assert fr.state.type.value == "COMPLETED"
                arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
                assert any(a.key == "retrain" and "dry run" in str(a.data) for a in arts)
            started.pop().stop()  # serve

            # the work-pool path: deploy to a process pool, a worker picks the run up
            ensure_work_pool("test-pool")  # what `python -m flows.deployments deploy` does, in this process
            cfg = load_config(project / "params.yaml")
            assert len(deploy_to_pool("params.yaml", cfg, "test-pool", project, schedules=True)) == 2
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("retrain/beatedit")
                assert dep.work_pool_name == "test-pool" and dep.schedules[0].schedule.cron == cfg.ops.retrain_cron
                assert dep.job_variables["working_dir"] == str(project.resolve())
            worker = Server("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "test-pool", "--type", "process"], env, project, tmp_path)
            started.append(worker)
            run = run_deployment("retrain/beatedit", parameters={"dry_run": True, "feedback_db": f"sqlite:///{tmp_path / 'votes.db'}"},
                                 timeout=240, poll_interval=2)
            assert run.state.is_completed(), f"{run.state}\n{worker.log_tail()}"
            with get_client(sync_client=True) as client:
                fr = client.read_flow_run(run.id)
                assert fr.state.type.value == "COMPLETED" and fr.work_pool_name == "test-pool"


@pytest.mark.slow
def test_features_flow_runs_on_a_local_dask_cluster(prefect_harness, mlflow_store, in_tmp_repo):
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    from beatedit.corpus.generator import generate_corpus
    from flows.features import features
    from flows.stems import stems

    write_params(in_tmp_repo, features={"realmusic_check": False})
    generate_corpus(CorpusConfig(n_songs=2, min_seconds=20, max_seconds=30), in_tmp_repo / "data" / "corpus", progress=False)
    # the workers report to the same Prefect API as this process (the harness's), as remote workers would
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "MLFLOW_TRACKING_URI": mlflow_store}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=env) as cluster:
        overrides = ["orchestration.task_runner=dask", f"orchestration.dask_address={cluster.scheduler_address}"]
        assert stems("params.yaml", overrides)["songs"] == 2
        metrics = features("params.yaml", overrides)
        prefixes = set(cluster.scheduler.task_prefixes)
        worker_pids = {w.process.pid for w in cluster.workers.values()}
    assert metrics["songs"] == 2 and metrics["quarantined"] == 0 and metrics["beats"] > 0
    assert {"separate_song_task", "analyse_song_task"} <= prefixes, prefixes  # the per-song tasks ran on the cluster
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert sorted(p.name for p in (in_tmp_repo / "data" / "features").glob("*.npz")) == ["song_000.npz", "song_001.npz"]
    assert np.isfinite(json.loads((in_tmp_repo / "metrics" / "features.json").read_text())["beat_f_measure"])
