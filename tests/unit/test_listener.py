"""Simulated listener v2 (the gold): duration in seconds, alignment, seams on rendered audio, the real
ending and start, the arc, fragmentation, repetition, the Bradley-Terry preference model, and editors."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math

import numpy as np
import pytest

import beatedit.judging.listener as listener_mod
from beatedit.config import ListenerConfig
from beatedit.judging.listener import COMPONENTS, batch_score, prefer, render_mono, score_edit
from tests.songkit import SECTIONS, SR, make_song, runs

# songkit layout: 16-beat sections/phrases, bars of 4:
# intro 0-15, verse 16-31, chorus 32-47, break (silent) 48-63, verse 64-79, chorus 80-95, outro 96-111


@pytest.fixture(scope="module")
def world():
    return make_song()


def _check(r: dict) -> dict:
    for k in COMPONENTS:
        assert 0.0 <= r[k] <= 1.0, (k, r[k])
    assert 0.0 <= r["total"] <= 1.0
    return r


def test_independent_of_the_dense_reward_code():
    tree = ast.parse(inspect.getsource(listener_mod))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any("rewards" in m for m in imported), imported


def test_components_in_unit_interval(world):
    song, y = world
    rng = np.random.default_rng(1)
    n = song.n_beats
    checked = []
    for i in range(60):
        src = rng.integers(0, n, size=int(rng.integers(1, 150))) if i % 2 else \
            np.concatenate([np.arange(a, min(n, a + 12)) for a in rng.integers(0, n, size=4)])
        g = rng.uniform(0, 1, size=(len(src), 2))
        edit = np.column_stack([src, g])
        t = float(rng.uniform(0.1, 1.0))
        checked.append(_check(score_edit(song, edit, t))["total"])
        if i % 6 == 0:
            checked.append(_check(score_edit(song, edit, t, y, SR))["total"])
    assert len(checked) == 60 + 10 and np.std(checked) > 0.01


def test_whole_song_at_full_length_is_perfect(world):
    song, y = world
    for kw in ({}, {"audio": y, "sr": SR}):
        r = score_edit(song, runs((0, song.n_beats)), 1.0, **kw)
        assert r["total"] == pytest.approx(1.0)
        assert r["ratio"] == pytest.approx(1.0, abs=1e-6) and r["n_splices"] == 0


def test_prefers_on_bar_edit_to_the_same_edit_shifted_off_bar(world):
    song, y = world
    on = runs((0, 16), (32, 48), (64, 96))
    off = runs((2, 18), (34, 50), (66, 98))  # same lengths, every cut two beats late
    for kw in ({}, {"audio": y, "sr": SR}):
        a, b = score_edit(song, on, 0.57, **kw), score_edit(song, off, 0.57, **kw)
        assert a["ratio"] == pytest.approx(b["ratio"])
        assert a["alignment"] == 1.0 and b["alignment"] < 0.5
        assert b["start"] < a["start"]  # it no longer starts at the song's start
        assert a["total"] > b["total"] + 0.05


def test_penalises_a_wrong_length_edit(world):
    song, y = world
    edit = runs((0, 16), (32, 48), (64, 96))  # 64 of 112 beats: ratio 0.571
    right = score_edit(song, edit, 0.57)
    near = score_edit(song, edit, 0.62)
    wrong = score_edit(song, edit, 0.8)
    assert right["duration"] == pytest.approx(1.0)
    assert wrong["duration"] < near["duration"] < right["duration"]
    assert wrong["duration"] < 0.05
    assert wrong["total"] < right["total"] - 0.15
    # the tolerance is one beat (0.5 s here), in seconds, whatever the song's length
    beat = 0.5
    secs = score_edit(song, edit, target_seconds=64 * beat + 0.9 * beat)
    assert secs["duration"] == pytest.approx(1.0) and secs["error_seconds"] == pytest.approx(-0.9 * beat)
    assert score_edit(song, edit, target_seconds=64 * beat + 3 * beat)["duration"] < 0.7
    # and between two edits for the same target, the one of the right length wins
    longer = runs((0, 16), (32, 48), (64, 112))  # ratio 0.714
    assert score_edit(song, longer, 0.57)["duration"] < 0.2
    # target defaults to the edit's own
    assert score_edit(song, dataclasses.make_dataclass("E", ["output_beats", "target_ratio"])(edit, 0.8))["duration"] \
        == pytest.approx(wrong["duration"])
    with pytest.raises(ValueError, match="target_ratio"):
        score_edit(song, edit)


def test_seams_are_measured_on_the_rendered_audio(world):
    song, y = world
    clean = runs((32, 40), (88, 96))  # chorus -> the other chorus, same bar position
    into_silence = runs((32, 40), (56, 64))  # chorus -> the silent break
    c = score_edit(song, clean, 0.15, y, SR)
    s = score_edit(song, into_silence, 0.15, y, SR)
    assert c["seams"] > 0.8
    assert s["seams"] < 0.3
    # Features that say the break is loud (a song with a bridge there) but the audio with the silent break:
    # the features-only path is fooled, the audio path is not.
    loud_feats = make_song(sections=tuple(x if x[0] != "break" else ("chorus", 0.6, 65, 6) for x in SECTIONS))[0]
    fooled = score_edit(loud_feats, into_silence, 0.15)
    heard = score_edit(loud_feats, into_silence, 0.15, y, SR)
    assert fooled["seams"] > 0.8
    assert heard["seams"] < 0.3
    # a fade-in right after a splice is heard as a gap (gain 0 at the seam)
    faded = [(b, 1.0, 1.0) for b in range(32, 40)] + [(88, 0.0, 1.0)] + [(b, 1.0, 1.0) for b in range(89, 96)]
    assert score_edit(song, faded, 0.15, y, SR)["seams"] < c["seams"] - 0.2


def test_render_mono_matches_the_project_renderer(world):
    from beatedit.editing.editors import edit_with
    from beatedit.editing.render import render

    song, y = world
    edit = edit_with("random", song, 0.6, rng=np.random.default_rng(4), crossfade_ms=10.0)
    assert len(edit.edl.splice_positions()) > 3
    ours, pos = render_mono(song, edit, y, SR, crossfade_ms=10.0)
    theirs = render(edit.edl, source=y[None, :])[0]
    assert len(ours) == len(theirs) == edit.edl.n_samples
    assert list(pos) == edit.edl.splice_positions()
    # identical except inside crossfades that touch a fade beat (the project renderer keeps ramping the gain
    # there; the listener holds the gain at the seam constant)
    B = np.rint(song.beat_bounds * SR).astype(int)
    ob = np.asarray(edit.output_beats)
    offs = np.concatenate([[0], np.cumsum(B[ob[:, 0].astype(int) + 1] - B[ob[:, 0].astype(int)])])
    near_fade = np.zeros(len(ours), dtype=bool)
    for k in np.flatnonzero((ob[:, 1] != 1) | (ob[:, 2] != 1)):
        near_fade[max(0, offs[k] - 110):offs[k + 1] + 110] = True
    assert near_fade.mean() < 0.15  # a one-bar fade-out (FADE_OUT) and its neighbourhood
    assert np.allclose(ours[~near_fade], theirs[~near_fade], atol=1e-5)
    assert np.allclose(ours, theirs, atol=0.01)
    # contiguous material is a plain copy of the source
    whole, pos = render_mono(song, runs((0, song.n_beats)), y, SR)
    assert len(pos) == 0 and np.array_equal(whole, y[B[0]:B[-1]])


def test_the_arc_section_types_in_order_and_the_last_chorus(world):
    song, y = world
    with_chorus = runs((0, 16), (32, 48), (64, 80))  # intro, chorus, verse
    without = runs((0, 16), (16, 32), (64, 80))  # same length, both choruses dropped
    keeps_last = runs((0, 16), (64, 96))  # intro, verse, the last chorus
    keeps_first = runs((0, 16), (16, 48))  # intro, verse, the first chorus
    backwards = runs((0, 16), (64, 80), (16, 32))  # jumps back: the song's order broken
    for kw in ({}, {"audio": y, "sr": SR}):
        a, b = score_edit(song, with_chorus, 0.43, **kw), score_edit(song, without, 0.43, **kw)
        assert a["arc"] > b["arc"] + 0.2
        assert score_edit(song, keeps_last, 0.43, **kw)["arc"] > score_edit(song, keeps_first, 0.43, **kw)["arc"]
        assert score_edit(song, backwards, 0.43, **kw)["arc"] < score_edit(song, keeps_first, 0.43, **kw)["arc"]


def test_ending_start_fragmentation_and_repetition(world):
    song, y = world
    n = song.n_beats
    real_end = score_edit(song, runs((0, 16), (80, n)), 0.43)
    section_end = score_edit(song, runs((0, 48)), 0.43)  # stops exactly where the break starts
    fade = score_edit(song, runs((0, 48), fade_out_last=4), 0.43)
    long_fade = score_edit(song, runs((0, 48), fade_out_last=16), 0.43)
    bar_end = score_edit(song, runs((0, 44)), 0.39)
    mid_bar = score_edit(song, runs((0, 46)), 0.41)
    assert real_end["ending"] == 1.0
    assert 1.0 > section_end["ending"] > fade["ending"] > long_fade["ending"] > bar_end["ending"] > mid_bar["ending"]
    assert fade["ending"] <= 0.5
    # "keep + stop at a section start" is no longer a perfect edit
    assert section_end["total"] < 0.99 and section_end["total"] < real_end["total"] + 0.1
    good_start = score_edit(song, runs((0, 32), fade_out_last=4), 0.29)
    bad_start = score_edit(song, runs((5, 37), fade_out_last=4), 0.29)
    faded_in = score_edit(song, [(0, 0.0, 1.0)] + runs((1, 32), fade_out_last=4), 0.29)
    assert good_start["start"] == 1.0 and bad_start["start"] == 0.0 and faded_in["start"] == 0.5
    # eight one-bar pieces vs three pieces of the same length
    frag = score_edit(song, runs(*[(12 * k, 12 * k + 4) for k in range(8)]), 32 / n)
    three = score_edit(song, runs((0, 12), (40, 52), (104, 112)), 32 / n)
    assert frag["duration"] == three["duration"] == 1.0
    assert frag["fragmentation"] < 0.5 < three["fragmentation"] == 1.0
    assert frag["total"] < three["total"] - 0.1
    # looping one beat over and over inside one phrase, and repeating most of the output
    loops = [(b, 1.0, 1.0) for b in range(0, 4)] + [(4, 1.0, 1.0)] * 9 + [(b, 1.0, 1.0) for b in range(5, 32)]
    two_loops = [(b, 1.0, 1.0) for b in range(0, 4)] + [(4, 1.0, 1.0)] * 3 + [(b, 1.0, 1.0) for b in range(5, 32)]
    assert score_edit(song, two_loops, 0.3)["repetition"] == 1.0  # two loop-backs in a phrase are fine
    assert score_edit(song, loops, 0.36)["repetition"] < 0.85
    repeated = runs((0, 16), (0, 16), (0, 16), (16, 32), fade_out_last=4)  # half the output is repeats
    assert score_edit(song, repeated, 0.57)["repetition"] < good_start["repetition"]


def test_prefer_matches_bradley_terry_frequencies():
    rng = np.random.default_rng(123)
    a, b, noise = {"total": 0.62}, {"total": 0.5}, 0.1
    p = 1.0 / (1.0 + math.exp(-(0.62 - 0.5) / noise))
    draws = [prefer(a, b, noise, rng) for _ in range(2000)]
    assert all(pa == pytest.approx(p) for _, pa in draws)
    k = sum(1 for c, _ in draws if c == 0)
    sigma = math.sqrt(2000 * p * (1 - p))
    assert abs(k - 2000 * p) < 3 * sigma, (k, 2000 * p, sigma)
    # symmetric, and equal scores are a coin flip
    assert prefer(b, a, noise, rng)[1] == pytest.approx(1 - p)
    ties = [prefer(0.4, 0.4, noise, rng) for _ in range(2000)]
    assert all(pa == 0.5 for _, pa in ties)
    assert abs(sum(c == 0 for c, _ in ties) - 1000) < 3 * math.sqrt(500)


def test_prefer_is_deterministic_without_noise():
    rng = np.random.default_rng(0)
    for noise in (0.0, 1e-9):
        assert {prefer(0.51, 0.5, noise, rng) for _ in range(200)} == {(0, 1.0)}
        assert {prefer(0.5, 0.51, noise, rng) for _ in range(200)} == {(1, 0.0)}
    assert prefer(0.5, 0.5, 0.0, rng) == (0, 0.5)
    with pytest.raises(ValueError):
        prefer(0.5, 0.4, -1.0, rng)
    # large but finite score gaps do not overflow
    assert prefer(1.0, 0.0, 1e-6, rng) == (0, 1.0)


def test_batch_score_and_input_checks(world):
    song, y = world
    edits = [runs((0, 16), (32, 48)), runs((0, 40)), runs((16, 48), fade_out_last=4)]
    batch = batch_score(song, edits, [0.3, 0.35, 0.3], y, SR)
    assert batch == [score_edit(song, e, t, y, SR) for e, t in zip(edits, [0.3, 0.35, 0.3])]
    assert batch_score(song, edits, 0.3) == [score_edit(song, e, 0.3) for e in edits]
    with pytest.raises(ValueError, match="lasts"):
        score_edit(song, edits[0], 0.3, y[::2], SR)  # wrong rate for this audio
    with pytest.raises(ValueError, match="sample rate"):
        score_edit(song, edits[0], 0.3, y)
    with pytest.raises(ValueError, match="outside"):
        score_edit(song, [0, song.n_beats], 0.3)
    weights = ListenerConfig(w_duration=1.0, w_alignment=0.0, w_seams=0.0, w_ending=0.0, w_start=0.0, w_arc=0.0,
                             w_fragmentation=0.0, w_repetition=0.0)
    r = score_edit(song, edits[0], 0.9, cfg=weights)
    assert r["total"] == pytest.approx(r["duration"])


# ----------------------------------------------------------------------------- editors
def _synthetic_songs(k: int):
    rng = np.random.default_rng(2024)
    pool = [("verse", 0.25, 60, 3), ("chorus", 0.6, 65, 6), ("bridge", 0.18, 62, 4), ("verse", 0.22, 60, 3),
            ("chorus", 0.55, 65, 6)]
    for s in range(k):
        body = [pool[i] for i in rng.permutation(len(pool))]
        sections = (("intro", 0.08, 57, 2), *body, ("outro", 0.12, 57, 2))
        yield make_song(bpm=float(rng.uniform(90, 140)), sections=sections, seed=s, song_id=f"synth_{s}"), \
            float(rng.uniform(0.5, 0.8))


def test_listener_prefers_heuristic_to_random_edits_on_synthetic_songs():
    from beatedit.editing.editors import edit_with

    wins = total = 0
    for (song, y), t in _synthetic_songs(8):
        h = score_edit(song, edit_with("heuristic", song, t), t, y, SR)
        for r in range(3):
            rnd = score_edit(song, edit_with("random", song, t, rng=np.random.default_rng(r)), t, y, SR)
            wins += h["total"] > rnd["total"]
            total += 1
    assert wins / total >= 0.9, f"heuristic preferred on {wins}/{total}"


# ----------------------------------------------------------------------------- through the real front end
@pytest.mark.slow
def test_listener_prefers_heuristic_to_random_on_generated_corpus_songs(tmp_path):
    """The issue's must-show: on at least 90% of generated songs the listener prefers the heuristic
    editor's edit to a random edit (10 corpus songs of the default corpus's length range, 60-90 s, through the
    real front end; 3 random edits each, a song counts when the heuristic wins the majority of its pairs).
    On the 24-song default corpus itself the measured rate was 24/24 songs, 72/72 pairs (2026-11-24)."""
    from beatedit.audio.io import load_mono
    from beatedit.config import Config, CorpusConfig
    from beatedit.corpus.generator import generate_song, write_song
    from beatedit.editing.editors import edit_with
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.stems import StemCache

    cfg = Config()
    corpus = CorpusConfig(n_songs=10, min_seconds=60.0, max_seconds=90.0, seed=1234)
    cache = StemCache(tmp_path / "stems")
    sr = cfg.audio.analysis_sr
    rng = np.random.default_rng(0)
    song_wins, pair_wins, pairs, report = 0, 0, 0, []
    for i in range(corpus.n_songs):
        rec = write_song(generate_song(i, corpus), tmp_path)
        song = analyse_song(rec["path"], cfg, cache)
        y = load_mono(rec["path"], sr)
        t = float(rng.uniform(cfg.env.target_min, cfg.env.target_max))
        h = _check(score_edit(song, edit_with("heuristic", song, t), t, y, sr))["total"]
        wins = 0
        for r in range(3):
            rnd = _check(score_edit(song, edit_with("random", song, t, rng=np.random.default_rng(100 * i + r)), t, y, sr))
            wins += h > rnd["total"]
        song_wins += wins >= 2
        pair_wins += wins
        pairs += 3
        report.append(f"{song.song_id}: heuristic {h:.2f}, wins {wins}/3")
    assert song_wins / corpus.n_songs >= 0.9, report
    assert pair_wins / pairs >= 0.9, report
