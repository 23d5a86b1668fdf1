"""Issue 18.3: the human loop end to end, with real tools and a real browser.

A tiny corpus goes through real ``dvc repro reward`` in a temp git repo; a listening set is built
from it with the evaluate stage's code (``beatedit.feedback.listening.build_listening_set``); Chromium
votes on it through the page (the listening gate included); ``beatedit feedback export`` writes the
human pairs; ``dvc repro`` re-runs preferences and reward (the votes file is a declared dependency),
``metrics/preferences.json`` counts ``pairs_source_human`` and ``metrics/reward.json`` the human pairs
the reward model trained on; the ``retrain`` deployment's export step picks up a new vote and drops
an unheard one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from beatedit.config import Config, config_to_dict
from beatedit.preferences.pairs import split_of
from tasks.telemetry import disable_telemetry
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required", "--mute-audio"]
SECRET = "human-loop-test-secret-0123456789"
COPY = ["beatedit", "models", "tasks", "flows", "dvc.yaml", "pyproject.toml", ".dvcignore", "data/feedback/human_pairs.parquet",
        "data/feedback/analyses/README.md"]  # the committed votes table and uploads' analyses folder: declared deps
SONGS = ["song_000", "song_001", "song_002"]
FRACTIONS = [0.5, 0.5, 0.0]  # train / validation only: the gate needs validation pairs, the loop needs a train song


def _split_seed() -> int:
    """A split seed that puts the tiny corpus's songs in both train and validation."""
    for seed in range(1000):
        splits = [split_of(s, FRACTIONS, seed) for s in SONGS]
        if splits.count("train") >= 1 and splits.count("validation") >= 1:
            return seed
    raise AssertionError("no split seed found")


def tiny_params() -> dict:
    p = config_to_dict(Config())
    p["data"]["corpus"].update(n_songs=len(SONGS), min_seconds=20.0, max_seconds=26.0, hard_share=0.0)  # SONGS: ordinary ids only
    p["preferences"].update(candidates_per_song=8, pairs_per_song=8, ood_pairs_per_song=2, targets_per_song=1, split_fractions=FRACTIONS,
                            split_seed=_split_seed())
    p["reward"].update(d_model=16, n_layers=1, n_heads=2, epochs=2, batch_size=8, warmup_steps=1, patience=2, min_val_accuracy=0.0,
                       min_val_to_ceiling=0.0, min_ood_accuracy=0.0, min_score_std=0.0, max_saturated_fraction=1.0, max_ece=1.0,
                       min_spearman=-1.0)
    p["ops"].update(feedback_min_listened_s=0.5)
    return p


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def loop_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("looprepo")
    for name in COPY:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, dst)
    votes = pd.read_parquet(root / "data/feedback/human_pairs.parquet")  # the repo's own votes are real data: the loop starts empty
    votes.iloc[:0].to_parquet(root / "data/feedback/human_pairs.parquet", index=False)
    (root / ".dvc").mkdir()
    shutil.copy(REPO / ".dvc" / "config", root / ".dvc" / "config")
    (root / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n/.prefect/\n__pycache__/\n/votes.db*\n/listening/\n")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    env = disable_telemetry({**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(root)},
                            force=True)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BEATEDIT_PARENT_RUN_ID", None)
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    run(["git", "init", "-q"], root, env)
    run(git + ["add", "-A"], root, env)
    run(git + ["commit", "-qm", "init"], root, env)
    first = run([sys.executable, "-m", "dvc", "repro", "reward"], root, env)
    return root, env, first


def _build_listening_set(root: Path, out: Path) -> dict:
    """The evaluate stage's listening-set code on a train song's edits (search as the candidate vs fade and heuristic)."""
    from beatedit.audio.song import SongAnalysis
    from beatedit.config import load_config
    from beatedit.editing.editors import edit_with
    from beatedit.feedback.listening import build_listening_set
    from beatedit.judging.statistics import evaluate_editors
    from beatedit.paths import StagePaths

    cfg = load_config(root / "params.yaml")
    paths = StagePaths.from_config(cfg)
    train = [s for s in SONGS if split_of(s, FRACTIONS, cfg.preferences.split_seed) == "train"][:1]
    songs = [SongAnalysis.load(root / paths.feature_file(s)) for s in train]
    editors = {name: (lambda kind: lambda song, target: edit_with(kind, song, target, None, cfg.env, cfg.render.crossfade_ms))(kind)
               for name, kind in (("candidate", "search"), ("fade", "fade"), ("heuristic", "heuristic"))}
    df = evaluate_editors(songs, {s.song_id: [0.5, 0.7] for s in songs}, editors, lambda song, edit, target: {}, progress=False)
    sources = {s.song_id: str(root / s.source_path) if not Path(s.source_path).is_absolute() else s.source_path for s in songs}
    return build_listening_set(df, sources, out, n_songs=1, max_pairs=2, render_cfg=cfg.render, split="train")


