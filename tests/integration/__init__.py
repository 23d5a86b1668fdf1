"""Integration tests (the slow lane): real dvc repro, Prefect flows and servers, MLflow stores, the CLI, the feedback server and a real browser."""
