"""The front half of the pipeline through real `dvc repro` in a temp git repo (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from beatedit.config import Config, config_to_dict
from tasks.telemetry import disable_telemetry
from tests.conftest import REPO

pytestmark = pytest.mark.slow

COPY = ["beatedit", "models", "tasks", "flows", "dvc.yaml", "pyproject.toml", ".dvcignore"]


def tiny_params() -> dict:
    p = config_to_dict(Config())
    p["data"]["corpus"].update(n_songs=2, min_seconds=20.0, max_seconds=30.0)
    p["features"]["realmusic_check"] = False  # the 47-piece real-music check costs ~2 min; tests/data/test_realmusic.py covers it
    return p


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvcrepo")
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, root / name)
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    shutil.copy(REPO / ".dvc" / "plots_page.html", root / ".dvc" / "plots_page.html")  # plots.html_template
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.prefect/\n__pycache__/\n")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    env = disable_telemetry({**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(root)},
                            force=True)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BEATEDIT_PARENT_RUN_ID", None)
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    run(["git", "init", "-q"], root, env)
    run(git + ["add", "-A"], root, env)
    run(git + ["commit", "-qm", "init"], root, env)
    first = run([sys.executable, "-m", "dvc", "repro", "features"], root, env)
    return root, env, first


def test_repro_runs_corpus_stems_features(dvc_repo):
    root, env, first = dvc_repo
    assert "Running stage 'corpus'" in first.stdout and "Running stage 'features'" in first.stdout
    corpus = json.loads((root / "metrics/corpus.json").read_text())
    assert corpus["songs"] == 2 and corpus["total_seconds"] > 30
    feats = json.loads((root / "metrics/features.json").read_text())
    assert feats["songs"] == 2 and feats["quarantined"] == 0
    assert feats["beat_f_measure"] > 0.8
    assert (root / "dvc.lock").exists()


def test_second_repro_skips_every_stage(dvc_repo):
    root, env, _ = dvc_repo
    again = run([sys.executable, "-m", "dvc", "repro", "features"], root, env)
    assert "Running stage" not in again.stdout
    status = run([sys.executable, "-m", "dvc", "status", "features"], root, env)
    assert "changed" not in status.stdout


def test_dvc_reporting_commands(dvc_repo):
    root, env, _ = dvc_repo
    metrics = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root, env)
    shown = json.loads(metrics.stdout)
    assert any("metrics/corpus.json" in json.dumps(v) for v in shown.values())
    dag = run([sys.executable, "-m", "dvc", "dag", "features"], root, env)
    assert "corpus" in dag.stdout and "stems" in dag.stdout
    params = run([sys.executable, "-m", "dvc", "params", "diff"], root, env)
    assert params.returncode == 0
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(root / "dvc_plots")], root, env)
    page = (root / "dvc_plots" / "index.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in page  # .dvc/plots_page.html: vega's minus signs are not mojibake
    # the front half's two images, each once: the beat grid and the real-music scatter (a placeholder saying the check is off)
    assert page.count('<img src="static/') == 2 and "beat_grid" in page and "realmusic_beat_f" in page


def test_corpus_stage_logged_to_mlflow(dvc_repo):
    from mlflow.tracking import MlflowClient

    root, _, _ = dvc_repo
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("beatedit")
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert {"corpus", "stems", "features"} <= set(runs)
    corpus = runs["corpus"]
    assert len(corpus.data.tags["git_commit"]) == 40
    assert corpus.data.tags["dvc_lock_hash"]
    assert corpus.data.params["data.corpus.n_songs"] == "2"
    assert corpus.data.metrics["songs"] == 2.0
    assert "manifest.json" in [a.path for a in client.list_artifacts(corpus.info.run_id)]
    assert runs["stems"].data.tags["stems_backend"] == "hpss"


def test_malformed_params_fail_clearly(dvc_repo, tmp_path):
    root, env, _ = dvc_repo
    bad = tmp_path / "bad.yaml"
    p = tiny_params()
    p["data"]["corpus"]["n_sngs"] = 3
    bad.write_text(yaml.safe_dump(p))
    proc = run([sys.executable, "-m", "flows.corpus", "--params", str(bad)], root, env, check=False)
    assert proc.returncode == 2
    assert "data.corpus.n_sngs" in proc.stderr and "bad.yaml" in proc.stderr
