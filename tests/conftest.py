"""Shared fixtures. Telemetry is turned off before any tool is imported."""

from __future__ import annotations

import os

from tasks.telemetry import disable_telemetry

disable_telemetry(force=True)

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration/ is the slow lane (`make test-fast` skips it with -m "not slow")."""
    for item in items:
        if (TESTS / "integration") in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the whole session (real flows, local mode)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    """A real MLflow SQLite store + artifact folder in a temp dir; returns the tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("BEATEDIT_PARENT_RUN_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture()
def in_tmp_repo(tmp_path, monkeypatch):
    """Run with the working directory in a temp folder (stages write data/, metrics/ relative to it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def one_torch_thread():
    """Small networks: one intra-op thread is faster and avoids oversubscribing shared CI cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
