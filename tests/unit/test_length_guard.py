"""The length guard: every editor lands within one beat of the target; the mask never empties;
the song's pre-roll and decay belong to its first and last beats."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.config import EnvConfig
from beatedit.editing.actions import N_ACTIONS, Action
from beatedit.editing.editors import edit_with
from beatedit.editing.program import (EditState, _apply_inplace, action_mask, beat_sample_bounds, build_edit, length_guard,
                                      song_grid, source_samples, start_state)
from tests.worldkit import make_world_song

EDITORS = ("random", "heuristic", "fade", "search")
TARGETS = np.round(np.linspace(0.4, 0.8, 9), 3)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    return [make_world_song(tmp, meter=4, n_bars=24, seed=1)[0],
            make_world_song(tmp, meter=3, n_bars=30, pickup=2, seed=2)[0],
            make_world_song(tmp, meter=4, n_bars=20, phrases=False, ibi=0.4, seed=3)[0]]


def _beat(song) -> float:
    return song_grid(song).beat_samples


@pytest.mark.parametrize("editor", EDITORS)
def test_every_editor_lands_within_one_beat(songs, editor):
    misses = []
    for song in songs:
        for t in TARGETS:
            e = edit_with(editor, song, float(t), rng=np.random.default_rng(int(t * 1000)))
            err = e.edl.n_samples - t * source_samples(song)
            if abs(err) > _beat(song):
                misses.append((song.song_id, float(t), round(err / _beat(song), 2)))
    assert not misses, misses


def test_guard_rules_on_a_state(songs):
    song = songs[0]
    g = song_grid(song)
    cfg = EnvConfig()
    s = start_state(song, 0.5, cfg)
    assert s.guard is not None and s.guard.tol == pytest.approx(g.beat_samples)
    m = action_mask(song, s, cfg)
    assert not m[Action.END] and not m[Action.FADE_OUT]  # far below the target: no ending yet
    # walk with KEEP until the next beat would overshoot the target + one beat
    while action_mask(song, s, cfg)[Action.KEEP]:
        _apply_inplace(g, s, Action.KEEP, cfg.max_loops_per_episode)
    assert abs(s.output_samples - s.guard.target) <= s.guard.tol
    m = action_mask(song, s, cfg)
    assert not m[Action.LOOP_BEAT]  # emitting more would overshoot
    assert m[Action.CUT] or m[Action.END] or m[Action.FADE_OUT]  # but it can still finish on target
    # without a target (or with the guard off) the plain rules apply
    assert length_guard(song, None, cfg) is None and length_guard(song, 0.5, EnvConfig(length_guard=False)) is None


def test_the_mask_never_empties_even_for_an_impossible_target(songs):
    song = songs[1]
    cfg = EnvConfig(length_tolerance_beats=0.01)
    s = start_state(song, 0.013, cfg)  # shorter than the first beat (pre-roll included) plus one more
    rng = np.random.default_rng(0)
    g = song_grid(song)
    while not s.done:
        m = action_mask(song, s, cfg)
        assert m.any() and m.shape == (N_ACTIONS,)
        _apply_inplace(g, s, int(rng.choice(np.flatnonzero(m))), cfg.max_loops_per_episode)


def test_guarded_replay_refuses_an_off_target_edit_the_plain_replay_accepts(songs):
    song = songs[0]
    decisions = [Action.KEEP] * 8 + [Action.END]  # 8 beats: far from 60% of the song
    build_edit(song, decisions, 20.0, 0.6)  # plain: fine (preference data needs such edits)
    with pytest.raises(ValueError, match="misses the target length|illegal"):
        build_edit(song, decisions, 20.0, 0.6, guarded=True)


def test_first_and_last_beat_hold_the_pre_roll_and_the_decay(songs):
    song = songs[0]
    B = beat_sample_bounds(song)
    assert B[0] == 0 and B[-1] == source_samples(song)  # nothing before the first beat or after the last is lost
    assert song.beat_times[0] > 0.05 and song.duration - song.beat_times[-1] > 0.2
    whole = build_edit(song, [Action.KEEP] * song.n_beats, 20.0, 1.0)
    assert whole.edl.n_samples == source_samples(song)


def test_fade_out_lasts_one_bar_of_beats_from_any_beat(songs):
    song = songs[1]  # 3/4
    g = song_grid(song)
    s = EditState()
    for _ in range(4):
        _apply_inplace(g, s, Action.KEEP, 8)
    _apply_inplace(g, s, Action.FADE_OUT, 8)  # mid-bar
    assert [b for b, _, _ in s.output[4:]] == [4, 5, 6] and s.output[-1][2] == 0.0 and s.done


def test_a_long_decay_on_the_last_beat_cannot_trap_an_editor(tmp_path):
    """The last beat spans the song's decay (here 5 beats long): it is kept whole or not at all, so the guard
    must not allow a skip that leaves only it to reach the target (found with the random editor on a real
    song's ringing ending)."""
    import dataclasses

    song, _ = make_world_song(tmp_path, meter=3, n_bars=16, seed=7)
    song = dataclasses.replace(song, duration=float(song.duration) + 1.2)  # ~5 beats of decay after the last beat
    beat = _beat(song)
    misses = []
    for seed in range(40):
        for t in (0.45, 0.6, 0.75):
            e = edit_with("random", song, t, rng=np.random.default_rng(seed))
            if abs(e.edl.n_samples - t * source_samples(song)) > beat:
                misses.append((seed, t))
    assert not misses, misses
