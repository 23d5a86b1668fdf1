"""The edit program (beatedit.editing.program) and the baseline editors: masks, transitions, EDLs."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.editing.actions import N_ACTIONS, Action
from beatedit.config import EnvConfig
from beatedit.editing.program import (
    EditState,
    action_mask,
    apply_action,
    beat_sample_bounds,
    build_edit,
    check_target_ratio,
    source_samples,
)
from beatedit.editing.editors import edit_with, heuristic_decisions, random_decisions
from beatedit.audio.schema import col
from tests.worldkit import make_world_song

A = Action
XF = 20.0


@pytest.fixture(scope="module")
def song44(tmp_path_factory):
    """4/4, one pickup beat (bars start at 1, 5, ...), phrases of 4 bars, stereo 44.1 kHz."""
    return make_world_song(tmp_path_factory.mktemp("s44"), meter=4, n_bars=12, pickup=1)[0]


@pytest.fixture(scope="module")
def song34(tmp_path_factory):
    """3/4, no pickup, mono 22.05 kHz."""
    return make_world_song(tmp_path_factory.mktemp("s34"), meter=3, n_bars=16, sr=22050, channels=1, seed=1)[0]


def run(song, actions, cfg=None):
    s = EditState()
    for a in actions:
        s = apply_action(song, s, a, cfg)
    return s


def mask_of(song, actions, cfg=None):
    return action_mask(song, run(song, actions, cfg), cfg)


def names(mask):
    return {Action(i).name for i in np.flatnonzero(mask)}


# ----------------------------------------------------------------------------- masks
def test_mask_at_start_off_the_bar(song44):
    # beat 0 is a pickup: not a bar start; nothing output yet
    assert names(mask_of(song44, [], EnvConfig(keep_start=False))) == {"KEEP", "CUT", "CUT_TO_NEXT_BAR", "CUT_TO_NEXT_PHRASE",
                                                                       "LOOP_BEAT", "FADE_IN"}
    assert names(mask_of(song44, [])) == {"KEEP", "LOOP_BEAT", "FADE_IN"}  # env.keep_start (default): the real start stays


def test_mask_on_a_bar_and_phrase_start_after_output(song44):
    m = mask_of(song44, [A.KEEP])  # cursor 1: bar + phrase start
    assert names(m) == {"KEEP", "CUT", "CUT_TO_NEXT_BAR", "CUT_TO_NEXT_PHRASE", "LOOP_BEAT", "LOOP_BAR",
                        "REPEAT_PHRASE", "FADE_OUT", "END"}
    m = mask_of(song44, [A.KEEP, A.KEEP])  # cursor 2: mid-bar
    assert not m[A.LOOP_BAR] and not m[A.REPEAT_PHRASE] and not m[A.END] and m[A.FADE_OUT]
    assert not m[A.FADE_IN]  # last action kept


def test_fade_in_only_first_or_after_a_cut(song44):
    for cut in (A.CUT, A.CUT_TO_NEXT_BAR, A.CUT_TO_NEXT_PHRASE):
        assert mask_of(song44, [A.KEEP, cut])[A.FADE_IN]
    assert not mask_of(song44, [A.KEEP, A.LOOP_BEAT])[A.FADE_IN]
    assert not mask_of(song44, [A.FADE_IN])[A.FADE_IN]


def test_end_and_fade_out_need_output(song44):
    m = mask_of(song44, [A.CUT])  # cursor 1 is a bar start, but nothing has been output
    assert not m[A.END] and not m[A.FADE_OUT]


def test_loop_budget_masks_all_loops(song44):
    cfg = EnvConfig(max_loops_per_episode=1)
    m = mask_of(song44, [A.KEEP], cfg)
    assert m[A.LOOP_BEAT] and m[A.LOOP_BAR] and m[A.REPEAT_PHRASE]
    m = mask_of(song44, [A.KEEP, A.LOOP_BAR], cfg)  # cursor 5 is a bar start
    assert not m[A.LOOP_BEAT] and not m[A.LOOP_BAR] and m[A.KEEP]


def test_mask_at_the_end_of_the_song(song44):
    n = song44.n_beats
    last_bar = int(song44.bar_starts[-1])
    last_phrase = int(song44.phrase_starts[-1])
    s = run(song44, [A.KEEP] * last_bar)
    m = action_mask(song44, s)
    # the last bar has no bar after it: incomplete, cannot be looped, no bar to cut to
    assert not m[A.LOOP_BAR] and not m[A.CUT_TO_NEXT_BAR] and not m[A.CUT_TO_NEXT_PHRASE] and m[A.END]
    s = run(song44, [A.KEEP] * last_phrase)
    assert not action_mask(song44, s)[A.REPEAT_PHRASE]
    # cutting the last beat with nothing output would leave an empty edit
    s = run(song44, [A.CUT_TO_NEXT_PHRASE] * len(song44.phrase_starts) + [A.CUT] * (n - 1 - last_phrase))
    assert s.cursor == n - 1 and not s.has_output
    assert names(action_mask(song44, s)) == {"KEEP", "LOOP_BEAT", "FADE_IN"}


def test_illegal_actions_raise_and_state_is_not_mutated(song44):
    s0 = EditState()
    with pytest.raises(ValueError, match="END is illegal at beat 0"):
        apply_action(song44, s0, A.END)
    with pytest.raises(ValueError, match="LOOP_BAR is illegal"):
        apply_action(song44, s0, A.LOOP_BAR)
    with pytest.raises(ValueError, match="not an action id"):
        apply_action(song44, s0, N_ACTIONS)
    s1 = apply_action(song44, s0, A.KEEP)
    assert s0.cursor == 0 and s0.output == [] and s0.decisions == []
    assert s1.cursor == 1 and s1.output == [(0, 1.0, 1.0)]
    done = apply_action(song44, s1, A.END)
    assert done.done and not action_mask(song44, done).any()
    with pytest.raises(ValueError, match="after the episode ended"):
        apply_action(song44, done, A.KEEP)


# ----------------------------------------------------------------------------- each action's edit
def segs(edit):
    return [(s.beat_start, s.beat_end, s.gain_start, s.gain_end) for s in edit.edl.segments]


def test_keep_everything_is_one_segment(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.KEEP] * n, XF)
    B = beat_sample_bounds(song44)
    assert segs(e) == [(0, n, 1.0, 1.0)]
    assert e.edl.segments[0].start_sample == B[0] and e.edl.segments[0].end_sample == B[n]
    assert (e.beat_actions == A.KEEP).all() and e.edl.splice_positions() == []


def test_cut_drops_one_beat_and_splices(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.KEEP] * 3 + [A.CUT] + [A.KEEP] * (n - 4), XF)
    assert segs(e) == [(0, 3, 1.0, 1.0), (4, n, 1.0, 1.0)]
    assert e.edl.segments[1].crossfade_samples == round(XF * song44.source_sr / 1000)
    assert e.beat_actions[3] == A.CUT and (np.delete(e.beat_actions, 3) == A.KEEP).all()


def test_cut_to_next_bar_and_phrase(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.KEEP] * 2 + [A.CUT_TO_NEXT_BAR] + [A.KEEP] * (n - 5), XF)
    assert segs(e) == [(0, 2, 1.0, 1.0), (5, n, 1.0, 1.0)]  # drops 2, 3, 4 (next bar starts at 5)
    assert list(e.beat_actions[2:5]) == [A.CUT_TO_NEXT_BAR] * 3
    e = build_edit(song44, [A.KEEP] * 2 + [A.CUT_TO_NEXT_PHRASE] + [A.KEEP] * (n - 17), XF)
    assert segs(e) == [(0, 2, 1.0, 1.0), (17, n, 1.0, 1.0)]  # next phrase starts at 1 + 16
    assert list(e.beat_actions[2:17]) == [A.CUT_TO_NEXT_PHRASE] * 15


def test_loop_beat_outputs_the_beat_twice(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.KEEP] * 3 + [A.LOOP_BEAT] + [A.KEEP] * (n - 4), XF)
    assert [b for b, _, _ in e.output_beats] == [0, 1, 2, 3, 3] + list(range(4, n))
    assert segs(e) == [(0, 4, 1.0, 1.0), (3, n, 1.0, 1.0)]
    assert e.beat_actions[3] == A.LOOP_BEAT


def test_loop_bar_and_repeat_phrase(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.KEEP] + [A.LOOP_BAR] + [A.KEEP] * (n - 5), XF)
    assert [b for b, _, _ in e.output_beats][:9] == [0, 1, 2, 3, 4, 1, 2, 3, 4]
    assert segs(e) == [(0, 5, 1.0, 1.0), (1, n, 1.0, 1.0)]
    assert list(e.beat_actions[1:5]) == [A.LOOP_BAR] * 4
    e = build_edit(song44, [A.KEEP] + [A.REPEAT_PHRASE] + [A.KEEP] * (n - 17), XF)
    assert segs(e) == [(0, 17, 1.0, 1.0), (1, n, 1.0, 1.0)]
    assert e.edl.n_samples == sum(int(s.length) for s in e.edl.segments)


def test_fade_in_ramps_one_beat(song44):
    n = song44.n_beats
    e = build_edit(song44, [A.FADE_IN] + [A.KEEP] * (n - 1), XF)
    assert segs(e) == [(0, 1, 0.0, 1.0), (1, n, 1.0, 1.0)]
    assert e.edl.segments[1].crossfade_samples == 0  # contiguous: not a splice
    e = build_edit(song44, [A.KEEP, A.CUT, A.FADE_IN] + [A.KEEP] * (n - 3), XF)
    assert segs(e) == [(0, 1, 1.0, 1.0), (2, 3, 0.0, 1.0), (3, n, 1.0, 1.0)]
    assert e.beat_actions[2] == A.FADE_IN


def test_fade_out_ramps_over_one_bar_of_beats_and_ends(song44):
    B = beat_sample_bounds(song44)
    e = build_edit(song44, [A.KEEP] * 6 + [A.FADE_OUT], XF)  # cursor 6 is mid-bar: the fade still lasts 4 beats
    assert segs(e) == [(0, 6, 1.0, 1.0), (6, 10, 1.0, 0.0)]
    assert list(e.beat_actions[6:10]) == [A.FADE_OUT] * 4 and (e.beat_actions[10:] == A.END).all()
    # per-beat gains are linear in samples: collinear, so they merged into one segment exactly
    g = [(g0, g1) for b, g0, g1 in e.output_beats[6:]]
    for (b, g0, g1) in e.output_beats[6:]:
        assert g0 == pytest.approx(1 - (B[b] - B[6]) / (B[10] - B[6]))
        assert g1 == pytest.approx(1 - (B[b + 1] - B[6]) / (B[10] - B[6]))
    assert g[-1][1] == 0.0


def test_end_stops_the_edit(song44):
    B = beat_sample_bounds(song44)
    e = build_edit(song44, [A.KEEP] * 5 + [A.END], XF)
    assert segs(e) == [(0, 5, 1.0, 1.0)]
    assert e.edl.n_samples == B[5] - B[0]
    assert (e.beat_actions[5:] == A.END).all() and e.decisions[-1] == A.END


def test_build_edit_rejects_bad_sequences(song44):
    with pytest.raises(ValueError, match="before the episode ends"):
        build_edit(song44, [A.KEEP] * 3, XF)
    with pytest.raises(ValueError, match="follows the end"):
        build_edit(song44, [A.KEEP, A.END, A.KEEP], XF)
    with pytest.raises(ValueError, match="illegal"):
        build_edit(song44, [A.END], XF)


@pytest.mark.parametrize("bad", [0.0, -0.2, 1.01, float("nan"), float("inf")])
def test_target_outside_unit_interval_is_an_error(song44, bad):
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        check_target_ratio(bad)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        build_edit(song44, [A.KEEP] * song44.n_beats, XF, target_ratio=bad)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        heuristic_decisions(song44, bad)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        random_decisions(song44, bad, np.random.default_rng(0))


# ----------------------------------------------------------------------------- invariants on many random edits
@pytest.mark.parametrize("which", ["song44", "song34"])
def test_random_edits_splice_on_beat_boundaries(which, request):
    song = request.getfixturevalue(which)
    B = beat_sample_bounds(song)
    bset = set(B.tolist())
    rng = np.random.default_rng(0)
    for k in range(40):
        e = edit_with("random", song, float(rng.uniform(0.3, 1.0)), rng)
        edl = e.edl
        lengths = [int(B[b + 1] - B[b]) for b, _, _ in e.output_beats]
        assert edl.n_samples == sum(lengths)  # the env's length is the EDL's length
        out_bounds = set(np.cumsum([0] + lengths).tolist())
        for pos in edl.splice_positions():
            assert pos in out_bounds  # a splice sits between two output beats ...
        for s in edl.segments:
            assert s.start_sample in bset and s.end_sample in bset  # ... at source beat boundaries
            assert s.start_sample == B[s.beat_start] and s.end_sample == B[s.beat_end]
        assert len(e.beat_actions) == song.n_beats
        # segments are maximal: a boundary that is contiguous and gain-continuous would have merged
        for p, q in zip(edl.segments, edl.segments[1:]):
            if q.start_sample == p.end_sample:
                assert q.crossfade_samples == 0
                assert not (p.gain_start == p.gain_end == q.gain_start == q.gain_end)


def test_random_editor_roughly_meets_the_target(song44, song34):
    rng = np.random.default_rng(1)
    for song in (song44, song34):
        ratios = []
        for _ in range(30):
            e = edit_with("random", song, 0.6, rng)
            ratios.append(e.edl.n_samples / source_samples(song) / 0.6)
        assert 0.6 < np.mean(ratios) < 1.4, ratios


@pytest.mark.parametrize("which", ["song44", "song34"])
def test_heuristic_drops_quiet_phrases_on_bar_boundaries(which, request):
    song = request.getfixturevalue(which)
    B = beat_sample_bounds(song)
    e = edit_with("heuristic", song, 0.6)
    edl = e.edl
    assert e.output_beats[0][0] == 0  # keeps the intro start
    bar_bounds = set(B[song.bar_starts].tolist()) | {int(B[-1])}
    for p, q in zip(edl.segments, edl.segments[1:]):
        if q.start_sample != p.end_sample:  # every cut lands on bar starts on both sides
            assert p.end_sample in bar_bounds and q.start_sample in bar_bounds
    if e.decisions[-1] == A.FADE_OUT:  # it fades out over a bar where that lands on the target
        last = edl.segments[-1]
        assert last.gain_end == 0.0 and last.gain_start == 1.0
    # the dropped phrases are quieter than the kept ones (intro aside)
    rms = song.features[:, col("rms")]
    kept = np.zeros(song.n_beats, bool)
    kept[[b for b, _, _ in e.output_beats]] = True
    ps = list(song.phrase_starts) + [song.n_beats]
    phr = [(a, b) for a, b in zip(ps, ps[1:])][1:]
    dropped = [rms[a:b].mean() for a, b in phr if not kept[a:b].any()]
    kept_e = [rms[a:b].mean() for a, b in phr if kept[a:b].all()]
    assert dropped, "target 0.6 must drop something"
    if kept_e:
        assert max(dropped) <= min(kept_e)
    # within one beat of the target (the length guard)
    beat = np.median(np.diff(B[1:-1]))
    assert abs(edl.n_samples - 0.6 * source_samples(song)) <= beat


def test_heuristic_without_phrases_uses_bars(tmp_path):
    song, _ = make_world_song(tmp_path, meter=4, n_bars=24, phrases=False)
    e = edit_with("heuristic", song, 0.5)
    assert A.CUT_TO_NEXT_PHRASE not in e.decisions and A.CUT_TO_NEXT_BAR in e.decisions
    assert e.edl.n_samples < 0.75 * source_samples(song)


@pytest.mark.parametrize("which", ["song44", "song34"])
@pytest.mark.parametrize("target", [0.35, 0.6, 0.85])
def test_fade_editor_keeps_the_start_and_fades_within_half_a_beat_of_the_target(which, target, request):
    song = request.getfixturevalue(which)
    B = beat_sample_bounds(song)
    e = edit_with("fade", song, target)
    segs = e.edl.segments
    assert all(q.start_sample == p.end_sample for p, q in zip(segs, segs[1:]))  # no splice anywhere
    assert segs[0].start_sample == B[0] and e.decisions[-1] == A.FADE_OUT
    assert segs[-1].gain_end == 0.0 and segs[-1].end_sample in set(B.tolist())
    beat = np.median(np.diff(B[1:-1]))
    assert abs(e.edl.n_samples - target * source_samples(song)) <= 0.5 * beat + 1


def test_unknown_editor(song44):
    with pytest.raises(ValueError, match="unknown editor"):
        edit_with("nope", song44, 0.5)
