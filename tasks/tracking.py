"""The one MLflow helper every stage uses: open a run for a stage and log to it.

Embedded default: ``sqlite:///mlflow.db`` with artifacts in ``./mlartifacts`` at the
repo root; ``MLFLOW_TRACKING_URI`` overrides. A stage run is nested under the
pipeline run when one is active in this process or when ``BEATEDIT_PARENT_RUN_ID``
names one (the pipeline flow sets it for the ``dvc repro`` processes it starts).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tasks.telemetry import disable_telemetry

disable_telemetry()

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from beatedit.atomic import atomic_write_text  # noqa: E402
from beatedit.config import Config, config_to_dict, flatten  # noqa: E402
from models.checkpoint import dvc_lock_hash, git_commit  # noqa: E402

PARENT_RUN_ENV = "BEATEDIT_PARENT_RUN_ID"
#: MLflow 3's UI opens an experiment by its kind; without the tag it guesses GenAI and calls runs "Evaluations"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run description the MLflow UI shows at the top of a run
OVERRIDES_ENV = "BEATEDIT_OVERRIDES"


def tracking_uri(cfg: Config) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or cfg.mlflow.tracking_uri


PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout this code runs from: the embedded store lives here


class TrackingStoreMissing(LookupError):
    """A read-only caller (``beatedit edit``) names a SQLite store that does not exist."""


def read_tracking_uri(cfg: Config) -> str:
    """The store to *read* models from, never creating one (``beatedit edit`` from any folder).

    ``MLFLOW_TRACKING_URI``, else ``mlflow.tracking_uri``. A SQLite store must already exist:
    a relative path is looked up in the current folder, then in the project checkout (the
    embedded ``sqlite:///mlflow.db`` is relative to the repo root); opening a missing one
    would create an empty ``mlflow.db`` wherever the user happens to be.
    """
    uri = tracking_uri(cfg)
    if not uri.startswith("sqlite:///"):
        return uri
    path = Path(uri[len("sqlite:///"):])
    bases = [Path("/")] if path.is_absolute() else [Path.cwd(), PROJECT_ROOT]
    for base in bases:
        if (base / path).is_file():
            return f"sqlite:///{(base / path).resolve()}"
    where = " or ".join(str(b / path) for b in bases)
    raise TrackingStoreMissing(f"no MLflow store at {where} (tracking URI {uri}); set MLFLOW_TRACKING_URI to the "
                               "project's store, or run `make pipeline` to create one")


class TrackingServerUnreachable(ConnectionError):
    """MLFLOW_TRACKING_URI (or mlflow.tracking_uri) names an http(s) server that does not answer."""


PROBE_TIMEOUT_ENV = "BEATEDIT_MLFLOW_PROBE_TIMEOUT"  # seconds; default 5


def check_tracking_server(uri: str, timeout: float | None = None) -> None:
    """Fail within seconds, naming the URI, when an http(s) tracking server does not answer.

    MLflow's own client retries a refused connection for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES
    with backoff); one GET of ``<uri>/health`` with a short timeout tells us up front. Any HTTP
    answer (even 401/404) counts as reachable; only connection errors and timeouts fail."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    import requests

    timeout = float(os.environ.get(PROBE_TIMEOUT_ENV, "5")) if timeout is None else timeout
    url = uri.rstrip("/") + "/health"
    try:
        requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        reason = type(exc).__name__ + (": timed out" if isinstance(exc, requests.Timeout) else "")
        raise TrackingServerUnreachable(
            f"MLflow tracking server {uri} is unreachable ({reason}; probed {url} with a {timeout:g} s timeout). "
            "Start it (`mlflow server --host 127.0.0.1 --port PORT ...`, see docs/operations.md), fix MLFLOW_TRACKING_URI, "
            "or unset it to use the embedded sqlite:///mlflow.db store") from None