def test_human_loop_end_to_end(loop_repo, tmp_path, monkeypatch, request):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    from beatedit.feedback.app import ServerThread, create_app
    from beatedit.feedback.db import Vote, open_db

    root, env, first = loop_repo
    assert "Running stage 'reward'" in first.stdout
    prefs0 = json.loads((root / "metrics/preferences.json").read_text())
    assert prefs0.get("pairs_source_human", 0) == 0
    assert json.loads((root / "metrics/reward.json").read_text())["train_pairs_human"] == 0

    # 1. the listening set, built by the evaluate stage's code
    listening = root / "listening"
    summary = _build_listening_set(root, listening)
    assert summary["pairs"] == 2 and summary["songs"] == 1
    manifest = json.loads((listening / "pairs.json").read_text())
    assert all(r["a"]["kind"] == "candidate" and r["b"]["kind"] in ("fade", "heuristic") and r["original"].endswith("original.wav")
               for r in manifest)

    # 2. a real browser votes on it, through the listening gate
    db_url = f"sqlite:///{root / 'votes.db'}"
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    with ServerThread(create_app(listening, db_url, SECRET, min_listen_s=0.5)) as srv, sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = ctx.new_page()
            page.goto(f"{srv.url}/?rater=loop-tester")
            for k, key in enumerate(("a", "b")):
                page.wait_for_selector("#pair:not([hidden])", timeout=15_000)
                page.wait_for_function("() => document.querySelector('#vote-a').disabled")
                assert not page.locator("#original-box").is_hidden()  # the original is there for reference
                item = page.evaluate("window.beateditFeedback.item")
                assert item["listen"]["min_listen_s"] == 0.5 and {"a", "b"} <= set(item["listen"])
                for side in ("a", "b"):
                    page.click(f"#play-{side}")
                    page.wait_for_function(f"() => document.getElementById('audio-{side}').currentTime > 0.7", timeout=15_000)
                page.evaluate("document.getElementById('audio-b').pause()")
                page.wait_for_function("() => !document.querySelector('#vote-a').disabled", timeout=15_000)
                page.keyboard.press(key)
                page.wait_for_function(f"() => document.querySelector('#progress').textContent.startsWith('This session: {k + 1} vote')")
            page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        finally:
            ctx.close()
    db = open_db(db_url)
    try:
        with db.read() as s:
            votes = s.query(Vote).order_by(Vote.id).all()
    finally:
        db.dispose()
    assert len(votes) == 2 and all(min(v.listened_a, v.listened_b) >= 0.5 for v in votes)

    # 3. export (the CLI), then dvc sees the votes file changed and re-runs preferences + reward only
    out = run([sys.executable, "-m", "beatedit.feedback", "export", "--db", db_url, "-o", "data/feedback/human_pairs.parquet",
               "--min-listened", "0.5"], root, env)
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert (rep["exported"], rep["dropped_unheard"], rep["total"]) == (2, 0, 2)
    status = run([sys.executable, "-m", "dvc", "status", "preferences"], root, env)
    assert "human_pairs.parquet" in status.stdout
    again = run([sys.executable, "-m", "dvc", "repro", "reward"], root, env)
    assert "Running stage 'preferences'" in again.stdout and "Running stage 'reward'" in again.stdout
    assert "Running stage 'features'" not in again.stdout and "Running stage 'corpus'" not in again.stdout
    prefs = json.loads((root / "metrics/preferences.json").read_text())
    assert prefs["pairs_source_human"] == 2 and prefs["n_pairs"] == prefs0["n_pairs"] + 2
    rew = json.loads((root / "metrics/reward.json").read_text())
    assert rew["train_pairs_human"] == 2  # trained on, weighted reward.human_weight
    assert rew["n_human_votes"] == 2 and 0.0 <= rew["human_agreement"] <= 1.0  # what the model makes of the votes
    assert 0.0 <= rew["champion_human_agreement"] <= 1.0  # ... and what the champion (trained before them) made of them
    table = pd.read_parquet(root / "data/preferences/pairs.parquet")
    assert (table["source"] == "human").sum() == 2

    # 4. the scheduled retrain's export step: a new heard vote is added, an unheard one dropped; no force needed (DVC tracks the file)
    from beatedit.feedback.queue import ensure_rater, issue_next, submit_vote, sync_manifest
    from beatedit.feedback.security import coerce_secret, verify_issue
    request.getfixturevalue("mlflow_store")
    from prefect.testing.utilities import prefect_test_harness

    from flows.deployments import retrain

    key = coerce_secret(SECRET)
    db = open_db(db_url)
    try:
        sync_manifest(db, listening)
        for rater, heard in (("late-listener", 3.0), ("skimmer", 0.1)):
            ensure_rater(db, rater)
            it = issue_next(db, key, listening, rater)[0]
            submit_vote(db, verify_issue(key, it.token), "a", listened_a=heard, listened_b=heard)
    finally:
        db.dispose()
    monkeypatch.chdir(root)
    with prefect_test_harness(server_startup_timeout=300):  # its own, started only now, with room for a loaded machine
        result = retrain(params="params.yaml", feedback_db=db_url, dry_run=True)
    fb = result["feedback"]
    assert (fb["exported"], fb["added"], fb["dropped_unheard"], fb["total"]) == (3, 1, 1, 3)
    assert result["force"] == []  # the votes file is a dvc.yaml dependency: `dvc repro` alone re-runs preferences
