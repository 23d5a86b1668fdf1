"""Real browser test: Debian's headless Chromium driven by Playwright against the feedback server
on a loopback port. Loads the page, plays audio, votes by keyboard and by click, and checks the
votes in the SQLite database and in the exported preference table."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from beatedit.feedback import export_votes
from beatedit.feedback.app import ServerThread, create_app
from beatedit.feedback.db import Vote, open_db
from beatedit.feedback.demo import build_demo_renders

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required", "--mute-audio"]

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does this)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python package) not installed")

SECRET = "browser-test-secret-0123456789"


@pytest.fixture()
def browser_ctx(tmp_path):
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))  # fresh user-data-dir
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _votes(db_url):
    db = open_db(db_url)
    try:
        with db.read() as s:
            return s.query(Vote).order_by(Vote.id).all()
    finally:
        db.dispose()


def test_listen_and_vote_in_a_real_browser(tmp_path, browser_ctx):
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=2, pairs_per_song=2, seconds=1.5)  # 4 pairs
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    errors: list[str] = []
    with ServerThread(create_app(renders, db_url, SECRET, min_listen_s=0)) as srv:  # gate off: this test is about keys and clicks
        page = browser_ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{srv.url}/?rater=browser-tester")  # sets the rater cookie, redirects to /
        assert page.url == f"{srv.url}/"
        page.wait_for_selector("#pair:not([hidden])", timeout=15_000)
        page.wait_for_function("() => document.querySelector('#progress').textContent.includes('remaining in your queue: 4')")
        assert page.locator("#song-id").inner_text().startswith("song_")

        # play A by clicking; audio really advances
        page.click("#play-a")
        page.wait_for_function("() => document.getElementById('audio-a').currentTime > 0.2", timeout=15_000)
        assert page.evaluate("document.getElementById('audio-a').played.length") >= 1
        # 'x' switches to B at the same position and keeps playing
        page.keyboard.press("x")
        page.wait_for_function("() => document.getElementById('audio-b').currentTime > 0.25 && document.getElementById('audio-a').paused", timeout=15_000)

        # vote 1 by keyboard: strength 3, a comment, then 'a'
        page.keyboard.press("3")
        assert page.get_attribute("[data-strength='3']", "aria-pressed") == "true"
        page.fill("#comment", "tighter ending")
        page.press("#comment", "Escape")  # leave the text box; keys are shortcuts again
        page.keyboard.press("a")
        page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('This session: 1 vote ·')")

        # vote 2: space toggles play/pause of the active player, then a click on "B is better"
        page.keyboard.press(" ")
        page.wait_for_function("() => document.getElementById('audio-a').currentTime > 0.1", timeout=15_000)
        page.keyboard.press(" ")
        page.wait_for_function("() => document.getElementById('audio-a').paused")
        page.click("#vote-b")
        page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('This session: 2 votes')")

        # vote 3: tie by key; vote 4: skip by click -> queue empty
        page.keyboard.press("t")
        page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('This session: 3 votes')")
        page.click("#vote-skip")
        page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        assert "remaining in your queue: 0" in page.locator("#progress").inner_text()
        page.close()
    assert not errors, errors

    votes = _votes(db_url)
    assert [v.shown_choice for v in votes] == ["a", "b", "tie", "skip"]
    assert {v.rater_id for v in votes} == {"browser-tester"}
    first = votes[0]
    assert (first.strength, first.comment) == (3, "tighter ending")
    assert first.listened_a is not None and first.listened_a + first.listened_b > 0.2  # the page reported what was heard
    assert votes[1].strength is None and votes[2].choice == "tie"

    out = tmp_path / "human_pairs.parquet"
    rep = export_votes(db_url, out)
    assert (rep.exported, rep.skipped) == (3, 1)
    df = pd.read_parquet(out)
    assert list(df["rater"]) == ["browser-tester"] * 3 and set(df["source"]) == {"human"}
    want = [{"a": 0.0, "b": 1.0, "tie": 0.5}[v.choice] for v in votes[:3]]
    assert list(df["choice"]) == want
    assert df["strength"].iloc[0] == pytest.approx(1.0)


def test_rater_token_sign_in_form(tmp_path, browser_ctx):
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=1, seconds=0.5)
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    token = "carol-secret-token-0123456789"
    with ServerThread(create_app(renders, db_url, SECRET, rater_tokens={"carol": token}, min_listen_s=0)) as srv:
        page = browser_ctx.new_page()
        page.goto(srv.url + "/")
        page.wait_for_selector("#login:not([hidden])", timeout=15_000)
        page.fill("#login-token", "wrong-token-000000000000")
        page.click("#login-form button")
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('sign-in failed')")
        page.fill("#login-token", token)
        page.click("#login-form button")
        page.wait_for_selector("#pair:not([hidden])", timeout=15_000)
        page.keyboard.press("b")
        page.wait_for_selector("#done:not([hidden])", timeout=15_000)
        page.close()
    (v,) = _votes(db_url)
    assert (v.rater_id, v.shown_choice) == ("carol", "b")


# --- issue 20.6: a vote is enabled only once both sides were heard; export drops unheard votes -------------
def _disabled(page, sel: str) -> bool:
    return page.evaluate(f"document.querySelector('{sel}').disabled")


def test_vote_unlocks_only_after_both_sides_heard_and_export_drops_unheard(tmp_path, browser_ctx):
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=2, seconds=3.0)  # 2 pairs of 3 s edits, no seams
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    with ServerThread(create_app(renders, db_url, SECRET, min_listen_s=1.0)) as srv:
        page = browser_ctx.new_page()
        page.goto(f"{srv.url}/?rater=gatekeeper")
        page.wait_for_selector("#pair:not([hidden])", timeout=15_000)
        assert "What to listen for" in page.locator("#guide").inner_text()
        for sel in ("#vote-a", "#vote-b", "#vote-tie"):
            assert _disabled(page, sel), f"{sel} enabled before anything was heard"
        assert not _disabled(page, "#vote-skip")
        assert "Listen to A and B" in page.locator("#gate").inner_text()
        page.keyboard.press("a")  # the key is refused too
        page.wait_for_timeout(300)
        assert _votes(db_url) == []

        page.click("#play-a")
        page.wait_for_function("() => document.getElementById('audio-a').currentTime > 1.2", timeout=15_000)
        page.evaluate("document.getElementById('audio-a').pause()")
        assert _disabled(page, "#vote-a"), "enabled after hearing only A"
        page.click("#play-b")
        page.wait_for_function("() => !document.querySelector('#vote-a').disabled", timeout=15_000)
        page.evaluate("document.getElementById('audio-b').pause()")
        page.keyboard.press("b")
        page.wait_for_function("() => document.querySelector('#progress').textContent.startsWith('This session: 1 vote ·')")
        # the next pair starts locked again
        page.wait_for_function("() => document.querySelector('#vote-a').disabled")

        # a client that ignores the page (a script) can still post a vote with 0.2 s heard: the export drops it
        status = page.evaluate("""async () => {
            const n = await (await fetch('/api/next?n=1')).json();
            const r = await fetch('/api/vote', {method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({token: n.items[0].token, choice: 'a', listened_a: 0.2, listened_b: 0.2})});
            return r.status; }""")
        assert status == 201
        page.close()

    votes = _votes(db_url)
    assert [v.shown_choice for v in votes] == ["b", "a"]
    assert min(votes[0].listened_a, votes[0].listened_b) >= 1.0  # the server stored what the page measured
    out = tmp_path / "human_pairs.parquet"
    rep = export_votes(db_url, out, min_listened_s=1.0)
    assert (rep.exported, rep.dropped_unheard) == (1, 1)
    assert len(pd.read_parquet(out)) == 1
    everything = export_votes(db_url, tmp_path / "all.parquet", min_listened_s=0)
    assert (everything.exported, everything.dropped_unheard) == (2, 0)
