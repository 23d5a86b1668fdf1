"""Dense reward: each component moves the right way on hand-made good vs bad edits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from beatedit.config import DenseRewardConfig
from beatedit.judging.dense import COMPONENTS, dense_reward
from beatedit.audio.schema import col
from tests.songkit import SECTIONS, make_song, runs, with_columns

# songkit layout: 16-beat sections/phrases, bars of 4:
# intro 0-15, verse 16-31, chorus 32-47, break (silent) 48-63, verse 64-79, chorus 80-95, outro 96-111


@pytest.fixture(scope="module")
def song():
    return make_song()[0]


def _check(r: dict, cfg: DenseRewardConfig = DenseRewardConfig()) -> dict:
    for k in COMPONENTS:
        assert 0.0 <= r[k] <= 1.0, (k, r[k])
    total = cfg.w_tempo * r["tempo"] + cfg.w_energy * r["energy"] + cfg.w_phrase * r["phrase"] + cfg.w_transition * r["transition"]
    assert r["total"] == pytest.approx(total)
    return r


def test_components_stay_in_unit_interval_on_random_edits(song):
    rng = np.random.default_rng(0)
    n = song.n_beats
    totals = []
    for _ in range(300):
        m = int(rng.integers(1, 2 * n))
        kind = rng.integers(3)
        if kind == 0:  # arbitrary beats, loops and jumps everywhere
            src = rng.integers(0, n, size=m)
        elif kind == 1:  # a few random runs
            starts = rng.integers(0, n - 1, size=rng.integers(1, 6))
            src = np.concatenate([np.arange(a, min(n, a + rng.integers(1, 40))) for a in starts])
        else:  # single beat repeated
            src = np.full(m, rng.integers(n))
        g = rng.uniform(0, 1, size=(len(src), 2))
        totals.append(_check(dense_reward(song, np.column_stack([src, g]), 0.6))["total"])
    assert len(totals) == 300 and np.std(totals) > 0.01  # every edit checked, and the edits are told apart


def test_baseline_editor_edits_score_in_range(song):
    from beatedit.editing.editors import edit_with  # a real EditResult from the edit program

    for t in (0.5, 0.7):
        for seed in range(5):
            r = _check(dense_reward(song, edit_with("random", song, t, rng=np.random.default_rng(seed)), t))
            assert r["total"] < 1.0
        _check(dense_reward(song, edit_with("heuristic", song, t), t))


def test_whole_song_scores_perfect_on_splice_terms_and_empty_edit_scores_zero(song):
    r = _check(dense_reward(song, runs((0, song.n_beats)), 1.0))
    assert r["tempo"] == r["phrase"] == r["transition"] == 1.0
    # the song itself holds a 16-beat silent break: a dead stretch the energy term sees
    assert r["energy"] < 1.0
    no_break = make_song(sections=tuple(s if s[0] != "break" else ("bridge", 0.2, 62, 4) for s in SECTIONS))[0]
    assert dense_reward(no_break, runs((0, no_break.n_beats)), 1.0)["energy"] == pytest.approx(1.0)
    assert dense_reward(song, [], 0.5) == {"tempo": 0.0, "energy": 0.0, "phrase": 0.0, "transition": 0.0, "total": 0.0}


def test_tempo_jump_across_a_splice_lowers_tempo(song):
    edit = runs((0, 16), (64, 80))  # intro -> second verse, on phrase boundaries
    steady = dense_reward(song, edit, 0.3)
    n = song.n_beats
    tempo = np.where(np.arange(n) < 56, 120.0, 140.0)  # the second half of the song is at 140 BPM
    two_tempi = with_columns(song, local_tempo=tempo)
    jumped = dense_reward(two_tempi, edit, 0.3)
    assert steady["tempo"] == 1.0
    assert jumped["tempo"] < 0.1
    assert jumped["total"] < steady["total"]
    # a splice that stays inside one tempo region is not penalised on the two-tempo song
    assert dense_reward(two_tempi, runs((0, 16), (32, 48)), 0.3)["tempo"] == 1.0
    # a small drift within the threshold is free
    drift = with_columns(song, local_tempo=np.where(np.arange(n) < 56, 120.0, 124.0))
    assert dense_reward(drift, edit, 0.3)["tempo"] == 1.0


def test_cut_mid_phrase_lowers_phrase(song):
    good = dense_reward(song, runs((0, 16), (32, 48), (64, 96)), 0.57)
    on_bar = dense_reward(song, runs((0, 16), (36, 52), (64, 96)), 0.57)  # in-point on a bar, not a phrase start
    mid_bar = dense_reward(song, runs((0, 16), (37, 53), (64, 96)), 0.57)  # in-point mid-bar
    assert good["phrase"] == 1.0
    assert mid_bar["phrase"] < on_bar["phrase"] < good["phrase"]
    # dropping a single beat mid-phrase breaks that phrase
    assert dense_reward(song, runs((0, 20), (21, 32)), 0.3)["phrase"] < dense_reward(song, runs((0, 32)), 0.3)["phrase"]


def test_default_8_beat_phrases_only_without_phrase_starts():
    no_phr, _ = make_song(phrases=False, song_id="nophrase")
    cfg = DenseRewardConfig()
    # without phrase_starts, phrases are 8 beats from the first downbeat: cuts at 16 / 24 are phrase cuts
    assert dense_reward(no_phr, runs((0, 16), (24, 40)), 0.3, cfg)["phrase"] == 1.0
    assert dense_reward(no_phr, runs((0, 12), (24, 40)), 0.3, cfg)["phrase"] < 1.0  # 12 is only a bar start
    # with phrase_starts (every 16 beats) a cut at beat 8 is not a phrase cut
    with_phr = make_song()[0]
    assert dense_reward(with_phr, runs((0, 8), (24, 40)), 0.3, cfg)["phrase"] < 1.0
    assert dense_reward(with_phr, runs((0, 16), (32, 48)), 0.3, cfg)["phrase"] == 1.0


def test_splice_from_loud_to_silent_lowers_energy(song):
    loud_to_loud = dense_reward(song, runs((32, 40), (88, 96)), 0.15)  # chorus -> the other chorus
    loud_to_silent = dense_reward(song, runs((32, 40), (56, 64)), 0.15)  # chorus -> the silent break
    assert loud_to_loud["energy"] > 0.9
    assert loud_to_silent["energy"] < 0.5
    assert loud_to_silent["total"] < loud_to_loud["total"]
    # the same effect from features alone: make beats 88.. silent and the once-good splice turns bad
    db = song.features[:, col("rms_db")].copy()
    db[88:] = -80.0
    silenced = with_columns(song, rms_db=db)
    assert dense_reward(silenced, runs((32, 40), (88, 96)), 0.15)["energy"] < 0.5


def test_splice_between_timbrally_different_beats_lowers_transition(song):
    same = dense_reward(song, runs((32, 40), (88, 96)), 0.15)  # chorus -> chorus, downbeat to downbeat
    other = dense_reward(song, runs((32, 40), (8, 16)), 0.15)  # chorus -> intro (other timbre and chord)
    assert same["transition"] > 0.9
    assert other["transition"] < same["transition"] - 0.3
    # isolate timbre: scramble the MFCCs of the incoming material only
    rng = np.random.default_rng(3)
    mf = song.features[:, col("mfcc_0"):col("mfcc_0") + 20].copy()
    mf[84:] = rng.normal(0, 50, size=mf[84:].shape)
    cols = {f"mfcc_{k}": mf[:, k] for k in range(20)}
    scrambled = with_columns(song, **cols)
    assert dense_reward(scrambled, runs((32, 40), (88, 96)), 0.15)["transition"] < same["transition"] - 0.1
    # bar position: landing on beat 2 of a bar after leaving at a bar end breaks downbeat alignment
    off_grid = dense_reward(song, runs((32, 40), (89, 97)), 0.15)
    assert off_grid["transition"] < same["transition"] - 0.25


def test_weights_and_config_are_respected(song):
    edit = runs((0, 10), (37, 53))
    only_tempo = DenseRewardConfig(w_tempo=1.0, w_energy=0.0, w_phrase=0.0, w_transition=0.0)
    r = dense_reward(song, edit, 0.3, only_tempo)
    assert r["total"] == pytest.approx(r["tempo"])
    strict = dataclasses.replace(DenseRewardConfig(), bar_boundary_credit=0.0)
    lenient = dataclasses.replace(DenseRewardConfig(), bar_boundary_credit=1.0)
    e = runs((0, 16), (36, 52))
    assert dense_reward(song, e, 0.3, strict)["phrase"] < dense_reward(song, e, 0.3, lenient)["phrase"]
    assert DenseRewardConfig(w_tempo=-1.0).check()


def test_input_forms_agree_and_bad_beats_are_rejected(song):
    edit = runs((0, 16), (32, 48), (64, 96), fade_out_last=4)
    a = dense_reward(song, edit, 0.6)
    b = dense_reward(song, np.asarray(edit), 0.6)
    assert a == b
    with pytest.raises(ValueError, match="outside"):
        dense_reward(song, [0, 1, song.n_beats], 0.6)
