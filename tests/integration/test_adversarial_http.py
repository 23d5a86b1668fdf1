"""Adversarial tests of the feedback server and its CLI (issue 19, items 7-10): the real server on
loopback (uvicorn in a thread, or the real `beatedit feedback serve` process), a real SQLite file.
Every malformed input must be a 4xx or a clean refusal at start-up, never a 500 or a traceback."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from beatedit.feedback.app import ServerThread, create_app
from beatedit.feedback.demo import build_demo_renders
from beatedit.feedback.security import IssueClaims, sign_issue

REPO = Path(__file__).resolve().parents[2]
SECRET = "adversarial-secret-0123456789abcdef"
KEY = SECRET.encode()
TOKENS = {"alice": "alice-rater-token-0123456789", "bob": "bob-rater-token-0123456789xx"}


@pytest.fixture()
def renders(tmp_path):
    d = tmp_path / "renders"
    build_demo_renders(d, n_songs=3, pairs_per_song=2, seconds=0.3)  # 6 pairs
    return d


@pytest.fixture()
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fb' / 'votes.db'}"


def db_count(db_url: str, table: str) -> int:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`beatedit ...` as the console script runs it (app.cli), in a real process."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "BEATEDIT_FEEDBACK_SECRET": SECRET, **(env or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=e, timeout=180, cwd=REPO)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- item 7: bearer tokens never reach the access log --------------------------------------------------------
def test_access_log_never_shows_rater_or_issue_tokens(renders, db_url, tmp_path):
    tok_file = tmp_path / "raters.txt"
    tok_file.write_text("".join(f"{r}:{t}\n" for r, t in TOKENS.items()))
    log_path, port = tmp_path / "server.log", _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BEATEDIT_FEEDBACK_SECRET": SECRET}
    with open(log_path, "w") as fh:  # the default log level: uvicorn's access log is on
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "feedback", "serve", "--renders", str(renders), "--db", db_url,
                                 "--port", str(port), "--rater-tokens", str(tok_file)], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        c = httpx.Client(base_url=url, timeout=20)
        assert c.get(f"/?token={TOKENS['alice']}").status_code == 303
        assert c.get(f"/?foo=1&token={TOKENS['bob']}&x=2").status_code == 303
        (item,) = c.get("/api/next").json()["items"]
        assert c.get(item["audio"]["a"]).status_code == 200
        assert c.get("/?token=not-a-real-token-but-secret-looking").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    log = log_path.read_text()
    assert "GET /?token=" in log and "/api/audio/" in log, log  # the access log is on and was written
    for secret in (*TOKENS.values(), item["token"], "not-a-real-token-but-secret-looking"):
        assert secret not in log, f"{secret!r} leaked into the access log:\n{log}"
    assert "Traceback" not in log


# --- item 8: no 500s from out-of-range input -------------------------------------------------------------------
def test_oversized_query_parameters_are_4xx(renders, db_url):
    for tokens in (None, TOKENS):
        app = create_app(renders, db_url, SECRET, rater_tokens=tokens)
        with ServerThread(app) as srv:
            c = httpx.Client(base_url=srv.url, timeout=20)
            for q in ({"rater": "a" * 65}, {"token": "t" * 600}, {"rater": "a" * 5000}, {"token": "x" * 513, "rater": "bob"}):
                r = c.get("/", params=q)
                assert 400 <= r.status_code < 500, (tokens is not None, q.keys(), r.status_code, r.text)
                assert r.json()["error"] in ("invalid_request", "unauthenticated")


def test_forged_huge_issue_ids_and_times_are_4xx(renders, db_url):
    """A token signed with the server's key but carrying out-of-range numbers (2**70) is a 400."""
    with ServerThread(create_app(renders, db_url, SECRET)) as srv:
        c = httpx.Client(base_url=srv.url, timeout=20)
        assert c.post("/api/session", json={"rater": "alice"}).status_code == 200
        (item,) = c.get("/api/next").json()["items"]
        now = int(time.time())
        for i, t in ((2**70, now), (-(2**70), now), (1, 2**70), (1, -(2**70)), (True, now)):
            tok = sign_issue(KEY, IssueClaims(issue_id=i, pair_id="p", rater="alice", nonce="n", issued_at=t))
            r = c.post("/api/vote", json={"token": tok, "choice": "a"})
            assert r.status_code == 400 and r.json()["error"] == "bad_token", (i, t, r.status_code, r.text)
            assert c.get(f"/api/audio/{tok}/a").status_code == 400
        assert c.post("/api/vote", json={"token": item["token"], "choice": "a"}).status_code == 201


