"""Feedback page: storage, migrations, manifest safety, queue policy, HTTP API (real uvicorn on
loopback, real SQLite file), export to the preference table, CLI. No mocks."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from beatedit.feedback import export_votes, load_manifest, pair_from_renders, write_pair_manifest
from beatedit.preferences.schema import COLUMN_NAMES
from beatedit.feedback.app import MAX_BODY_BYTES, ServerThread, create_app
from beatedit.feedback.db import SCHEMA_VERSION, IssuedPair, SchemaError, Vote, open_db
from beatedit.feedback.demo import build_demo_renders
from beatedit.feedback.queue import issue_next, progress, submit_vote, sync_manifest
from beatedit.feedback.security import (
    TokenError,
    UnsafePathError,
    load_rater_tokens,
    safe_audio_path,
    sign_issue,
    sign_rater,
    verify_issue,
    verify_rater,
)

SECRET = "test-secret-0123456789abcdef"
KEY = SECRET.encode()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def renders(tmp_path):
    d = tmp_path / "renders"
    build_demo_renders(d, n_songs=3, pairs_per_song=2, seconds=0.5)
    return d


@pytest.fixture()
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'fb' / 'votes.db'}"


@pytest.fixture()
def server(renders, db_url):
    app = create_app(renders, db_url, SECRET)
    with ServerThread(app) as srv:
        yield srv


def client(srv, rater: str | None = "alice") -> httpx.Client:
    c = httpx.Client(base_url=srv.url, timeout=20)
    if rater:
        r = c.post("/api/session", json={"rater": rater})
        assert r.status_code == 200, r.text
    return c


def margins(renders) -> dict[str, float]:
    return {p["pair_id"]: p.get("reward_margin") for p in json.loads((renders / "pairs.json").read_text())}


# --- database ---------------------------------------------------------------------------------------------
def test_migrations_versioned_idempotent_and_sqlite_pragmas(db_url, tmp_path):
    db = open_db(db_url)
    db2 = open_db(db_url)  # second open: nothing to do
    path = tmp_path / "fb" / "votes.db"
    con = sqlite3.connect(path)
    assert con.execute("select version from schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"schema_version", "raters", "pairs", "issued_pairs", "votes"} <= tables
    with db.engine.connect() as c:
        assert c.exec_driver_sql("pragma busy_timeout").scalar() == 30000
        assert c.exec_driver_sql("pragma foreign_keys").scalar() == 1
    db.dispose(), db2.dispose()
    con.execute("insert into schema_version values (?, 'from the future', '2100-01-01 00:00:00')", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(SchemaError, match="newer than this code"):
        open_db(db_url)


def test_in_memory_sqlite_refused():
    with pytest.raises(ValueError, match="SQLite \\*file\\*"):
        open_db("sqlite://")


# --- manifest and paths ---------------------------------------------------------------------------------------
def test_manifest_rejects_unsafe_and_invalid_records(renders, tmp_path):
    good = json.loads((renders / "pairs.json").read_text())
    outside = tmp_path / "outside.wav"
    outside.write_bytes((renders / good[0]["a"]["wav"]).read_bytes())
    (renders / "escape.wav").symlink_to(outside)
    (renders / "notes.txt").write_text("hi")

    def variant(pid, **changes):
        rec = json.loads(json.dumps(good[0]))
        rec["pair_id"] = pid
        for path, val in changes.items():
            side, _, fld = path.partition("__")
            if fld:
                rec[side][fld] = val
            else:
                rec[side] = val
        return rec

    bad = [
        variant("traversal", a__wav="../outside.wav"),
        variant("absolute", a__wav=str(outside)),
        variant("symlink-out", a__wav="escape.wav", a__edl=good[0]["a"]["edl"]),
        variant("not-wav", a__wav="notes.txt", a__edl=good[0]["a"]["edl"]),
        variant("missing", b__wav="song_000/nope.wav", b__edl=good[0]["b"]["edl"]),
        variant("bad-action", a__actions=[0, 1, 99, 0, 0, 0, 0, 0]),
        variant("beat-mismatch", b__actions=[0, 1]),
        variant("edl-escape", a__edl="../x.edl.json"),
        variant("wrong-song", song_id="song_999"),
        variant("bad id/slash"),
        variant("extra", a__secret_field=1),
        {**good[1]},  # duplicate of an earlier id
    ]
    (renders / "pairs.json").write_text(json.dumps(good + bad))
    rep = load_manifest(renders)
    assert sorted(p.spec.pair_id for p in rep.pairs) == sorted(p["pair_id"] for p in good)
    reasons = {r["pair_id"]: r["reason"] for r in rep.rejected}
    assert set(reasons) == {"traversal", "absolute", "symlink-out", "not-wav", "missing", "bad-action", "beat-mismatch", "edl-escape",
                            "wrong-song", "bad id/slash", "extra", good[1]["pair_id"]}
    assert "'..'" in reasons["traversal"] and "outside the render folder" in reasons["symlink-out"]
    assert "not a .wav" in reasons["not-wav"] and "does not exist" in reasons["missing"]
    assert "duplicate" in reasons[good[1]["pair_id"]] and "song_999" in reasons["wrong-song"]
    with pytest.raises(ValueError, match="traversal"):
        write_pair_manifest(renders, [bad[0] | {"pair_id": "traversal"}])


def test_safe_audio_path(renders, tmp_path):
    rel = "song_000/pair0_a.wav"
    assert safe_audio_path(renders, rel) == (renders / rel).resolve()
    (renders / "inside_link.wav").symlink_to(renders / rel)  # a link that stays inside is fine
    assert safe_audio_path(renders, "inside_link.wav") == (renders / rel).resolve()
    (tmp_path / "secret.wav").write_bytes(b"RIFF0000WAVE")
    (renders / "out_link.wav").symlink_to(tmp_path / "secret.wav")
    (renders / "dir.wav").mkdir()
    for bad in ["../secret.wav", "/etc/passwd.wav", "song_000/../../secret.wav", "out_link.wav", "dir.wav", "song_000/pair0_a.edl.json",
                "", "a\x00.wav", "..\\secret.wav", "~/x.wav"]:
        with pytest.raises(UnsafePathError):
            safe_audio_path(renders, bad)


def test_pair_from_renders_builds_a_valid_record(renders, tmp_path):
    rec = pair_from_renders(renders, renders / "song_001/pair0_a.wav", "song_001/pair0_b.wav", actions_a=[0] * 8, actions_b=[1] * 8,
                            kind_a="baseline", kind_b="policy", reward_margin=0.25)
    assert rec["song_id"] == "song_001" and rec["target_ratio"] == 0.5
    assert rec["a"]["edl"] == "song_001/pair0_a.edl.json" and rec["pair_id"].startswith("song_001-")
    again = pair_from_renders(renders, renders / "song_001/pair0_a.wav", "song_001/pair0_b.wav", actions_a=[0] * 8, actions_b=[1] * 8,
                              kind_a="baseline", kind_b="policy")
    assert again["pair_id"] == rec["pair_id"]  # content-derived id
    (tmp_path / "elsewhere.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="outside the render folder"):
        pair_from_renders(renders, tmp_path / "elsewhere.wav", "song_001/pair0_b.wav", actions_a=[0], actions_b=[0], kind_a="x", kind_b="y")
    write_pair_manifest(renders, [rec])
    assert [p.spec.pair_id for p in load_manifest(renders).pairs] == [rec["pair_id"]]


# --- tokens -------------------------------------------------------------------------------------------------------
def test_issue_tokens_and_rater_cookies():
    from beatedit.feedback.security import IssueClaims

    claims = IssueClaims(issue_id=7, pair_id="song_000-p0", rater="alice", nonce="n0nce", issued_at=int(time.time()))
    tok = sign_issue(KEY, claims)
    assert verify_issue(KEY, tok, max_age_s=60) == claims
    body, sig = tok.split(".")
    import base64

    forged_body = base64.urlsafe_b64encode(claims.payload().replace(b'"alice"', b'"mallory"')).rstrip(b"=").decode()
    for bad, reason in [(forged_body + "." + sig, "signature"), (tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB"), "signature"),
                        ("nodot", "malformed"), ("a.b.c", "malformed"), ("!!.??", "malformed"), ("", "malformed")]:
        with pytest.raises(TokenError) as ei:
            verify_issue(KEY, bad)
        assert ei.value.reason == reason, bad
    with pytest.raises(TokenError) as ei:
        verify_issue(b"another-secret-0123456789", tok)
    assert ei.value.reason == "signature"
    with pytest.raises(TokenError) as ei:
        verify_issue(KEY, tok, max_age_s=10, now=time.time() + 11)
    assert ei.value.reason == "expired"
    cookie = sign_rater(KEY, "alice")
    assert verify_rater(KEY, cookie) == "alice"
    assert verify_rater(KEY, "mallory." + cookie.split(".", 1)[1]) is None
    assert verify_rater(KEY, None) is None and verify_rater(KEY, "garbage") is None


def test_rater_token_file_formats(tmp_path):
    f = tmp_path / "raters.txt"
    f.write_text("# raters\nalice: aaaaaaaaaaaaaaaaaaaa\nbob bbbbbbbbbbbbbbbbbbbbbb\n")
    assert load_rater_tokens(f) == {"alice": "a" * 20, "bob": "b" * 22}
    j = tmp_path / "raters.json"
    j.write_text(json.dumps({"carol": "c" * 16}))
    assert load_rater_tokens(j) == {"carol": "c" * 16}
    for text, msg in [("alice:short\n", "at least 16"), ('{"bad id!": "xxxxxxxxxxxxxxxxxxxx"}', "invalid rater id"),
                      ("a:xxxxxxxxxxxxxxxxxxxx\nb:xxxxxxxxxxxxxxxxxxxx\n", "share a token"), ("", "no rater tokens")]:
        f.write_text(text)
        with pytest.raises(ValueError, match=msg):
            load_rater_tokens(f)


# --- queue policy -----------------------------------------------------------------------------------------------
def test_queue_smallest_margin_first_never_twice_and_spread(renders, db_url):
    db = open_db(db_url)
    sync_manifest(db, renders)
    m = margins(renders)
    by_margin = sorted(m, key=m.get)
    from beatedit.feedback.queue import ensure_rater

    for r in ("r1", "r2", "r3"):
        ensure_rater(db, r)
    got = []
    for _ in range(len(m)):
        (it,) = issue_next(db, KEY, renders, "r1")
        assert issue_next(db, KEY, renders, "r1")[0].token == it.token  # outstanding issue re-served, not a new pair
        submit_vote(db, verify_issue(KEY, it.token), "tie")
        got.append(it.pair_id)
    assert got == by_margin  # active learning: least certain first
    assert issue_next(db, KEY, renders, "r1") == []  # never the same pair twice
    assert progress(db, renders, "r1").remaining == 0 and progress(db, renders, "r1").votes == len(m)
    # r2 and r3: every pair has one live rating from r1; r2 takes the lowest margin, then r3 must
    # not pile onto the same pair while r2's issue is outstanding
    (a,) = issue_next(db, KEY, renders, "r2")
    (b,) = issue_next(db, KEY, renders, "r3")
    assert a.pair_id == by_margin[0] and b.pair_id == by_margin[1]
    # a skip does not count as a rating: after r2 skips, the pair is the least-covered again
    submit_vote(db, verify_issue(KEY, a.token), "skip")
    ensure_rater(db, "r4")
    assert issue_next(db, KEY, renders, "r4")[0].pair_id == by_margin[0]
    # a cap on ratings per pair removes covered pairs from the queue
    ensure_rater(db, "r5")
    assert issue_next(db, KEY, renders, "r5", n=10, max_votes_per_pair=1) == []
    with db.read() as s:
        rows = s.query(IssuedPair.pair_id, IssuedPair.rater_id).all()
    assert len(rows) == len(set(rows))
    db.dispose()


def test_swap_is_undone_and_replay_and_stale_tokens_rejected(renders, db_url):
    from beatedit.feedback.queue import VoteError, ensure_rater

    class AlwaysSwap(random.Random):
        def getrandbits(self, k):
            return 1

    db = open_db(db_url)
    sync_manifest(db, renders)
    ensure_rater(db, "alice")
    (it,) = issue_next(db, KEY, renders, "alice", rng=AlwaysSwap())
    assert it.swapped
    v = submit_vote(db, verify_issue(KEY, it.token), "a", strength=3, listened_a=1.0, listened_b=2.0)
    assert (v.choice, v.shown_choice, v.strength, v.listened_a, v.listened_b) == ("b", "a", 3, 2.0, 1.0)
    with pytest.raises(VoteError) as ei:
        submit_vote(db, verify_issue(KEY, it.token), "b")
    assert ei.value.status == 409 and ei.value.code == "replayed"
    # an outstanding issue past its TTL is re-issued with a fresh nonce; the old token is stale
    (it2,) = issue_next(db, KEY, renders, "alice")
    with db.write() as s:
        s.get(IssuedPair, it2.issue_id).issued_at -= __import__("datetime").timedelta(hours=2)
    (it3,) = issue_next(db, KEY, renders, "alice", ttl_s=3600)
    assert it3.issue_id == it2.issue_id and it3.token != it2.token
    with pytest.raises(VoteError) as ei:
        submit_vote(db, verify_issue(KEY, it2.token), "a")
    assert ei.value.code == "stale_token"
    submit_vote(db, verify_issue(KEY, it3.token), "a")
    with db.read() as s:
        assert s.query(Vote).count() == 2
    db.dispose()


def test_manifest_resync_deactivates_and_refuses_reused_ids(renders, db_url, tmp_path):
    db = open_db(db_url)
    first = sync_manifest(db, renders)
    assert first.added == 6 and not first.rejected
    recs = json.loads((renders / "pairs.json").read_text())
    recs[0]["a"]["kind"] = "changed-content"  # same id, different content
    write_pair_manifest(renders, recs[:3])
    rep = sync_manifest(db, renders)
    assert rep.deactivated == 4 and [r["pair_id"] for r in rep.rejected] == [recs[0]["pair_id"]]
    assert rep.unchanged == 2
    db.dispose()


# --- HTTP API ----------------------------------------------------------------------------------------------------
def test_api_vote_flow_and_status_codes(server, renders, db_url):
    c = client(server, "alice")
    r = c.get("/api/next")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["progress"] == {"votes": 0, "remaining": 6} and len(body["items"]) == 1
    it = body["items"][0]
    assert set(it) == {"token", "song_id", "target_ratio", "audio", "listen"}  # blind: no kind/model leaks
    assert set(it["listen"]) == {"a", "b", "min_listen_s", "seam_margin_s", "heard_fraction"}  # the listening gate (issue 20.6)
    assert set(it["listen"]["a"]) == set(it["listen"]["b"]) == {"seams", "duration"}
    assert c.get("/api/next").json()["items"][0]["token"] == it["token"]

    # audio: served as WAV, with range support, and the right file for the (possibly swapped) side
    ra, rb = c.get(it["audio"]["a"]), c.get(it["audio"]["b"])
    assert ra.status_code == rb.status_code == 200 and ra.headers["content-type"] == "audio/wav" and ra.content[:4] == b"RIFF"
    files = {p: (renders / p).read_bytes() for p in (renders.glob("song_*/*.wav"))}
    assert ra.content in files.values() and rb.content in files.values() and ra.content != rb.content
    assert c.get(it["audio"]["a"], headers={"Range": "bytes=0-43"}).status_code == 206

    def post(payload, **kw):
        return c.post("/api/vote", json=payload, **kw)

    cases = [
        (c.post("/api/vote", content=b"choice=a", headers={"content-type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type"),
        (c.post("/api/vote", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_json"),
        (c.post("/api/vote", content=b"[1,2]", headers={"content-type": "application/json"}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "c"}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "strength": 4}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "strength": "2"}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "comment": "x" * 1001}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "comment": "bad\x00byte"}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "listened_a": -1}), 422, "invalid_request"),
        (post({"token": it["token"], "choice": "a", "admin": True}), 422, "invalid_request"),
        (post({"choice": "a"}), 422, "invalid_request"),
        (post({"token": "x" * 2000, "choice": "a"}), 422, "invalid_request"),
        (c.post("/api/vote", content=b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}", headers={"content-type": "application/json"}), 413, "too_large"),
        (post({"token": "not-a-token", "choice": "a"}), 400, "bad_token"),
        (post({"token": it["token"][:-4] + ("AAAA" if not it["token"].endswith("AAAA") else "BBBB"), "choice": "a"}), 403, "forged_token"),
        (post({"token": it["token"], "choice": "a"}, headers={"origin": "http://evil.example"}), 403, "cross_origin"),
        (httpx.post(server.url + "/api/vote", json={"token": it["token"], "choice": "a"}), 401, "unauthenticated"),
        (httpx.post(server.url + "/api/vote", json={"token": it["token"], "choice": "a"}, headers={"cookie": "beatedit_rater=alice.forgedsig"}), 401, "unauthenticated"),
        (httpx.get(server.url + "/api/next", headers={"host": "attacker.example"}), 400, "bad_host"),
        (c.get("/api/next?n=0"), 422, "invalid_request"),
        (c.get("/api/next?n=abc"), 422, "invalid_request"),
        (c.get("/api/nope"), 404, "not_found"),
    ]
    for i, (resp, status, code) in enumerate(cases):
        assert (resp.status_code, resp.json()["error"]) == (status, code), (i, resp.text)
    assert "comment" in cases[6][0].text  # the message names the field

    ok = post({"token": it["token"], "choice": "b", "strength": 2, "comment": "  punchier drop  ", "listened_a": 0.4, "listened_b": 0.5})
    assert ok.status_code == 201, ok.text
    replay = post({"token": it["token"], "choice": "a"})
    assert replay.status_code == 409 and replay.json()["error"] == "replayed"

    # another rater cannot use alice's token, for votes or audio
    (it2,) = c.get("/api/next").json()["items"]
    bob = client(server, "bob")
    assert bob.post("/api/vote", json={"token": it2["token"], "choice": "a"}).json()["error"] == "wrong_rater"
    assert bob.get(it2["audio"]["a"]).status_code == 403
    assert c.get("/api/progress").json() == {"rater": "alice", "votes": 1, "remaining": 5}

    db = open_db(db_url)
    with db.read() as s:
        (v,) = s.query(Vote).all()
    assert (v.rater_id, v.shown_choice, v.strength, v.comment) == ("alice", "b", 2, "punchier drop")
    db.dispose()


def test_audio_route_rejects_traversal_and_non_wav(renders, db_url, tmp_path):
    recs = json.loads((renders / "pairs.json").read_text())
    app = create_app(renders, db_url, SECRET)
    with ServerThread(app) as srv:
        c = client(srv, "alice")
        (it,) = c.get("/api/next").json()["items"]
        tok = it["token"]
        for path in [f"/api/audio/{tok}/c", f"/api/audio/{tok}/..%2F..%2Fetc%2Fpasswd", "/api/audio/..%2F..%2Fpairs.json/a",
                     f"/api/audio/{tok}/a/../../../pairs.json", "/static/..%2Fdb.py", "/static/%2e%2e/db.py", "/api/audio/x/a"]:
            r = c.get(path)
            assert 400 <= r.status_code < 500, (path, r.status_code)
            assert b"sqlalchemy" not in r.content.lower() and b"pair_id" not in r.content
        # the file behind an issued pair is swapped for a symlink out of the folder: refused
        pid = verify_issue(KEY, tok).pair_id
        rec = next(p for p in recs if p["pair_id"] == pid)
        secret = tmp_path / "secret.wav"
        secret.write_bytes((renders / rec["a"]["wav"]).read_bytes())
        for side in ("a", "b"):
            (renders / rec[side]["wav"]).unlink()
            (renders / rec[side]["wav"]).symlink_to(secret)
        assert c.get(it["audio"]["a"]).status_code == 404 and c.get(it["audio"]["b"]).status_code == 404
        # a file named .wav that is not a WAV: 415
        for side in ("a", "b"):
            (renders / rec[side]["wav"]).unlink()
            (renders / rec[side]["wav"]).write_text("<script>alert(1)</script>")
        r = c.get(it["audio"]["a"])
        assert r.status_code == 415 and r.json()["error"] == "not_wav"


def test_rater_tokens_required_when_configured(renders, db_url):
    tokens = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789xx"}
    app = create_app(renders, db_url, SECRET, rater_tokens=tokens)
    with ServerThread(app) as srv:
        anon = httpx.Client(base_url=srv.url)
        assert anon.get("/api/next").status_code == 401
        assert anon.post("/api/session", json={"rater": "alice"}).status_code == 401  # a name is not enough
        assert anon.get("/api/next", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        assert anon.get("/api/next", headers={"authorization": "Basic abc"}).status_code == 401
        r = anon.get("/api/next", headers={"authorization": f"Bearer {tokens['bob']}"})
        assert r.status_code == 200 and r.json()["rater"] == "bob"
        c = httpx.Client(base_url=srv.url)
        assert c.post("/api/session", json={"token": tokens["alice"]}).json()["rater"] == "alice"
        (it,) = c.get("/api/next").json()["items"]
        assert c.post("/api/vote", json={"token": it["token"], "choice": "a"}).status_code == 201
        link = httpx.Client(base_url=srv.url)
        r = link.get(f"/?token={tokens['bob']}")
        assert r.status_code == 303 and r.headers["location"] == "/" and "HttpOnly" in r.headers["set-cookie"]
        assert link.get("/api/progress").json()["rater"] == "bob"
        assert link.get("/?token=nope").status_code == 401
        page = anon.get("/")
        assert page.status_code == 200 and "beatedit_rater" not in page.headers.get("set-cookie", "")


def test_security_headers_and_page(server):
    c = httpx.Client(base_url=server.url)
    r = c.get("/")
    assert r.status_code == 200 and 'id="audio-a"' in r.text and 'id="audio-b"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/api/next").status_code == 200  # the page's cookie identifies the anonymous rater
    assert httpx.get(server.url + "/?rater=bad%20name!").status_code == 422


# --- export -------------------------------------------------------------------------------------------------------
def test_export_maps_choices_merges_idempotently(server, renders, db_url, tmp_path):
    c = client(server, "alice")
    plan = [("a", 3), ("b", None), ("tie", 2), ("skip", None), ("a", 1)]
    for choice, strength in plan:
        (it,) = c.get("/api/next").json()["items"]
        assert c.post("/api/vote", json={"token": it["token"], "choice": choice, "strength": strength}).status_code == 201
    out = tmp_path / "data" / "feedback" / "human_pairs.parquet"
    rep = export_votes(db_url, out)
    assert (rep.exported, rep.skipped, rep.added, rep.total) == (4, 1, 4, 4)
    df = pd.read_parquet(out)
    assert tuple(df.columns) == COLUMN_NAMES
    assert set(df["source"]) == {"human"} and set(df["rater"]) == {"alice"}
    assert df["timestamp"].is_monotonic_increasing and str(df["timestamp"].dt.tz) == "UTC"
    db = open_db(db_url)
    with db.read() as s:
        votes = {v.created_at: v for v in s.query(Vote).all()}
    db.dispose()
    for _, row in df.iterrows():
        v = votes[row["timestamp"].to_pydatetime()]
        assert row["choice"] == {"a": 0.0, "b": 1.0, "tie": 0.5}[v.choice]  # canonical, un-swapped
        assert row["strength"] == pytest.approx({None: 2 / 3, 1: 1 / 3, 2: 2 / 3, 3: 1.0}[v.strength] if v.choice != "tie" else 0.0)
        assert json.loads(row["edl_a"])["song_id"] == row["song_id"] and len(row["actions_a"]) == len(row["actions_b"]) == 8
        assert row["kind_a"] == "champion" and pd.isna(row["p_a"]) and pd.isna(row["gold_a"])
        assert not row["ood"] and pd.isna(row["ratio_a"]) and pd.isna(row["ratio_b"])  # what no vote can say
    # idempotent: a re-export adds nothing and leaves the same table
    before = out.read_bytes()
    rep2 = export_votes(db_url, out)
    assert (rep2.added, rep2.total) == (0, 4)
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    assert out.read_bytes() == before
    # merging keeps rows that came from elsewhere (another server's export)
    foreign = df.iloc[:1].copy()
    foreign["rater"] = "carol"
    foreign["timestamp"] = foreign["timestamp"] - pd.Timedelta(days=1)
    pd.concat([foreign, df]).to_parquet(out, index=False)
    (it,) = c.get("/api/next").json()["items"]
    c.post("/api/vote", json={"token": it["token"], "choice": "b"})
    rep3 = export_votes(db_url, out)
    assert (rep3.added, rep3.total) == (1, 6)
    assert sorted(pd.read_parquet(out)["rater"]) == ["alice"] * 5 + ["carol"]
    # contract: the preferences stage reads the file as human votes
    prefs = pytest.importorskip("beatedit.preferences.pairs")
    merged = prefs.merge_pairs([[]], out)
    assert len(merged) == 6 and set(merged["source"]) == {"human"} and set(merged["choice"]) <= {0.0, 1.0, 0.5}
    assert set(merged["split"]) <= {"train", "validation", "promotion"} and tuple(merged.columns) == COLUMN_NAMES
    exported = pd.read_parquet(out)
    for c in COLUMN_NAMES:  # the stage keeps the export's values as they are (split aside: it is recomputed)
        if c != "split":
            pd.testing.assert_series_equal(merged[c], exported[c], check_dtype=False, check_names=False)
    # an export written before the table had ood / ratio_* still merges, with HUMAN_UNKNOWN filled in
    exported.drop(columns=["ood", "ratio_a", "ratio_b"]).to_parquet(out, index=False)
    assert export_votes(db_url, out).total == 6
    again = pd.read_parquet(out)
    assert tuple(again.columns) == COLUMN_NAMES and not again["ood"].any() and again["ratio_a"].isna().all()
    pd.DataFrame({"song_id": ["x"]}).to_parquet(out)
    with pytest.raises(ValueError, match="lacks columns"):
        export_votes(db_url, out)


def test_pair_from_real_write_edit_outputs(tmp_path):
    """Contract with beatedit.editing.render.write_edit: its X.wav + X.edl.json make a valid pair."""
    render = pytest.importorskip("beatedit.editing.render")
    import numpy as np

    from beatedit.editing.edl import EDL, Segment

    sr, n = 22050, 22050
    src = (0.2 * np.sin(2 * np.pi * 220 * np.arange(n) / sr)).astype(np.float32)[None, :]
    root = tmp_path / "renders"
    outs = []
    for name, (a, b) in {"champion": (0, n // 2), "baseline": (n // 4, 3 * n // 4)}.items():
        edl = EDL(source_path=str(tmp_path / "song.wav"), source_sr=sr, source_channels=1, source_samples=n, segments=[Segment(a, b)],
                  song_id="song_042", target_ratio=0.5)
        wav, _js = render.write_edit(edl, root / "song_042" / f"{name}.wav", source=src)
        outs.append(wav)
    rec = pair_from_renders(root, outs[0], outs[1], actions_a=[0, 1], actions_b=[1, 0], kind_a="champion", kind_b="baseline", reward_margin=0.1)
    write_pair_manifest(root, [rec])
    (lp,) = load_manifest(root).pairs
    assert lp.spec.song_id == "song_042" and json.loads(lp.edl_a)["segments"][0]["end_sample"] == n // 2


# --- CLI ---------------------------------------------------------------------------------------------------------
def test_cli_export_and_serve_refuses_open_remote(renders, db_url, tmp_path):
    import argparse

    from beatedit.feedback.cli import add_feedback_cli

    p = argparse.ArgumentParser()
    add_feedback_cli(p.add_subparsers(dest="cmd"))
    a = p.parse_args(["feedback", "serve", "--renders", str(renders), "--db", db_url, "--port", "9999"])
    assert (a.host, a.port, a.secret, a.rater_tokens) == ("127.0.0.1", 9999, "BEATEDIT_FEEDBACK_SECRET", None) and callable(a.func)
    a = p.parse_args(["feedback", "export", "--db", db_url, "-o", str(tmp_path / "x.parquet")])
    assert a.output.endswith("x.parquet")

    open_db(db_url).dispose()
    out = tmp_path / "cli.parquet"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "beatedit.feedback", "export", "--db", db_url, "-o", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["total"] == 0 and out.exists()
    r = subprocess.run([sys.executable, "-m", "beatedit.feedback", "serve", "--renders", str(renders), "--db", db_url, "--host", "0.0.0.0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "non-loopback" in r.stderr
    r = subprocess.run([sys.executable, "-m", "beatedit.feedback", "serve", "--renders", str(tmp_path / "missing"), "--db", db_url],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "render folder does not exist" in r.stderr


def test_no_pipeline_framework_imports():
    root = REPO / "beatedit" / "feedback"
    for f in root.glob("*.py"):
        text = f.read_text()
        for mod in ("prefect", "mlflow", "dvc"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, (f, mod)


# --- PostgreSQL -------------------------------------------------------------------------------------------------
def _pg_cluster(tmp_path):
    """Start a throw-away PostgreSQL cluster on a free loopback port; yields its port. Needs initdb /
    pg_ctl on PATH; as root, runs them as the 'postgres' user."""
    import getpass
    import shutil
    import socket

    if not (shutil.which("initdb") and shutil.which("pg_ctl")):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed")
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run PostgreSQL")
        prefix, owner = ["runuser", "-u", "postgres", "--"], "postgres"
    else:
        owner = getpass.getuser()
    base = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    shutil.chown(base, owner)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run(prefix + ["initdb", "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True, timeout=120)
    subprocess.run(prefix + ["pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"), "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    return prefix, data, port, base


def test_postgresql_backend(renders, tmp_path):
    """The same schema, migrations, queue SQL, replay protection and CHECK constraints on a real
    PostgreSQL. The server itself needs a sync driver (psycopg) for postgresql:// URLs; this test
    drives the identical code through SQLAlchemy's asyncpg dialect bridged back to sync code."""
    asyncio = pytest.importorskip("asyncio")
    pytest.importorskip("asyncpg", reason="asyncpg not installed")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.util import greenlet_spawn

    from beatedit.feedback.db import FeedbackDB, migrate
    from beatedit.feedback.export import votes_frame
    from beatedit.feedback.queue import VoteError, count_votes, ensure_rater

    prefix, data, port, base = _pg_cluster(tmp_path)
    m = margins(renders)

    def work(engine):
        assert migrate(engine) == SCHEMA_VERSION and migrate(engine) == SCHEMA_VERSION
        db = FeedbackDB(engine)
        assert sync_manifest(db, renders).added == 6
        ensure_rater(db, "alice")
        order = []
        while its := issue_next(db, KEY, renders, "alice"):
            submit_vote(db, verify_issue(KEY, its[0].token), "a", strength=2, comment="pg")
            with pytest.raises(VoteError) as ei:
                submit_vote(db, verify_issue(KEY, its[0].token), "b")
            assert ei.value.code == "replayed"
            order.append(its[0].pair_id)
        assert order == sorted(m, key=m.get)
        assert count_votes(db)["total"] == 6
        df, skipped, _dropped = votes_frame(db)
        assert len(df) == 6 and skipped == 0 and tuple(df.columns) == COLUMN_NAMES
        with pytest.raises(Exception, match="ck_vote_strength"):
            with db.write_conn() as c:
                c.execute(text("update votes set strength = 9"))

    async def main():
        engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres")
        try:
            await greenlet_spawn(work, engine.sync_engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    finally:
        subprocess.run(prefix + ["pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True, timeout=120)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


# --- issue 20.6: the original for reference, and refusals of a bad original -----------------------------------
def test_original_served_only_when_the_manifest_names_a_safe_one(tmp_path, renders, db_url):
    recs = json.loads((renders / "pairs.json").read_text())
    recs[0]["original"] = recs[0]["a"]["wav"]  # any WAV inside the folder
    recs[1]["original"] = "../outside.wav"  # leaves the folder: that record is rejected, the others load
    (tmp_path / "outside.wav").write_bytes((renders / recs[0]["a"]["wav"]).read_bytes())
    (renders / "pairs.json").write_text(json.dumps(recs))
    with ServerThread(create_app(renders, db_url, SECRET, min_listen_s=3)) as srv:
        assert c_health(srv)["rejected_pairs"] == 1
        c = client(srv, "olga")
        got = {}
        for _ in range(5):
            it = c.get("/api/next").json()["items"][0]
            got[it["song_id"] + it["token"][:8]] = it
            assert it["listen"]["min_listen_s"] == 3.0
            if "original" in it["audio"]:
                r = c.get(it["audio"]["original"])
                assert r.status_code == 200 and r.content == (renders / recs[0]["a"]["wav"]).read_bytes()
            else:
                assert c.get(it["audio"]["a"].rsplit("/", 1)[0] + "/original").status_code == 404
            c.post("/api/vote", json={"token": it["token"], "choice": "skip"})
        assert any("original" in it["audio"] for it in got.values())
    with pytest.raises(ValueError, match="min_listen"):
        create_app(renders, db_url, SECRET, min_listen_s=-1)


def c_health(srv) -> dict:
    return httpx.get(f"{srv.url}/api/health", timeout=20).json()
