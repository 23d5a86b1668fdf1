"""Real browser (Debian Chromium through Playwright): a listener uploads a small generated song, gets ranked
variations rendered by the production renderer, plays them side by side and picks one; the vote store then holds
the pick as preferences (chosen over each other variation), and a bad upload shows the server's message."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from app.variations import page_renderer
from beatedit.config import Config
from beatedit.feedback.app import ServerThread, create_app
from beatedit.feedback.db import Pair, Vote, open_db
from beatedit.feedback.demo import build_demo_renders
from beatedit.feedback.uploads import UploadConfig
from tests.songkit import write_outside_song

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required", "--mute-audio"]

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does this)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python package) not installed")

SECRET = "browser-upload-secret-0123456789"


@pytest.fixture()
def browser_ctx(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def test_upload_listen_and_pick_in_a_real_browser(tmp_path, browser_ctx, monkeypatch):
    from models.policy import policy_for_env
    from models.reward_model import RewardModel

    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    cfg = Config()
    torch.manual_seed(0)
    policy = policy_for_env(cfg.env, cfg.rlhf.policy)
    torch.manual_seed(1)
    reward = RewardModel(d_model=16, n_layers=1, n_heads=2).eval()
    song = write_outside_song(tmp_path / "my song.wav", seed=777)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all\n" * 20)
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=1, seconds=0.5)
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    uploads = UploadConfig(tmp_path / "uploads", page_renderer(cfg, policy, reward), renderer_id="browser", max_bytes=16 * 2 ** 20)
    errors: list[str] = []
    with ServerThread(create_app(renders, db_url, SECRET, uploads=uploads, min_listen_s=0.5)) as srv:
        page = browser_ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{srv.url}/?rater=uploader")
        page.wait_for_selector("#upload:not([hidden])", timeout=15_000)
        # a bad upload: the server's reason is shown
        page.set_input_files("#upload-file", str(text))
        page.fill("#upload-target", "15")
        page.click("#upload-submit")
        page.wait_for_function("() => document.querySelector('#upload-status').textContent.includes('not a WAV, FLAC, Ogg or MP3')",
                               timeout=30_000)
        # the real song, 3 variations of 15 s
        page.set_input_files("#upload-file", str(song))
        page.fill("#upload-n", "3")
        page.click("#upload-submit")
        page.wait_for_function("() => document.querySelectorAll('#variations li').length === 3", timeout=300_000)
        assert "best-ranked first" in page.locator("#upload-status").inner_text()
        # the listening gate: nothing can be picked before every variation was heard
        assert page.locator("#variations li[data-k='2'] .pick").is_disabled()
        assert "Listen to variations 1, 2, 3" in page.locator("#upload-gate").inner_text()
        # side by side: variation 1 plays, then 2 takes over at the same position while 1 pauses
        page.click("#variations li[data-k='1'] .listen")
        page.wait_for_function("() => document.querySelectorAll('#variations audio')[0].currentTime > 0.7", timeout=30_000)
        page.click("#variations li[data-k='2'] .listen")
        page.wait_for_function("() => { const a = document.querySelectorAll('#variations audio');"
                               " return a[0].paused && a[1].currentTime > 1.4; }", timeout=30_000)
        assert page.locator("#variations li[data-k='2'] .pick").is_disabled()  # variation 3 not heard yet
        page.wait_for_function("() => document.getElementById('upload-gate').textContent.startsWith('Listen to variation 3 ')",
                               timeout=30_000)
        page.click("#variations li[data-k='3'] .listen")
        page.wait_for_function("() => !document.querySelector(\"#variations li[data-k='2'] .pick\").disabled", timeout=30_000)
        page.click("#variations li[data-k='2'] .pick")
        page.wait_for_function("() => document.querySelector('#upload-status').textContent.includes('variation 2 saved as preferred over the other 2')",
                               timeout=30_000)
        assert page.locator("#variations li.picked").get_attribute("data-k") == "2"
        page.close()
    assert not errors, errors
    db = open_db(db_url)
    try:
        with db.read() as s:
            votes = s.query(Vote).order_by(Vote.id).all()
            assert len(votes) == 2 and {v.rater_id for v in votes} == {"uploader"} and {v.choice for v in votes} == {"a"}
            pairs = [s.get(Pair, v.pair_id) for v in votes]
            assert all(p.wav_a.endswith("variation.2.wav") and not p.active for p in pairs)
            assert sorted(p.wav_b.rsplit("/", 1)[1] for p in pairs) == ["variation.1.wav", "variation.3.wav"]
            # what the page reported: 1 heard from the start, 2 from where 1 stopped (so briefly here)
            assert votes[0].listened_b > 0.5 and votes[0].listened_a > 0.5
    finally:
        db.dispose()
    assert np.isfinite(sf.read(next((tmp_path / "uploads").rglob("variation.1.wav")))[0]).all()
