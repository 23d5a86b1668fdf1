"""Users' own songs on the listening page, over real HTTP (uvicorn on loopback) with the production variation
renderer (a policy and a reward-model checkpoint, the real analysis): upload -> N ranked variations -> pick ->
N-1 preferences in the vote store and the export; bad uploads get clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from app.variations import page_renderer
from beatedit.config import Config
from beatedit.feedback import export_votes
from beatedit.feedback.app import ServerThread, create_app
from beatedit.feedback.db import IssuedPair, Pair, Vote, open_db
from beatedit.feedback.demo import build_demo_renders
from beatedit.feedback.uploads import UploadConfig, sniff_audio
from tests.songkit import write_outside_song

SECRET = "upload-test-secret-0123456789"


@pytest.fixture(scope="module")
def models_kit(tmp_path_factory) -> dict:
    from models.policy import policy_for_env
    from models.reward_model import RewardModel

    tmp = tmp_path_factory.mktemp("uploads")
    cfg = Config()
    torch.manual_seed(0)
    policy = policy_for_env(cfg.env, cfg.rlhf.policy)
    torch.manual_seed(1)
    reward = RewardModel(d_model=16, n_layers=1, n_heads=2).eval()
    return {"cfg": cfg, "policy": policy, "reward": reward, "song": write_outside_song(tmp / "mine.wav", seed=4242)}


def make_app(tmp_path: Path, kit: dict, max_bytes: int = 8 * 2 ** 20):
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=1, seconds=0.5)
    db_url = f"sqlite:///{tmp_path / 'votes.db'}"
    uploads = UploadConfig(tmp_path / "uploads", page_renderer(kit["cfg"], kit["policy"], kit["reward"]), renderer_id="test",
                           max_bytes=max_bytes)
    return create_app(renders, db_url, SECRET, uploads=uploads), db_url


def client(srv, rater: str) -> httpx.Client:
    c = httpx.Client(base_url=srv.url, timeout=300)
    assert c.post("/api/session", json={"rater": rater}).status_code == 200
    return c


def test_upload_variations_pick_become_preferences(tmp_path, models_kit, monkeypatch):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    app, db_url = make_app(tmp_path, models_kit)
    data = Path(models_kit["song"]).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with ServerThread(app) as srv:
        alice, bob = client(srv, "alice"), client(srv, "bob")
        assert alice.get("/api/health").json()["uploads"] is True
        r = alice.post("/api/upload?target=15&n=3", content=data, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        body = r.json()
        vs = body["variations"]
        assert [v["k"] for v in vs] == [1, 2, 3]
        scores = [v["score"] for v in vs]
        assert scores == sorted(scores, reverse=True)  # ranked by the reward model, best first
        assert all(abs(v["duration"] - 15.0) < 1.0 for v in vs)  # the length guard: within a beat
        # stored content-addressed, not executable; the renders are WAVs
        src = tmp_path / "uploads" / sha / "source.wav"
        assert src.read_bytes() == data and not (src.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
        for v in vs:
            a = alice.get(v["audio"])
            assert a.status_code == 200 and a.headers["content-type"] == "audio/wav" and a.content[:4] == b"RIFF"
        # never served outside its own pairs: another rater, no rater, a forged token
        assert bob.get(vs[0]["audio"]).status_code == 403
        assert httpx.get(srv.url + vs[0]["audio"]).status_code == 401
        forged = body["token"][:-4] + ("AAAA" if not body["token"].endswith("AAAA") else "BBBB")
        assert alice.get(f"/api/variation/{forged}/1").status_code == 403
        assert alice.get(f"/api/variation/{body['token']}/4").status_code == 404
        # the A/B queue never issues upload pairs (bob sees only the listening set's one pair)
        # pick variation 2: chosen over 1 and over 3
        bad = alice.post("/api/upload/pick", json={"token": body["token"], "choice": 9})
        assert bad.status_code == 422
        assert bob.post("/api/upload/pick", json={"token": body["token"], "choice": 1}).status_code == 403
        p = alice.post("/api/upload/pick", json={"token": body["token"], "choice": 2, "listened": [3.0, 4.5, 0.0]})
        assert p.status_code == 201, p.text
        assert p.json()["preferences"] == 2
        again = alice.post("/api/upload/pick", json={"token": body["token"], "choice": 1})
        assert again.status_code == 409 and again.json()["error"] == "already_picked"
        # the same upload again reuses the stored set (same scores, no new render)
        r2 = alice.post("/api/upload?target=15&n=3", content=data, headers={"content-type": "audio/wav"})
        assert [v["score"] for v in r2.json()["variations"]] == scores
        nxt = bob.get("/api/next?n=5").json()
        assert len(nxt["items"]) == 1 and not nxt["items"][0]["song_id"].startswith("upload-")
    db = open_db(db_url)
    try:
        with db.read() as s:
            votes = s.query(Vote).filter(Vote.pair_id.like("upload-%")).order_by(Vote.id).all()
            pairs = {p.id: p for p in s.query(Pair).filter(Pair.id.like("upload-%"))}
            assert all(not p.active for p in pairs.values())
            assert len(votes) == 2 and {v.rater_id for v in votes} == {"alice"} and {v.choice for v in votes} == {"a"}
            assert [(v.listened_a, v.listened_b) for v in votes] == [(4.5, 3.0), (4.5, 0.0)]
            assert all(pairs[v.pair_id].wav_a.endswith("variation.2.wav") for v in votes)
            assert sorted(pairs[v.pair_id].wav_b.rsplit("/", 1)[1] for v in votes) == ["variation.1.wav", "variation.3.wav"]
            assert s.query(IssuedPair).filter(IssuedPair.pair_id.like("upload-%")).count() == 2
    finally:
        db.dispose()
    out = tmp_path / "human.parquet"
    rep = export_votes(db_url, out)
    df = pd.read_parquet(out)
    up = df[df["song_id"] == f"upload-{sha[:16]}"]
    assert rep.exported == 2 and len(up) == 2 and set(up["choice"]) == {0.0} and set(up["source"]) == {"human"}
    assert all(len(a) == len(b) > 0 for a, b in zip(up["actions_a"], up["actions_b"]))
    assert (tmp_path / "uploads" / sha).is_dir() and list((tmp_path / "uploads" / sha).rglob("analysis.npz"))
    # the export carries the upload's beat features beside the table, so the preferences stage keeps its pairs
    # (``preferences.human_split: train``) and the reward stage can read the song
    from beatedit.audio.song import SongAnalysis
    from beatedit.config import Config
    from beatedit.preferences.pairs import drop_human_rows_without_features, load_human_votes

    assert rep.analyses == 1
    copy = tmp_path / "analyses" / f"upload-{sha[:16]}.npz"
    assert len(SongAnalysis.load(copy).beat_times) > 0
    rows = load_human_votes(out, Config())
    assert set(rows["split"]) == {"train"}
    kept, dropped = drop_human_rows_without_features(rows, lambda s: (tmp_path / "analyses" / f"{s}.npz").exists())
    assert (len(kept), dropped) == (2, 0)
    assert drop_human_rows_without_features(rows, lambda s: False)[1] == 2


def test_bad_uploads_get_clear_errors(tmp_path, models_kit, monkeypatch):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    app, _ = make_app(tmp_path, models_kit, max_bytes=8 * 2 ** 20)
    short = tmp_path / "short.wav"
    sf.write(short, (0.3 * np.sin(np.linspace(0, 2000, 22050 * 2))).astype(np.float32), 22050)  # 2 s: too short
    song = Path(models_kit["song"]).read_bytes()
    octet = {"content-type": "application/octet-stream"}
    with ServerThread(app) as srv:
        c = client(srv, "carol")
        cases = [
            (c.post("/api/upload?target=15&n=3", content=os.urandom(8 * 2 ** 20 + 10), headers=octet), 413, "too_large"),
            (c.post("/api/upload?target=15&n=3", content=b"#!/bin/sh\nrm -rf /\n" * 10, headers=octet), 415, "not_audio"),
            (c.post("/api/upload?target=15&n=3", content=b"", headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?target=15&n=3", content=b"RIFF", headers={"content-type": "text/plain"}), 415, "unsupported_media_type"),
            (c.post("/api/upload?target=0&n=3", content=b"RIFF", headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?target=nan&n=3", content=b"RIFF", headers=octet), 422, None),
            (c.post("/api/upload?target=abc&n=3", content=b"RIFF", headers=octet), 422, "invalid_request"),
            (c.post("/api/upload?target=15&n=1", content=b"RIFF", headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?target=15&n=40", content=b"RIFF", headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?n=3", content=b"RIFF", headers=octet), 422, "invalid_request"),
            (httpx.post(srv.url + "/api/upload?target=15&n=3", content=b"RIFF", headers=octet), 401, "unauthenticated"),
            (c.post("/api/upload?target=15&n=3", content=b"RIFF", headers={**octet, "origin": "http://evil.example"}), 403, "cross_origin"),
            (c.post("/api/upload?target=15&n=3", content=b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk", headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?target=1.5&n=2", content=short.read_bytes(), headers=octet), 422, "bad_upload"),
            (c.post("/api/upload?target=600&n=2", content=song, headers=octet), 422, "bad_upload"),
        ]
        for i, (resp, status, code) in enumerate(cases):
            assert resp.status_code == status, (i, resp.text)
            if code is not None:
                assert resp.json()["error"] == code, (i, resp.text)
            assert "Traceback" not in resp.text
        # the messages say what is wrong, without server paths
        assert "not shorter than the song" in cases[-1][0].json()["detail"]
        assert "too short" in cases[-2][0].json()["detail"] or "short" in cases[-2][0].json()["detail"]
        assert "cannot edit this file" in cases[-3][0].json()["detail"]
        for resp, *_ in cases[-3:]:
            assert str(tmp_path) not in resp.text
        assert "2 to 6" in cases[7][0].json()["detail"]
        # a pick with a token that is not a variation token
        assert c.post("/api/upload/pick", json={"token": "abc.def", "choice": 1}).json()["error"] == "forged_token"
        assert c.post("/api/upload/pick", json={"token": "nonsense", "choice": 1}).status_code == 400
        assert c.post("/api/upload/pick", json={"token": "abc.def", "choice": "1"}).status_code == 422


def test_sniff_audio():
    assert sniff_audio(b"RIFF\x00\x00\x00\x00WAVEfmt ") == ".wav"
    assert sniff_audio(b"fLaC\x00\x00") == ".flac" and sniff_audio(b"OggS\x00") == ".ogg"
    assert sniff_audio(b"ID3\x04") == ".mp3" and sniff_audio(b"\xff\xfb\x90") == ".mp3"
    assert sniff_audio(b"MZ\x90\x00") is None and sniff_audio(b"#!/bin/sh") is None and sniff_audio(b"") is None


def test_upload_config_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="--max-upload-mb"):
        UploadConfig(tmp_path / "u", lambda *a: [], max_bytes=10)
    assert json.dumps({"ok": True})


@pytest.mark.parametrize("extra,message", [
    (["--model", "/nonexistent/policy.pt"], "--model: cannot load model"),
    (["--model", "POLICY", "--reward-model", "POLICY"], "--reward-model:"),
    (["--model", "POLICY", "--reward-model", "REWARD", "--max-upload-mb", "0"], "--max-upload-mb: must lie in"),
    (["--model", "POLICY", "--reward-model", "REWARD", "--max-upload-mb", "nan"], "--max-upload-mb: must lie in"),
    (["--model", "POLICY", "--reward-model", "REWARD", "--uploads", "FILE"], "exists and is not a folder"),
])
def test_serve_with_uploads_refuses_bad_settings_before_serving(tmp_path, capsys, extra, message):
    """`beatedit feedback serve --uploads DIR`: the app layer injects the renderer; bad models or limits are one
    `error:` line and exit 2 (nothing is served)."""
    from app.cli import main
    from models.policy import policy_for_env, save_policy
    from models.reward_model import RewardModel, save_reward_model

    cfg = Config()
    pol = save_policy(tmp_path / "policy.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    rew = save_reward_model(tmp_path / "reward.pt", RewardModel(d_model=16, n_layers=1, n_heads=2))
    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=1, seconds=0.5)
    files = {"POLICY": str(pol), "REWARD": str(rew), "FILE": str(renders / "pairs.json")}
    extra = [files.get(x, x) for x in extra]
    with pytest.raises(SystemExit) as exc:
        main(["feedback", "serve", "--renders", str(renders), "--db", f"sqlite:///{tmp_path / 'v.db'}",
              "--uploads", str(tmp_path / "uploads"), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_uploads_need_the_beatedit_cli(tmp_path, capsys):
    """`python -m beatedit.feedback serve --uploads` has no models to render with: refused with the reason."""
    from beatedit.feedback.cli import main as feedback_main

    renders = tmp_path / "renders"
    build_demo_renders(renders, n_songs=1, pairs_per_song=1, seconds=0.5)
    code = feedback_main(["serve", "--renders", str(renders), "--db", f"sqlite:///{tmp_path / 'v.db'}",
                          "--uploads", str(tmp_path / "uploads")])
    assert code == 2 and "start the page with `beatedit feedback serve`" in capsys.readouterr().err
