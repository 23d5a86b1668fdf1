"""The registered pyfunc models against a real MLflow SQLite store: logged as code with signatures that keep
variable length, input examples, descriptions on the registered models and versions, and quiet loads."""

from __future__ import annotations

import logging
import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from beatedit.audio.schema import N_FEATURES
from beatedit.config import Config
from models.policy import policy_for_env, save_policy
from models.reward_model import RewardModel, RewardNormalizer, save_reward_model
from tasks import registry
from tasks.mlflow_models import log_policy_model, log_reward_model
from tests.songkit import make_song


@pytest.fixture()
def store(mlflow_store, tmp_path):
    mlflow.set_registry_uri(mlflow_store)
    exp = mlflow.create_experiment("models-test", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    return mlflow_store


def noisy_records(caplog, caught) -> list[str]:
    """Warnings a user cannot act on: MLflow's type-hint and cloudpickle complaints (and raw colour codes)."""
    texts = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return [t for t in texts if "type hint" in t or "CloudPickle" in t or "\x1b[" in t]


def test_reward_model_signature_keeps_variable_length(store, tmp_path, caplog):
    torch.manual_seed(0)
    model = RewardModel(d_model=32, n_layers=2, n_heads=4, max_beats=64, window_stride=32, dropout=0.0).eval()
    ckpt = save_reward_model(tmp_path / "rm.pt", model, RewardNormalizer(1.5, 2.0))
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with mlflow.start_run():
            uri = log_reward_model(ckpt)
        version = registry.register(uri, registry.REWARD_MODEL, description="trained on 3 test pairs; val_accuracy 0.500")
        loaded = mlflow.pyfunc.load_model(f"models:/{registry.REWARD_MODEL}/{version}")
    assert noisy_records(caplog, caught) == []
    sig = loaded.metadata.signature
    assert sig.inputs.input_names() == ["features", "actions", "target_ratio"] and sig.params.params[0].name == "normalized"
    assert loaded.metadata.load_input_example() is not None
    rows = [{"features": np.random.default_rng(n).normal(size=(n, N_FEATURES)).tolist(), "actions": [0] * n, "target_ratio": 0.5}
            for n in (5, 37)]  # two songs of different lengths in one call
    raw = np.asarray(loaded.predict(pd.DataFrame(rows)))
    normalized = np.asarray(loaded.predict(pd.DataFrame(rows), params={"normalized": True}))
    assert raw.shape == (2,) and np.allclose(normalized, RewardNormalizer(1.5, 2.0)(raw))  # the param reaches predict
    client = MlflowClient(store)
    assert client.get_model_version(registry.REWARD_MODEL, version).description.startswith("trained on 3 test pairs")
    assert "pairwise preferences" in client.get_registered_model(registry.REWARD_MODEL).description
    with pytest.raises(Exception, match="actions"):
        loaded.predict(pd.DataFrame([{"features": rows[0]["features"]}]))  # the signature names what is missing


def test_policy_model_with_example_and_description(store, tmp_path, caplog):
    cfg = Config()
    song, _ = make_song(song_id="sig_song")
    features = tmp_path / "sig_song.npz"
    song.save(features)
    ckpt = save_policy(tmp_path / "policy.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    params = tmp_path / "params.yaml"
    from beatedit.config import render_params_yaml

    params.write_text(render_params_yaml(cfg) + "\n")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with mlflow.start_run():
            uri = log_policy_model(ckpt, params, example_features=features)
        version = registry.register(uri, registry.POLICY_MODEL, description="PPO on 2 songs")
        loaded = mlflow.pyfunc.load_model(f"models:/{registry.POLICY_MODEL}/{version}")
    assert noisy_records(caplog, caught) == []
    assert list(loaded.metadata.load_input_example()["analysis_path"]) == [str(features)]
    out = loaded.predict(pd.DataFrame([{"target": 0.5, "analysis_path": str(features)}]))
    assert list(out.columns) == ["song_id", "edl", "duration", "decisions"] and out.song_id[0] == "sig_song"
    client = MlflowClient(store)
    assert client.get_model_version(registry.POLICY_MODEL, version).description == "PPO on 2 songs"
    assert "champion" in client.get_registered_model(registry.POLICY_MODEL).description
