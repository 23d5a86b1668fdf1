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


def test_what_the_mlflow_ui_shows(mlflow_store, tmp_path, monkeypatch):
    """Classic ML mode (experiment kind tag), a stage's own params only, single-prefixed metric names, the headline
    figures as the run description, and the dvc.yaml figures as PNGs."""
    import numpy as np
    import pandas as pd

    from tasks.rlhf import mlflow_logger

    monkeypatch.chdir(tmp_path)
    cfg = cfg_for(tmp_path)
    exp_id = tracking.configure(cfg)
    client = MlflowClient(mlflow_store)
    assert client.get_experiment(exp_id).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.delete_experiment_tag(exp_id, tracking.EXPERIMENT_KIND_TAG)  # a store made before the tag: configure adds it
    tracking.configure(cfg)
    assert client.get_experiment(exp_id).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    plots = tmp_path / cfg.plots_dir / "eval"
    plots.mkdir(parents=True)
    pd.DataFrame({"opponent": ["random", "search"], "win_rate": [0.9, -0.2]}).to_csv(plots / "win_rates.csv", index=False)
    pd.DataFrame({"action": ["KEEP", "CUT"], "share": [0.7, 0.3]}).to_csv(plots / "actions.csv", index=False)
    with tracking.stage_run("rlhf", cfg) as run:
        log = mlflow_logger("bc")
        log({"bc/loss": 0.5, "accuracy": 0.75, "skipped": float("nan")}, 1)
        tracking.write_metrics(tmp_path / "metrics" / "rlhf.json", {"best_gold": 0.9, "best_kl": 2.5, "algorithm": "ppo"})
        logged = tracking.log_plots(cfg, [plots / "win_rates.csv", plots / "actions.csv"])
    data = client.get_run(run.info.run_id).data
    assert {"bc/loss", "bc/accuracy"} <= set(data.metrics) and not any(k.startswith("bc/bc/") for k in data.metrics)
    assert "rlhf.total_steps" in data.params and "seed" in data.params and "device" in data.params
    assert not any(k.startswith(("reward.", "features.", "stems.", "promote.")) for k in data.params)
    assert "evaluate.seed" in data.params and "evaluate.out_dir" not in data.params  # dotted keys dvc.yaml lists
    note = data.tags[tracking.NOTE_TAG]
    assert "best validation gold" in note and "0.900" in note and "2.500" in note
    assert logged == ["plots/win_rates.png", "plots/actions.png"]
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "plots")) == ["plots/actions.png", "plots/win_rates.png"]
    assert np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(
        client.download_artifacts(run.info.run_id, "plots/win_rates.png", str(tmp_path))).size).min() > 100


def test_a_run_that_is_no_dvc_stage_logs_every_param(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cfg_for(tmp_path)
    with tracking.stage_run("evaluate-champion", cfg) as run:
        pass
    params = MlflowClient(mlflow_store).get_run(run.info.run_id).data.params
    assert {"reward.out_dir", "rlhf.total_steps", "promote.margin"} <= set(params)
