"""Dask task runner for the per-song stages (``orchestration.task_runner: dask``).

* A scheduler address -- ``BEATEDIT_DASK_ADDRESS`` or ``orchestration.dask_address``
  (``tcp://host:8786``) -- connects to an existing cluster (``dask scheduler`` +
  ``dask worker`` processes on any number of machines). The address is probed with a short
  TCP connect first, so a wrong or dead address is a clear error within seconds instead
  of Dask's 30 s connect timeout (or a hang behind a firewall).
* No address: a local cluster of ``orchestration.max_workers`` single-threaded worker
  *processes* (the per-song work is CPU-bound numpy/librosa, so processes -- not threads --
  give the speed-up), scheduler and dashboard on loopback only.

Workers import ``beatedit``/``tasks`` themselves, so every worker machine needs this repo
installed (``pip install -e .``) and the data paths (``data/``) on a shared file system.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from beatedit.config import Config, ConfigError
from flows.errors import StageFailed

DASK_ADDRESS_ENV = "BEATEDIT_DASK_ADDRESS"
CONNECT_TIMEOUT_S = 5.0


class DaskSchedulerUnreachable(StageFailed):
    """The configured Dask scheduler does not accept connections."""

    exit_code = 4


def scheduler_address(cfg: Config) -> str | None:
    """The scheduler to connect to: the environment overrides params.yaml; None = local cluster."""
    return (os.environ.get(DASK_ADDRESS_ENV) or "").strip() or cfg.orchestration.dask_address or None


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> float:
    """TCP-connect to the scheduler within ``timeout`` seconds; returns the seconds it took."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address, strict=False)
        if scheme not in ("tcp", "tls", "ws", "wss"):
            raise ValueError(f"scheme {scheme!r} cannot reach a remote scheduler (use tcp://host:port)")
        host, port = parse_host_port(loc, default_port=8786)
    except ValueError as exc:
        raise ConfigError(f"orchestration.dask_address / {DASK_ADDRESS_ENV}: {address!r} is not a Dask scheduler address ({exc})") from None
    start = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        waited = time.monotonic() - start
        raise DaskSchedulerUnreachable(
            f"Dask scheduler {address} is unreachable ({type(exc).__name__}: {exc}; gave up after {waited:.1f} s, "
            f"timeout {timeout:g} s). Start one (`dask scheduler --host HOST` + `dask worker {address}`), fix "
            f"orchestration.dask_address / {DASK_ADDRESS_ENV}, or clear both to run on a local cluster") from None
    return time.monotonic() - start


def local_cluster_kwargs(cfg: Config) -> dict[str, Any]:
    return {"n_workers": cfg.orchestration.max_workers, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": None}


def _prefect_api_url() -> str | None:
    """The Prefect API this flow run talks to (the ephemeral server's URL in local mode)."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            return str(client.api_url)
    except Exception:  # noqa: BLE001 - no API: workers fall back to their own settings
        return None


def local_cluster(**kwargs: Any) -> Any:
    """A ``distributed.LocalCluster`` whose worker processes report to *this* process's Prefect API.

    Without PREFECT_API_URL (Prefect's local ephemeral mode) every worker process would start a
    temporary Prefect server of its own (seconds each, and task states the flow's UI never sees)."""
    from distributed import LocalCluster

    env = dict(kwargs.pop("env", None) or {})
    if not os.environ.get("PREFECT_API_URL"):
        url = _prefect_api_url()
        if url:
            env["PREFECT_API_URL"] = url
    return LocalCluster(env=env, **kwargs)


def dask_task_runner(cfg: Config) -> Any:
    """A ``prefect_dask.DaskTaskRunner`` for the configured scheduler, or for a local process cluster."""
    from prefect_dask import DaskTaskRunner

    address = scheduler_address(cfg)
    if address:
        check_scheduler(address)
        return DaskTaskRunner(address=address, client_kwargs={"timeout": f"{int(CONNECT_TIMEOUT_S * 2)}s"})
    return DaskTaskRunner(cluster_class=local_cluster, cluster_kwargs=local_cluster_kwargs(cfg))
