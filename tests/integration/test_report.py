"""`make report` end to end on a tiny config: real `dvc repro report` in a temp git repo (no mocks).

The whole chain runs (corpus -> ... -> rlhf, the frozen test set, the report with 2 seeds: the rlhf stage's own
policy and one trained by the report), then the report's files are checked: metrics/report.json with seeds x songs
CIs under both judges and best-of-N, the plot files, the markdown table, and that `make pipeline`'s stages never
built the frozen test set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from beatedit.config import Config, config_to_dict
from tasks.telemetry import disable_telemetry
from tests.conftest import REPO

pytestmark = pytest.mark.slow

COPY = ["beatedit", "models", "tasks", "flows", "dvc.yaml", "pyproject.toml", ".dvcignore",
        "data/feedback/human_pairs.parquet", "data/feedback/analyses/README.md"]  # declared deps of preferences / reward


def tiny_report_params() -> dict:
    p = config_to_dict(Config())
    p["data"]["corpus"].update(n_songs=8, min_seconds=20.0, max_seconds=26.0)
    p["features"]["realmusic_check"] = False  # the 47-piece real-music check costs minutes; tests/data/test_realmusic.py covers it
    p["preferences"].update(candidates_per_song=8, pairs_per_song=8, ood_pairs_per_song=1, targets_per_song=1)
    p["reward"].update(d_model=16, n_layers=1, n_heads=2, epochs=1, max_beats=128, window_stride=64,
                       # the gate is not what this test checks: a 1-epoch model on 8 songs passes anything
                       min_val_accuracy=0.0, min_val_to_ceiling=0.0, min_ood_accuracy=0.0, min_score_std=0.0,
                       max_saturated_fraction=1.0, max_ece=1.0, min_spearman=-1.0)
    p["rlhf"].update(compare_algorithms=False, n_envs=2, rollout_steps=16, total_steps=64, n_minibatches=1, update_epochs=1,
                     eval_interval=1, checkpoint_every=1, n_eval_songs=1, bf16=False)
    p["rlhf"]["policy"].update(d_model=8, n_layers=1, hidden=16)
    p["rlhf"]["bc"].update(epochs=1, samples_per_song=1, val_fraction=0.0)
    p["evaluate"].update(n_bootstrap=20, targets_per_song=1)
    p["report"].update(n_songs=3, judge_songs=2, seeds=[0, 1], best_of=[1, 2], real_music=False, n_bootstrap=50, targets_per_song=1)
    return json.loads(json.dumps(p))


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def report_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("reportrepo")
    for name in COPY:
        src = REPO / name
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, root / name)
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.prefect/\n__pycache__/\n/artifacts/rlhf_runs/\n")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_report_params(), sort_keys=False))
    env = disable_telemetry({**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(root),
                             "PREFECT_HOME": str(root / ".prefect")}, force=True)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BEATEDIT_PARENT_RUN_ID", None)
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    run(["git", "init", "-q"], root, env)
    run(git + ["add", "-A"], root, env)
    run(git + ["commit", "-qm", "init"], root, env)
    proc = run([sys.executable, "-m", "dvc", "repro", "report"], root, env)
    return root, env, proc


def test_report_runs_end_to_end_with_seeds_x_songs_cis(report_repo):
    root, _, proc = report_repo
    m = json.loads((root / "metrics" / "report.json").read_text())
    assert m["n_seeds"] == 2 and m["n_songs"] == 3 and m["n_items"] == 3
    for prefix in ("listener", "judge"):
        for opp in ("search", "fade", "heuristic"):
            k = f"{prefix}_win_rate_vs_{opp}"
            assert 0.0 <= m[f"{k}_ci_low"] <= m[k] <= m[f"{k}_ci_high"] <= 1.0, k
            assert f"{k}_seed0" in m and f"{k}_seed1" in m
    assert "best_of_1_win_rate_vs_search" in m and "best_of_2_win_rate_vs_search" in m and "best_of_gain_vs_search" in m
    assert m["real_music_skipped"] is True
    df = pd.read_parquet(root / "artifacts" / "report" / "results.parquet")
    assert {"policy_seed0", "policy_seed1", "search", "fade", "heuristic", "best_of_1_seed0", "best_of_2_seed1"} <= set(df.editor)
    assert df.loc[df.editor == "policy_seed1", "judge_total"].notna().sum() == 2 == m["n_judged_songs"]  # report.judge_songs
    # seed 1 was trained by the report (its own BC reference and policy), seed 0 is the rlhf stage's policy
    assert (root / "artifacts" / "report" / "policies" / "seed_1" / "policy.pt").exists()
    assert not (root / "artifacts" / "report" / "policies" / "seed_0").exists()
    table = (root / "artifacts" / "report" / "table.md").read_text()
    assert "seeds x songs bootstrap" in table and "| frozen test, independent judge | search |" in table
    assert (root / "plots" / "report" / "win_rates.png").stat().st_size > 1000
    bars = pd.read_csv(root / "plots" / "report" / "win_rates.csv")
    assert {"bar", "win_rate", "ci_low", "ci_high"} <= set(bars.columns) and len(bars) >= 6
    frozen = json.loads((root / "metrics" / "frozen_testset.json").read_text())
    assert frozen["songs"] == 3 and frozen["corpus_seed"] != tiny_report_params()["data"]["corpus"]["seed"]
    # the frozen test set is its own corpus: other audio than the training corpus
    main_ids = {p.name for p in (root / "data" / "corpus" / "audio").iterdir()}
    assert (root / "data" / "frozen" / "corpus" / "audio").is_dir() and main_ids
    assert not (root / "metrics" / "eval.json").exists()  # `dvc repro report` needs no evaluate stage


def test_pipeline_stage_list_leaves_the_report_out(report_repo):
    root, env, _ = report_repo
    out = subprocess.run([sys.executable, "-c", "from flows.pipeline import dvc_stages; print(dvc_stages())"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert "frozen_testset" not in out.stdout and "report" not in out.stdout and "evaluate" in out.stdout, out.stderr[-2000:]

