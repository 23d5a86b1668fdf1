"""Registry aliases and promotion against a real MLflow SQLite store."""

from __future__ import annotations

import threading

import mlflow
import pandas as pd
import pytest

from tasks import registry


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):  # type-hinted: MLflow warns otherwise
        return [0.0] * len(model_input)


@pytest.fixture()
def store(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv(registry.LOCK_FILE_ENV, str(tmp_path / "promotion.lock"))
    mlflow.set_registry_uri(mlflow_store)
    exp = mlflow.create_experiment("reg-test", artifact_location=(tmp_path / "art").as_uri())
    mlflow.set_experiment(experiment_id=exp)
    return mlflow_store


def new_version(name: str, tags: dict | None = None) -> str:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant())
    return registry.register(info.model_uri, name, tags=tags, aliases=(registry.CHALLENGER,))


def test_worse_refused_better_promoted_and_rollback(store):
    r1 = new_version(registry.REWARD_MODEL)
    p1 = new_version(registry.POLICY_MODEL, {"reward_version": r1})
    d = registry.promote(p1, r1, evaluated_against=None, evaluation_run_id="e1", approved=True, reason="first")
    assert d.promoted and registry.alias_version(registry.POLICY_MODEL, "champion") == p1
    assert registry.alias_version(registry.REWARD_MODEL, "champion") == r1
    assert registry.version_tags(registry.POLICY_MODEL, p1)["evaluation_run_id"] == "e1"

    r2 = new_version(registry.REWARD_MODEL)
    p2 = new_version(registry.POLICY_MODEL, {"reward_version": r2})
    worse = registry.promote(p2, r2, evaluated_against=p1, evaluation_run_id="e2", approved=False, reason="lost")
    assert not worse.promoted and registry.alias_version(registry.POLICY_MODEL, "champion") == p1
    assert registry.alias_version(registry.POLICY_MODEL, "challenger") == p2

    better = registry.promote(p2, r2, evaluated_against=p1, evaluation_run_id="e3", approved=True, reason="won")
    assert better.promoted
    assert registry.alias_version(registry.POLICY_MODEL, "champion") == p2
    assert registry.alias_version(registry.POLICY_MODEL, "previous-champion") == p1
    assert registry.alias_version(registry.REWARD_MODEL, "champion") == r2

    # a client loads the champion through its alias, as production does
    loaded = mlflow.pyfunc.load_model(f"models:/{registry.POLICY_MODEL}@champion")
    assert list(loaded.predict(pd.DataFrame({"x": [1, 2]}))) == [0.0, 0.0]

    back = registry.rollback()
    assert back.promoted
    assert registry.alias_version(registry.POLICY_MODEL, "champion") == p1
    assert registry.alias_version(registry.REWARD_MODEL, "champion") == r1


def test_concurrent_promotions_cannot_both_win(store):
    versions = [new_version(registry.POLICY_MODEL) for _ in range(2)]
    barrier = threading.Barrier(2)
    results = {}

    def go(v):
        barrier.wait()
        results[v] = registry.promote(v, None, evaluated_against=None, evaluation_run_id=f"e{v}", approved=True, reason="race")

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [v for v, d in results.items() if d.promoted]
    assert len(winners) == 1
    loser = next(d for d in results.values() if not d.promoted)
    assert "changed" in loser.reason
    assert registry.alias_version(registry.POLICY_MODEL, "champion") == winners[0]
