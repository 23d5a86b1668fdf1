"""Telemetry off for Prefect, MLflow and DVC (set before they are imported): the one place that knows how.

Code calls ``disable_telemetry()`` at import time; tests and benchmarks that start subprocesses
pass the subprocess's environment dict. (The Makefile and .ci export the same variables for make's
own subprocesses.)"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping

from beatedit.progress import is_terminal

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}
# Not telemetry, but set at the same moment: the ephemeral Prefect server's first start (database migrations)
# can take longer than Prefect's default 20 s on a busy 2-core machine.
ROBUSTNESS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
# Also not telemetry: when stderr is a log, not a terminal, MLflow's "Downloading artifacts" bars would add
# three redraw lines per model load; beatedit's own bars go quiet by themselves (beatedit.progress).
QUIET_LOGS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def disable_telemetry(environ: MutableMapping[str, str] | None = None, force: bool = False) -> MutableMapping[str, str]:
    """Switch telemetry off in ``environ`` (default: this process's environment) and return it.

    ``force``: overwrite values already set (tests: a developer's shell must not turn telemetry back on)."""
    env = os.environ if environ is None else environ
    for key, value in {**TELEMETRY_OFF, **ROBUSTNESS}.items():
        if force and key in TELEMETRY_OFF:
            env[key] = value
        else:
            env.setdefault(key, value)
    if environ is None and not is_terminal(sys.stderr):
        for key, value in QUIET_LOGS.items():
            env.setdefault(key, value)
    return env
