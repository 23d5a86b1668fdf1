"""Prefect flows: one per DVC stage, the whole pipeline, deployments. Flows only wire tasks."""

from tasks.telemetry import disable_telemetry

disable_telemetry()
