"""Load test on loopback, bounded in count and time: the real CLI server (`python -m beatedit.feedback
serve`) in its own process, 50 raters x 20 issued pairs = 1,000 votes fired concurrently (50 in
flight) together with racing duplicates, malformed and forged submissions; then replays.
Checks: every valid vote stored exactly once (0 lost, 0 duplicated), every bad one a 4xx."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pandas as pd
import pytest

from beatedit.feedback import export_votes
from beatedit.feedback.db import IssuedPair, Vote, open_db
from beatedit.feedback.demo import build_demo_renders
from beatedit.feedback.security import IssueClaims, sign_issue, verify_issue

REPO = Path(__file__).resolve().parents[2]
SECRET = "load-test-secret-0123456789abcdef"
RATERS, PAIRS_PER_RATER, IN_FLIGHT = 50, 20, 50
N_VOTES = RATERS * PAIRS_PER_RATER  # 1,000
N_DUP, N_MALFORMED, N_FORGED, N_REPLAY = 100, 100, 100, 200
STORM_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def live_server(tmp_path):
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=PAIRS_PER_RATER // 2, pairs_per_song=2, seconds=0.2)
    db_url = f"sqlite:///{tmp_path / 'feedback' / 'votes.db'}"
    env = {**os.environ, "BEATEDIT_FEEDBACK_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    log_path = tmp_path / "server.log"  # a file, not a pipe: a full pipe would stall the server
    for _attempt in range(3):
        port = _free_port()
        with open(log_path, "w") as log_fh:
            proc = subprocess.Popen([sys.executable, "-m", "beatedit.feedback", "serve", "--renders", str(renders), "--db", db_url,
                                     "--port", str(port)], env=env, stdout=log_fh, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and proc.poll() is None:
            try:
                if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        if proc.poll() is None:
            break
    else:
        pytest.fail(f"server did not start: {log_path.read_text()}")
    try:
        yield url, db_url, tmp_path
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log = log_path.read_text()
        assert rc == 0, log
        assert "Traceback" not in log, log


async def _storm(url: str):
    # One client per rater, as with browsers (a single shared httpx pool is itself the bottleneck).
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _ in range(RATERS)]
    try:
        async def sign_in(i):
            c = clients[i]
            r = await c.post("/api/session", json={"rater": f"load-{i:02d}"})
            assert r.status_code == 200, r.text
            r = await c.get(f"/api/next?n={PAIRS_PER_RATER}")
            assert r.status_code == 200, r.text
            return [(i, it["token"]) for it in r.json()["items"]]

        valid = [x for toks in await asyncio.gather(*(sign_in(i) for i in range(RATERS))) for x in toks]
        assert len(valid) == N_VOTES and len({t for _, t in valid}) == N_VOTES

        rng = random.Random(7)
        other_key = b"not-the-server-secret-0123456789"
        jobs, payload = [], {}
        for k, (i, tok) in enumerate(valid):
            payload[tok] = {"token": tok, "choice": ("a", "b", "tie", "skip")[k % 4], "strength": (k % 3) + 1}
            jobs.append(("vote", i, {"json": payload[tok]}))
        for i, tok in rng.sample(valid, N_DUP):  # racing duplicates (same body) of valid votes
            jobs.append(("dup", i, {"json": dict(payload[tok])}))
        malformed = [
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            {"content": b'{"token": 5, "choice": "a"}', "headers": {"content-type": "application/json"}},
            {"content": b'{"choice": "a"}', "headers": {"content-type": "application/json"}},
            {"content": b"token=x&choice=a", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            {"json": {"token": "x", "choice": "maybe"}},
            {"json": {"token": "x", "choice": "a", "comment": "y" * 1001}},
            {"json": {"token": "no-dot-token", "choice": "a"}},
        ]
        for k in range(N_MALFORMED):
            jobs.append(("malformed", rng.randrange(RATERS), malformed[k % len(malformed)]))
        for k in range(N_FORGED):
            i, tok = valid[rng.randrange(N_VOTES)]
            claims = verify_issue(SECRET.encode(), tok)
            if k % 2:  # the rater's own issue, signed with the wrong key
                forged = sign_issue(other_key, claims)
            else:  # a pair never issued (made-up issue id and nonce) carrying a real token's MAC
                fake = IssueClaims(issue_id=claims.issue_id + 10_000, pair_id=claims.pair_id, rater=claims.rater, nonce="made-up", issued_at=claims.issued_at)
                forged = sign_issue(other_key, fake).split(".")[0] + "." + tok.split(".")[1]
            jobs.append(("forged", i, {"json": {"token": forged, "choice": "b"}}))
        rng.shuffle(jobs)

        sem = asyncio.Semaphore(IN_FLIGHT)

        async def send(kind, i, kw):
            kw = dict(kw)  # job dicts are shared templates
            async with sem:
                r = await clients[i].post("/api/vote", **kw)
                return kind, kw.get("json", {}).get("token"), r.status_code, r.json()

        t0 = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*(send(*j) for j in jobs)), timeout=STORM_TIMEOUT_S)
        storm_s = time.perf_counter() - t0

        # replays after the storm, also concurrent
        replays = await asyncio.wait_for(asyncio.gather(*(send("replay", i, {"json": {"token": tok, "choice": "b"}})
                                                          for i, tok in rng.sample(valid, N_REPLAY))), timeout=STORM_TIMEOUT_S)
        return results, replays, storm_s
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def test_thousand_concurrent_votes_none_lost_none_duplicated(live_server):
    url, db_url, tmp = live_server
    t0 = time.perf_counter()
    results, replays, storm_s = asyncio.run(_storm(url))

    by_kind = defaultdict(Counter)
    for kind, _tok, status, _body in results + replays:
        by_kind[kind][status] += 1
    print(f"\nstorm: {len(results)} requests in {storm_s:.2f}s; statuses by kind: { {k: dict(v) for k, v in by_kind.items()} }")
    assert all(s < 500 for _k, _t, s, _b in results + replays)

    # every valid token was stored exactly once, whether its own request or its racing duplicate won
    wins = Counter(tok for kind, tok, status, _ in results if kind in ("vote", "dup") and status == 201)
    assert len(wins) == N_VOTES and set(wins.values()) == {1}
    losers = [(status, body["error"]) for kind, _tok, status, body in results if kind in ("vote", "dup") and status != 201]
    assert len(losers) == N_DUP and set(losers) == {(409, "replayed")}
    assert set(by_kind["malformed"]) <= {400, 415, 422} and sum(by_kind["malformed"].values()) == N_MALFORMED
    assert dict(by_kind["forged"]) == {403: N_FORGED}
    assert dict(by_kind["replay"]) == {409: N_REPLAY}

    ids_returned = {body["vote_id"] for kind, _t, status, body in results if status == 201}
    db = open_db(db_url)
    try:
        with db.read() as s:
            votes = s.query(Vote).all()
            issued = s.query(IssuedPair).all()
    finally:
        db.dispose()
    assert len(votes) == N_VOTES  # 0 lost
    assert {v.id for v in votes} == ids_returned
    assert len({v.issue_id for v in votes}) == N_VOTES and len({(v.pair_id, v.rater_id) for v in votes}) == N_VOTES  # 0 duplicated
    assert len(issued) == N_VOTES and all(i.consumed_at is not None for i in issued)
    assert Counter(v.shown_choice for v in votes) == Counter({"a": 250, "b": 250, "tie": 250, "skip": 250})

    out = tmp / "human_pairs.parquet"
    rep = export_votes(db_url, out)
    assert (rep.exported, rep.skipped, rep.total) == (750, 250, 750)
    assert len(pd.read_parquet(out)) == 750
    print(f"load test total {time.perf_counter() - t0:.2f}s")
