"""The MLflow helper against a real SQLite store in a temp dir."""

from __future__ import annotations

import json

import mlflow
from mlflow.tracking import MlflowClient

from beatedit.config import Config, MlflowConfig
from tasks import tracking


def cfg_for(tmp_path) -> Config:
    return Config(mlflow=MlflowConfig(artifact_root=str(tmp_path / "mlartifacts")))


def test_stage_run_nested_under_pipeline_run(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    cfg = cfg_for(tmp_path)
    exp_id = tracking.configure(cfg)
    with mlflow.start_run(run_name="pipeline") as parent:
        with tracking.stage_run("corpus", cfg, overrides=["env.window_before=3"]) as run:
            tracking.write_metrics(tmp_path / "metrics" / "corpus.json", {"songs": 3, "total_seconds": 12.5, "nested": {"a": 1}})
            child_id = run.info.run_id
    client = MlflowClient(mlflow_store)
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["stage"] == "corpus"
    assert len(child.data.tags["dvc_lock_hash"]) == 16
    assert child.data.tags["git_commit"]
    assert child.data.tags["override.env.window_before"] == "3"
    assert child.data.params["data.corpus.n_songs"] == str(cfg.data.corpus.n_songs)  # the flattened params
    assert child.data.metrics["songs"] == 3.0 and child.data.metrics["nested.a"] == 1.0
    assert json.loads((tmp_path / "metrics" / "corpus.json").read_text())["total_seconds"] == 12.5
    arts = [a.path for a in client.list_artifacts(child_id, "metrics")]
    assert arts == ["metrics/corpus.json"]
    assert client.get_experiment(exp_id).artifact_location.startswith("file://")


def test_parent_from_environment(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_for(tmp_path)
    tracking.configure(cfg)
    with mlflow.start_run(run_name="pipeline") as parent:
        pass
    monkeypatch.setenv(tracking.PARENT_RUN_ENV, parent.info.run_id)
    with tracking.stage_run("stems", cfg) as run:
        pass
    assert MlflowClient(mlflow_store).get_run(run.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert MlflowClient(mlflow_store).get_run(run.info.run_id).data.tags["dvc_lock_hash"] == "none"