def configure(cfg: Config) -> str:
    """Point MLflow at the configured store and make sure the experiment exists; return its id."""
    uri = tracking_uri(cfg)
    check_tracking_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        local = uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri
        location = Path(cfg.mlflow.artifact_root).resolve().as_uri() if local else None
        exp_id = client.create_experiment(cfg.mlflow.experiment, artifact_location=location,
                                          tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    else:
        exp_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # stores made before the tag existed
            client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


GLOBAL_PARAM_SECTIONS = ("seed", "device", "torch_threads")  # logged with every stage: they shape any stage's numbers


def stage_param_sections(stage: str, dvc_yaml: Path | None = None) -> tuple[str, ...] | None:
    """The params a stage reads, as dvc.yaml declares them (``params:``; sections or dotted keys), plus the
    global keys; ``None`` (log everything) for a run that is not a DVC stage or without a dvc.yaml."""
    import yaml

    path = dvc_yaml or PROJECT_ROOT / "dvc.yaml"
    try:
        stages = yaml.safe_load(path.read_text()).get("stages", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    if stage not in stages:
        return None
    declared = [next(iter(p)) if isinstance(p, dict) else str(p) for p in stages[stage].get("params", [])]
    return tuple(dict.fromkeys([*GLOBAL_PARAM_SECTIONS, *declared]))


def stage_params(stage: str, cfg: Config) -> dict[str, Any]:
    """The flattened params a stage run logs: its own sections (``stage_param_sections``), not all of params.yaml."""
    flat = {k: ("null" if v is None else v) for k, v in flatten(config_to_dict(cfg)).items()}
    sections = stage_param_sections(stage)
    if sections is None:
        return flat
    return {k: v for k, v in flat.items() if any(k == s or k.startswith(s + ".") for s in sections)}


@contextmanager
def stage_run(stage: str, cfg: Config, overrides: list[str] | None = None, tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage: params, git commit and dvc.lock hash logged up front."""
    exp_id = configure(cfg)
    active = mlflow.active_run()
    parent = active.info.run_id if active else os.environ.get(PARENT_RUN_ENV) or None
    overrides = list(overrides or []) + [o for o in os.environ.get(OVERRIDES_ENV, "").split("\n") if o]
    run_tags = {
        "stage": stage,
        "git_commit": git_commit(),
        "dvc_lock_hash": dvc_lock_hash(),
        "overrides": json.dumps(overrides),
        **(tags or {}),
    }
    with mlflow.start_run(run_name=stage, experiment_id=exp_id, nested=parent is not None, parent_run_id=parent, tags=run_tags) as run:
        mlflow.log_params(stage_params(stage, cfg))
        for text in overrides:
            key, _, value = text.partition("=")
            mlflow.set_tag(f"override.{key}", value)
        try:
            yield run
        finally:
            publish_run_artifact(stage, run.info.run_id, exp_id)


MLFLOW_UI_ENV = "BEATEDIT_MLFLOW_UI"  # base URL of the MLflow UI for links when the store is not an http server


def run_link(run_id: str | None, experiment_id: str | None, uri: str | None = None) -> str:
    """The run's page in the MLflow UI: on the tracking server itself, else where ``make mlflow-ui`` serves."""
    if not run_id:
        return "(no MLflow run)"
    uri = uri or mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.lower().startswith(("http://", "https://")) else os.environ.get(MLFLOW_UI_ENV, "http://127.0.0.1:5000")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def publish_run_artifact(stage: str, run_id: str, experiment_id: str, max_rows: int = 30) -> None:
    """Inside a Prefect flow run: a markdown artifact ``<stage>-run`` with the run's key metrics and its MLflow link."""
    try:
        from prefect.artifacts import create_markdown_artifact
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is None:
            return
        metrics = MlflowClient().get_run(run_id).data.metrics
        keys = sorted(k for k in metrics if "/" not in k)[:max_rows]
        rows = "\n".join(f"| {k} | {metrics[k]:.4g} |" for k in keys) or "| (no metrics) | |"
        key = "".join(c if c.isalnum() else "-" for c in f"{stage}-run".lower())
        create_markdown_artifact(key=key, description=f"beatedit {stage}: key metrics and the MLflow run", markdown=(
            f"# beatedit {stage}\n\nMLflow run: {run_link(run_id, experiment_id)}\n\n| metric | value |\n|---|---|\n{rows}\n"))
    except Exception as exc:  # noqa: BLE001 - an artifact must never mask the stage's own outcome
        import logging

        logging.getLogger(__name__).warning("could not publish the %s run artifact: %s", stage, exc)


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log the numeric entries of a (possibly nested) metrics dict."""
    flat = {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({k: float(v) for k, v in flatten(metrics).items() if isinstance(v, bool)})
    if flat:
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in flat.items()}, step=step)


def log_json(obj: Any, artifact_file: str) -> None:
    mlflow.log_dict(obj, artifact_file)


def log_file(path: str | Path, artifact_path: str | None = None) -> None:
    if Path(path).exists():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_figure(fig: Any, artifact_file: str) -> None:
    mlflow.log_figure(fig, artifact_file)


def plot_definitions(plots_dir: str, dvc_yaml: Path | None = None) -> dict[str, dict]:
    """dvc.yaml's top-level data plot definitions (id -> props, ``${plots_dir}`` resolved); images are left out."""
    import yaml

    path = dvc_yaml or PROJECT_ROOT / "dvc.yaml"
    if not path.is_file():
        return {}
    resolved = yaml.safe_load(path.read_text().replace("${plots_dir}", plots_dir)).get("plots") or []
    out = {}
    for item in resolved:
        if isinstance(item, dict):
            plot_id, props = next(iter(item.items()))
            if isinstance(props, dict) and isinstance(props.get("y"), dict):
                out[plot_id] = props
    return out


def log_plots(cfg: Config, files: list[Path]) -> list[str]:
    """Log, as ``plots/<id>.png``, every dvc.yaml top-level plot drawn from ``files`` (a stage's plot CSVs), drawn
    as ``dvc plots show`` draws it (``beatedit.plots.definition_figure``); returns the artifact names."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from beatedit.plots import definition_figure

    written = {Path(f).resolve() for f in files if Path(f).is_file()}  # dvc.yaml's paths are relative to the repo root = cwd
    logged = []
    for plot_id, definition in plot_definitions(str(cfg.plots_dir)).items():
        if not {Path(f).resolve() for f in definition["y"]} <= written:
            continue
        tables = {f: pd.read_csv(f) for f in definition["y"]}
        needed = {f: {definition["x"], *([c] if isinstance(c, str) else c)} for f, c in definition["y"].items()}
        if any(t.empty or not needed[f] <= set(t.columns) for f, t in tables.items()):
            continue  # e.g. DPO writes no PPO training curves
        fig = definition_figure(definition, tables)
        log_figure(fig, f"plots/{plot_id}.png")
        plt.close(fig)
        logged.append(f"plots/{plot_id}.png")
    return logged


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write a DVC metrics file (JSON) atomically and log it to the active run; the run's description
    (``mlflow.note.content``) becomes the stage's headline figures (``beatedit.summary``)."""
    path = atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if mlflow.active_run():
        log_metrics(metrics)
        mlflow.log_artifact(str(path), artifact_path="metrics")
        describe_run(Path(path).stem, metrics)
    return path


def describe_pipeline(metrics: dict[str, dict[str, Any]]) -> None:
    """The pipeline run's description: the headline table ``make pipeline`` ends with (every stage's file)."""
    from beatedit.summary import headline_rows

    rows = headline_rows(metrics)
    if rows:
        mlflow.set_tag(NOTE_TAG, "\n".join(f"- **{label}**: {text}" for label, text in rows))


def describe_run(stem: str, metrics: dict[str, Any], extra: str = "") -> None:
    """Set the active run's description to the headline figures of one metrics file (if it has any) and ``extra``."""
    from beatedit.summary import headline_rows

    lines = [f"- **{label}**: {text}" for label, text in headline_rows({stem: metrics})] + ([extra] if extra else [])
    if lines:
        mlflow.set_tag(NOTE_TAG, "\n".join(lines))
