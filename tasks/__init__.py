"""Prefect tasks: thin wrappers that call beatedit/ and models/ and log to MLflow.

Importing this package turns off every tool's telemetry before prefect, mlflow or
dvc is imported (each otherwise contacts the internet on every run).
"""

from tasks.telemetry import disable_telemetry

disable_telemetry()
