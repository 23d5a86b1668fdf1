"""Telemetry off for Prefect, MLflow and DVC (set before they are imported)."""

import os

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}
# Not telemetry, but set at the same moment: the ephemeral Prefect server's first start (database migrations)
# can take longer than Prefect's default 20 s on a busy 2-core machine.
ROBUSTNESS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def disable_telemetry() -> None:
    for key, value in {**TELEMETRY_OFF, **ROBUSTNESS}.items():
        os.environ.setdefault(key, value)
