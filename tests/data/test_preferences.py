"""Preference pairs: split by song, deterministic labels, candidate kinds, the pair table, human votes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from beatedit.judging import listener
from beatedit.editing.actions import Action
from beatedit.config import Config, PreferencesConfig
from beatedit.editing.program import build_edit
from beatedit.editing.editors import heuristic_decisions, random_decisions
from beatedit.preferences.pairs import (PreferenceDataError, encode_plan, generate_candidates, merge_pairs, off_bar_splice,
                                  over_loop, plan_of, preference_metrics, shifted_cut, song_pairs, split_of, split_songs)
from beatedit.preferences.schema import COLUMN_NAMES
from beatedit.audio.schema import N_FEATURES, col
from beatedit.audio.song import SongAnalysis

CONTRACT = ("song_id", "split", "edl_a", "edl_b", "actions_a", "actions_b", "target_ratio", "choice", "strength", "p_a",
            "gold_a", "gold_b", "kind_a", "kind_b", "rater", "source", "timestamp")


def structured_song(song_id, n_bars=64, seed=0, meter=4, tempo=120.0):
    """Sections of 8/16 bars with distinct timbre, a loud chorus, 4-bar phrases."""
    rng = np.random.default_rng(seed)
    n = n_bars * meter
    ibi = 60.0 / tempo * (1 + 0.01 * rng.normal(size=n)).clip(0.97, 1.03)
    beat_times = np.concatenate([[0.0], np.cumsum(ibi[:-1])]) + 0.1
    bars = np.arange(0, n, meter)
    phrases = np.arange(0, n, 4 * meter)
    sec_len = [int(x) for x in rng.choice([8, 16], size=20)]
    sec_starts, b = [], 0
    while b < n_bars:
        sec_starts.append(b * meter); b += sec_len[len(sec_starts) % 20]
    sec_starts = np.array(sec_starts)
    sec_id = np.searchsorted(sec_starts, np.arange(n), side="right") - 1
    n_sec = len(sec_starts)
    timbre = rng.normal(size=(n_sec, N_FEATURES)) * 1.0
    loud = rng.uniform(0.05, 0.15, n_sec); loud[rng.integers(n_sec)] = 0.3
    bib = np.arange(n) % meter
    f = timbre[sec_id] + 0.4 * rng.normal(size=(n, N_FEATURES))
    f += 0.5 * np.sin(2 * np.pi * bib / meter)[:, None] * rng.normal(size=N_FEATURES)[None]
    rms = loud[sec_id] * (1 + 0.3 * (bib == 0)) * (1 + 0.05 * rng.normal(size=n))
    f[:, col("rms")] = rms
    for k in range(4):
        f[:, col(f"rms_sub_{k}")] = rms * (1 + 0.1 * rng.normal(size=n))
    f[:, col("rms_db")] = 20 * np.log10(np.abs(rms) + 1e-6)
    f[:, col("beat_duration")] = ibi
    f[:, col("meter")] = meter
    f[:, col("beat_in_bar")] = bib
    f[:, col("is_downbeat")] = bib == 0
    dur = float(beat_times[-1] + ibi[-1] + 0.2)
    f[:, col("song_position")] = beat_times / dur
    f[:, col("is_phrase_start")] = np.isin(np.arange(n), phrases)
    f[:, col("is_section_start")] = np.isin(np.arange(n), sec_starts)
    return SongAnalysis(song_id=song_id, source_path=f"/nonexistent/{song_id}.wav", source_hash="0"*64, source_sr=22050,
                        source_channels=1, duration=dur, tempo=tempo, meter=meter, beat_times=beat_times,
                        bar_starts=bars, beat_in_bar=bib.astype(np.int64), phrase_starts=phrases,
                        section_starts=sec_starts.astype(np.int64), features=f.astype(np.float32))


SMALL = Config(preferences=PreferencesConfig(candidates_per_song=16, pairs_per_song=12, ood_pairs_per_song=4, targets_per_song=2,
                                             human_votes_path=None))


@pytest.fixture(scope="module")
def songs():
    return [structured_song(f"song_{i:03d}", n_bars=40 + 8 * i, seed=i) for i in range(3)]


# ----------------------------------------------------------------------------- split
def test_split_is_by_song_deterministic_and_stable():
    ids = [f"song_{i:04d}" for i in range(2000)]
    a = split_songs(ids, (0.7, 0.15, 0.15), seed=3)
    assert a == split_songs(list(reversed(ids)), (0.7, 0.15, 0.15), seed=3)  # order-free
    assert split_songs(ids[:10], (0.7, 0.15, 0.15), seed=3) == {i: a[i] for i in ids[:10]}  # adding songs moves none
    share = pd.Series(a).value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.04) and share["validation"] == pytest.approx(0.15, abs=0.03)
    assert a != split_songs(ids, (0.7, 0.15, 0.15), seed=4)  # the seed reshuffles
    assert set(split_songs(ids[:50], (0.0, 1.0, 0.0), seed=3).values()) == {"validation"}


def test_every_pair_of_a_song_carries_the_songs_split(songs):
    rows = [r for s in songs for r in song_pairs(s, None, None, SMALL)]
    df = merge_pairs([rows])
    assert df.groupby("song_id")["split"].nunique().max() == 1
    for sid, split in df.groupby("song_id")["split"].first().items():
        assert split == split_of(sid, SMALL.preferences.split_fractions, SMALL.preferences.split_seed)


# ----------------------------------------------------------------------------- pair table
def test_pair_table_columns_and_values(songs):
    per_song = [song_pairs(s, None, None, SMALL) for s in songs]
    df = merge_pairs(per_song)
    assert set(CONTRACT) <= set(df.columns) and list(df.columns) == list(COLUMN_NAMES)
    assert len(df) == len(songs) * (12 + 4)
    n_beats = {s.song_id: s.n_beats for s in songs}
    assert all(len(a) == n_beats[s] and len(b) == n_beats[s] for s, a, b in zip(df.song_id, df.actions_a, df.actions_b))
    assert set(df["choice"]) <= {0.0, 1.0} and df["source"].eq("simulated").all()
    assert np.allclose(df["strength"], (df["p_a"] - 0.5).abs() * 2)
    assert not any(np.array_equal(a, b) for a, b in zip(df.actions_a, df.actions_b))  # no pair compares an edit with itself
    ood_kinds = set(SMALL.preferences.ood_kinds)
    touches_ood = df["kind_a"].isin(ood_kinds) | df["kind_b"].isin(ood_kinds)
    assert (touches_ood == df["ood"]).all() and df["ood"].sum() == len(songs) * 4
    kinds = set(df["kind_a"]) | set(df["kind_b"])
    assert {"random", "heuristic", "shifted_cut", "off_bar_splice", "over_loop", "wrong_length", "tail_fade"} <= kinds
    # the labels come from the listener: noisy choices mostly follow the gold ordering
    strict = df["gold_a"] != df["gold_b"]
    follows = (np.sign(df["gold_a"] - df["gold_b"]) == np.where(df["choice"] == 0, 1, -1))[strict]
    assert follows.mean() > 0.6
    m = preference_metrics(df)
    assert m["n_pairs"] == len(df) and m["pairs_source_simulated"] == len(df) and m["pairs_ood"] == len(songs) * 4
    assert sum(m[f"songs_{s}"] for s in ("train", "validation", "promotion")) == len(songs)
    # parquet round trip keeps everything the reward stage reads
    back = pd.read_parquet(_write(df))
    assert list(back.columns) == list(COLUMN_NAMES) and np.array_equal(np.asarray(back.actions_a[0]), np.asarray(df.actions_a[0]))


def _write(df: pd.DataFrame):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "pairs.parquet"
    df.to_parquet(path)
    return path


def test_pairs_are_deterministic_per_song(songs):
    a = pd.DataFrame(song_pairs(songs[1], None, None, SMALL))
    b = pd.DataFrame(song_pairs(songs[1], None, None, SMALL))
    pd.testing.assert_frame_equal(a, b)
    other = Config(preferences=PreferencesConfig(candidates_per_song=16, pairs_per_song=12, ood_pairs_per_song=4, seed=99))
    assert not a[["gold_a", "gold_b"]].equals(pd.DataFrame(song_pairs(songs[1], None, None, other))[["gold_a", "gold_b"]])


def test_noise_off_labels_follow_the_gold_ordering(songs):
    cfg = Config(preferences=PreferencesConfig(candidates_per_song=16, pairs_per_song=12, ood_pairs_per_song=0,
                                               use_listener_noise=False))
    df = pd.DataFrame(song_pairs(songs[0], None, None, cfg))
    strict = df["gold_a"] != df["gold_b"]
    assert ((df["gold_a"] > df["gold_b"]) == (df["choice"] == 0))[strict].all()
    assert (df.loc[~strict, "choice"] == 0.5).all()


# ----------------------------------------------------------------------------- candidates
def test_plan_encoding_round_trips_baseline_edits(songs):
    rng = np.random.default_rng(0)
    for s in songs:
        for t in (0.5, 0.7):
            h = heuristic_decisions(s, t)
            assert encode_plan(s, plan_of(s, h)) == h
            r = random_decisions(s, t, rng)
            a = build_edit(s, r, 20.0, t)
            b = build_edit(s, encode_plan(s, plan_of(s, r)), 20.0, t)
            assert [x[0] for x in a.output_beats] == [x[0] for x in b.output_beats]


def test_perturbations_do_what_they_say(songs):
    s = songs[2]
    rng = np.random.default_rng(1)
    t = 0.6
    good = heuristic_decisions(s, t)
    base = build_edit(s, good, 20.0, t)
    base_score = listener.score_edit(s, base, t)
    plan = plan_of(s, good)
    shifted = build_edit(s, encode_plan(s, shifted_cut(s, plan, rng)), 20.0, t)
    sh = listener.score_edit(s, shifted, t)
    assert len(shifted.output_beats) == len(base.output_beats)  # same length ...
    assert sh["alignment"] < base_score["alignment"]  # ... cuts off the bar line
    off = build_edit(s, encode_plan(s, off_bar_splice(s, plan, rng)), 20.0, t)
    assert listener.score_edit(s, off, t)["n_splices"] > base_score["n_splices"]
    counts = []
    for seed in range(8):  # 3-6 loops are added; moving the ending earlier may drop one that falls after it
        looped = build_edit(s, encode_plan(s, over_loop(s, plan, np.random.default_rng(seed))), 20.0, t)
        counts.append(sum(d in (Action.LOOP_BEAT, Action.LOOP_BAR, Action.REPEAT_PHRASE) for d in looped.decisions))
        assert abs(looped.duration - base.duration) / s.duration < 0.1  # ended earlier to stay near the target
    assert min(counts) >= 2 and np.mean(counts) >= 3, counts


def test_policy_sampler_candidates_are_tagged(songs):
    calls = []

    def sampler(song, target, rng):
        calls.append(target)
        return random_decisions(song, target, rng)

    cands = generate_candidates(songs[0], 0.6, SMALL, np.random.default_rng(0), 16, sampler=sampler)
    assert calls and any(c.kind == "policy" for c in cands)
    assert not any(c.kind == "policy" for c in generate_candidates(songs[0], 0.6, SMALL, np.random.default_rng(0), 16))


# ----------------------------------------------------------------------------- human votes
def test_human_votes_are_merged_as_training_pairs_or_with_their_song_split(songs, tmp_path):
    sim = [song_pairs(songs[0], None, None, SMALL)]
    h = pd.DataFrame(sim[0][:3])[["song_id", "actions_a", "actions_b", "target_ratio", "edl_a", "edl_b"]]
    h["choice"] = [0.0, 1.0, 0.5]
    h["rater"] = "r1"
    h["timestamp"] = pd.Timestamp("2025-01-02T03:04:05Z")
    path = tmp_path / "human_pairs.parquet"
    h.to_parquet(path)
    df = merge_pairs(sim, path, SMALL)
    human = df[df["source"] == "human"]
    assert len(human) == 3 and list(human["choice"]) == [0.0, 1.0, 0.5]
    assert (human["split"] == "train").all()  # preferences.human_split: train (the default)
    own = split_of(songs[0].song_id, SMALL.preferences.split_fractions, SMALL.preferences.split_seed)
    assert own != "train"  # so the line above can fail
    by_song = replace(SMALL, preferences=replace(SMALL.preferences, human_split="by_song"))
    assert (merge_pairs(sim, path, by_song).query("source == 'human'")["split"] == own).all()
    assert human["gold_a"].isna().all() and list(human["p_a"]) == [1.0, 0.0, 0.5]
    m = preference_metrics(df)
    assert m["pairs_source_human"] == 3
    assert len(merge_pairs(sim, tmp_path / "absent.parquet", SMALL)) == len(sim[0])  # optional file
    h.drop(columns=["actions_b"]).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(PreferenceDataError, match=r"bad\.parquet.*actions_b"):
        merge_pairs(sim, tmp_path / "bad.parquet", SMALL)