@pytest.mark.parametrize("ttl", [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300])
def test_token_ttl_out_of_range_refused_at_start(renders, db_url, ttl):
    with pytest.raises(ValueError, match="token.ttl"):
        create_app(renders, db_url, SECRET, token_ttl_s=ttl)


def test_serve_refusals_are_clean_errors_not_tracebacks(renders, db_url, tmp_path):
    """`beatedit feedback serve` (the console script's path, app.cli) refuses bad settings with one line."""
    cases = [
        (["--renders", str(renders), "--db", db_url, "--token-ttl", "nan"], "token-ttl"),
        (["--renders", str(renders), "--db", db_url, "--token-ttl", "inf"], "token-ttl"),
        (["--renders", str(renders), "--db", db_url, "--token-ttl", "-5"], "token-ttl"),
        (["--renders", str(renders), "--db", db_url, "--max-votes-per-pair", "0"], "max-votes-per-pair"),
        (["--renders", str(renders), "--db", db_url, "--host", "0.0.0.0"], "non-loopback"),
        (["--renders", str(tmp_path / "missing"), "--db", db_url], "render folder does not exist"),
        (["--renders", str(renders), "--db", "nonsense://nowhere"], "--db"),
        (["--renders", str(renders), "--db", "sqlite://"], "SQLite"),
        (["--renders", str(renders), "--db", db_url, "--rater-tokens", str(tmp_path / "no-such-file")], "rater-token file"),
    ]
    for args, needle in cases:
        r = cli("feedback", "serve", *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr and needle in r.stderr, (args, r.stderr)
        assert r.stderr.strip().splitlines()[-1].startswith(("error:", "usage:")) or "error:" in r.stderr, r.stderr


# --- item 9: export never invents a database -------------------------------------------------------------------
def test_export_with_a_mistyped_db_fails_and_creates_nothing(tmp_path):
    typo = tmp_path / "fb" / "vote.db"  # the real one would be votes.db
    out = tmp_path / "out.parquet"
    r = cli("feedback", "export", "--db", f"sqlite:///{typo}", "-o", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "no feedback database" in r.stderr
    assert not typo.exists() and not typo.parent.exists() and not out.exists()
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a file that is not a feedback store
    r = cli("feedback", "export", "--db", f"sqlite:///{empty}", "-o", str(out))
    assert r.returncode == 2 and "not a feedback database" in r.stderr and not out.exists(), r.stderr


# --- item 10: comments, origins, rater rows, hoarding ----------------------------------------------------------
def test_comment_filter_refuses_del_c1_and_bidi_controls(renders, db_url):
    with ServerThread(create_app(renders, db_url, SECRET)) as srv:
        c = httpx.Client(base_url=srv.url, timeout=20)
        c.post("/api/session", json={"rater": "alice"})
        items = c.get("/api/next?n=6").json()["items"]
        bad = ["del \x7f", "c1 \x85 next line", "c1 \x9b csi", "rtl \u202e evil", "lri \u2066 x", "rlm \u200f", "alm \u061c", "ls \u2028"]
        for comment in bad:
            r = c.post("/api/vote", json={"token": items[0]["token"], "choice": "a", "comment": comment})
            assert r.status_code == 422 and r.json()["detail"][0]["field"] == "comment", (repr(comment), r.text)
        ok = "Schöner Übergang 👍🏽 — 👩‍🎤 à la «fin»\nline two\ttab"
        assert c.post("/api/vote", json={"token": items[0]["token"], "choice": "a", "comment": ok}).status_code == 201
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as con:
        assert con.execute("select comment from votes").fetchall() == [(ok,)]


def test_origin_null_is_cross_origin(renders, db_url):
    with ServerThread(create_app(renders, db_url, SECRET)) as srv:
        c = httpx.Client(base_url=srv.url, timeout=20)
        r = c.post("/api/session", json={"rater": "mallory"}, headers={"origin": "null"})
        assert r.status_code == 403 and r.json()["error"] == "cross_origin"
        c.post("/api/session", json={"rater": "alice"})
        (item,) = c.get("/api/next").json()["items"]
        r = c.post("/api/vote", json={"token": item["token"], "choice": "a"}, headers={"origin": "null"})
        assert r.status_code == 403 and r.json()["error"] == "cross_origin"
        assert c.post("/api/vote", json={"token": item["token"], "choice": "a"}, headers={"origin": srv.url}).status_code == 201


def test_cookieless_page_loads_insert_no_rater_rows(renders, db_url):
    with ServerThread(create_app(renders, db_url, SECRET)) as srv:
        for _ in range(40):
            r = httpx.get(srv.url + "/", timeout=20)
            assert r.status_code == 200 and "beatedit_rater" in r.headers["set-cookie"]
        for _ in range(10):
            assert httpx.post(srv.url + "/api/session", json={}, timeout=20).status_code == 200
        assert db_count(db_url, "raters") == 0
        c = httpx.Client(base_url=srv.url, timeout=20)
        c.get("/")
        assert len(c.get("/api/next").json()["items"]) == 1  # the row appears when pairs are issued
        assert db_count(db_url, "raters") == 1


def test_anonymous_raters_cannot_hoard_pairs(renders, db_url):
    """With --max-votes-per-pair 1, anonymous page loads asking for 20 pairs each must leave
    pairs for a real rater; an unvoted issue holds its place only for the hold window."""
    app = create_app(renders, db_url, SECRET, max_votes_per_pair=1)
    with ServerThread(app) as srv:
        for _ in range(2):
            anon = httpx.Client(base_url=srv.url, timeout=20)
            anon.get("/")
            got = anon.get("/api/next?n=20").json()["items"]
            assert 1 <= len(got) <= 2, len(got)
            assert len(anon.get("/api/next?n=20").json()["items"]) == len(got)  # asking again gives the same, no more
        alice = httpx.Client(base_url=srv.url, timeout=20)
        alice.post("/api/session", json={"rater": "alice"})
        assert len(alice.get("/api/next?n=20").json()["items"]) >= 2

    app = create_app(renders, db_url.replace("votes.db", "votes2.db"), SECRET, max_votes_per_pair=1, hold_s=1.0)
    with ServerThread(app) as srv:
        hog = httpx.Client(base_url=srv.url, timeout=20)
        hog.post("/api/session", json={"rater": "hog"})
        assert len(hog.get("/api/next?n=20").json()["items"]) == 6
        bob = httpx.Client(base_url=srv.url, timeout=20)
        bob.post("/api/session", json={"rater": "bob"})
        assert bob.get("/api/next").json()["items"] == []
        time.sleep(1.5)  # the hog's unvoted issues stop holding their pairs
        (it,) = bob.get("/api/next").json()["items"]
        assert bob.post("/api/vote", json={"token": it["token"], "choice": "b"}).status_code == 201


def test_hold_window_refused_when_out_of_range(renders, db_url):
    for hold in (math.nan, -1.0, 0.0, math.inf):
        with pytest.raises(ValueError, match="hold"):
            create_app(renders, db_url, SECRET, hold_s=hold)
