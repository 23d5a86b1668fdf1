"""The search editor (beatedit.editing.search): valid edits from the real start to the real ending,
within one beat of the target, cuts on bar lines, pieces of at least two bars, an optimal DP."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.audio.schema import N_FEATURES, col
from beatedit.audio.song import SongAnalysis
from beatedit.editing.actions import Action
from beatedit.editing.editors import EDITORS, edit_with
from beatedit.editing.program import build_edit, song_grid, source_samples
from beatedit.editing.search import (SearchConfig, _solve, decisions_from_pieces, jump_costs, keep_costs,
                                     search_decisions, search_path)
from tests.worldkit import make_world_song

TARGETS = (0.4, 0.5, 0.6, 0.7, 0.8)
CUTS = {int(Action.CUT), int(Action.CUT_TO_NEXT_BAR), int(Action.CUT_TO_NEXT_PHRASE)}


def analysed(n_bars: int, meter: int = 4, ibis: np.ndarray | None = None, seed: int = 0, pickup: int = 0,
             phrases: bool = True) -> SongAnalysis:
    """A SongAnalysis without audio: 4-bar phrases, 8-bar sections, per-section timbre and loudness."""
    rng = np.random.default_rng(seed)
    n = pickup + n_bars * meter
    ibis = np.full(n, 0.5) if ibis is None else np.asarray(ibis, dtype=np.float64)
    beat_times = 0.1 + np.concatenate([[0.0], np.cumsum(ibis[:-1])])
    bars = np.arange(pickup, n, meter, dtype=np.int64)
    phr = bars[::4] if phrases else np.zeros(0, dtype=np.int64)
    sec = phr[::2]
    sid = np.searchsorted(bars[::8], np.arange(n), side="right")
    f = rng.standard_normal((sid.max() + 1, N_FEATURES))[sid] + 0.3 * rng.standard_normal((n, N_FEATURES))
    f[:, col("rms_db")] = rng.uniform(-30, -6, sid.max() + 1)[sid]
    song = SongAnalysis(song_id=f"a{n_bars}_{meter}_{seed}", source_path="/nonexistent.wav", source_hash="0" * 64,
                        source_sr=22050, source_channels=1, duration=float(beat_times[-1] + ibis[-1] + 0.1),
                        tempo=60.0 / float(np.median(ibis)), meter=meter, beat_times=beat_times, bar_starts=bars,
                        beat_in_bar=((np.arange(n) - pickup) % meter).astype(np.int64), phrase_starts=phr,
                        section_starts=sec, features=f.astype(np.float32))
    song.validate()
    return song


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    return [
        make_world_song(d, meter=4, n_bars=24, pickup=1, seed=0, sr=22050, channels=1)[0],
        make_world_song(d, meter=3, n_bars=32, seed=1, sr=22050, channels=1)[0],
        make_world_song(d, meter=4, n_bars=32, seed=2, sr=22050, channels=1, phrases=False)[0],
        analysed(48, meter=4, seed=3),
        analysed(40, meter=3, seed=4),
        analysed(64, meter=4, seed=5, pickup=2),
    ]


def splices(pieces):
    """(out-point, in-point) of every jump."""
    return [(b0, a1) for (_, b0), (a1, _) in zip(pieces, pieces[1:])]


def beat_samples(song) -> float:
    return float(np.median(np.diff(song_grid(song).bounds)))


# ----------------------------------------------------------------------------- the edit
@pytest.mark.parametrize("t", TARGETS)
def test_decisions_build_an_edit_from_the_real_start_to_the_real_ending(songs, t):
    for song in songs:
        n = song.n_beats
        d = search_decisions(song, t)
        assert set(d) <= {int(Action.KEEP)} | CUTS  # no loops, no fades, no END
        e = build_edit(song, d, 20.0, t)
        src = [b for b, _, _ in e.output_beats]
        assert src[0] == 0 and src[-1] == n - 1  # the intro and the last beat are played
        assert all(b > a for a, b in zip(src, src[1:]))  # forward only, nothing twice
        assert all(g0 == 1.0 and g1 == 1.0 for _, g0, g1 in e.output_beats)


@pytest.mark.parametrize("t", TARGETS)
def test_duration_is_within_one_beat_of_the_target(songs, t):
    for song in songs:
        e = edit_with("search", song, t)
        target = t * source_samples(song)
        assert abs(e.edl.n_samples - target) <= beat_samples(song) + 1, (song.song_id, t)
        r = search_path(song, t)
        assert r.output_samples == e.edl.n_samples and r.error_beats <= 1.0 + 1e-9


def test_cuts_are_on_bar_lines_when_whole_bars_reach_the_target(songs):
    for song in songs:
        g = song_grid(song)
        B = g.bounds
        bar_samples = int(B[song.bar_starts[5]] - B[song.bar_starts[1]]) / 4
        for drop_bars in (3, 6, 10):  # drop whole bars: a bar-aligned path hits the target exactly
            t = float((B[-1] - B[0]) - drop_bars * bar_samples) / source_samples(song)
            r = search_path(song, t)
            assert splices(r.pieces), (song.song_id, t)
            for out_pt, in_pt in splices(r.pieces):
                assert g.is_bar_start[out_pt] and g.is_bar_start[in_pt], (song.song_id, t, r.pieces)


def test_at_most_one_cut_leaves_the_bar_line_to_fix_the_length(songs):
    for song in songs:
        g = song_grid(song)
        for t in TARGETS:
            r = search_path(song, t)
            off = [s for s in splices(r.pieces) if not (g.is_bar_start[s[0]] and g.is_bar_start[s[1]])]
            assert len(off) <= 1, (song.song_id, t, r.pieces)


def test_pieces_are_at_least_two_bars(songs):
    for song in songs:
        for t in TARGETS:
            r = search_path(song, t)
            assert r.min_piece_beats == 2 * song.meter
            assert all(b - a >= 2 * song.meter for a, b in r.pieces), (song.song_id, t, r.pieces)
            assert len(r.pieces) <= 4  # few pieces: every cut costs


def test_shorter_pieces_only_when_unavoidable():
    song = analysed(5, meter=4, seed=6)  # 20 beats: 0.4 = 8 beats cannot be two pieces of two bars
    r = search_path(song, 0.4)
    assert r.min_piece_beats < 8 and r.error_beats <= 1.0 + 1e-9
    assert r.pieces[0][0] == 0 and r.pieces[-1][1] == song.n_beats
    build_edit(song, search_decisions(song, 0.4), 20.0, 0.4)


def test_a_drifting_tempo_still_lands_within_one_beat():
    n = 60 * 4
    ibis = np.linspace(0.35, 0.75, n)  # a long ritardando: beats differ by 2x
    song = analysed(60, meter=4, ibis=ibis, seed=7)
    for t in TARGETS:
        r = search_path(song, t)
        assert r.error_beats <= 1.0 + 1e-9, (t, r.error_beats)


def test_deterministic(songs):
    for song in songs[:3]:
        for t in (0.45, 0.65):
            assert search_decisions(song, t) == search_decisions(song, t)


def test_registered_as_an_editor(songs):
    assert "search" in EDITORS
    e = edit_with("search", songs[0], 0.6, crossfade_ms=10.0)
    assert e.target_ratio == 0.6 and e.edl.segments[1].crossfade_samples > 0


def test_merged_cut_actions_skip_exactly_the_planned_beats(songs):
    song = songs[0]  # pickup: bars at 1, 5, ...; phrases every 4 bars
    g = song_grid(song)
    pieces = [(0, 9), (17, 33), (34, 50), (90, song.n_beats)]
    d = decisions_from_pieces(g, pieces)
    e = build_edit(song, d, 0.0)
    assert [b for b, _, _ in e.output_beats] == [b for a, c in pieces for b in range(a, c)]
    assert int(Action.CUT_TO_NEXT_PHRASE) in d and int(Action.CUT_TO_NEXT_BAR) in d


# ----------------------------------------------------------------------------- costs and optimality
def test_jump_costs_prefer_bar_lines_phrases_and_keep_the_metre():
    song = analysed(32, meter=4, seed=8)
    s = SearchConfig(w_chroma=0, w_timbre=0, w_loudness=0, material_cost=0)
    T = jump_costs(song, s)
    assert np.isinf(T[10, 10]) and np.isinf(T[10, 9])  # forward jumps only
    on_bar, on_phrase, phase_kept, metre_break = T[20, 36], T[16, 48], T[21, 37], T[20, 38]
    assert on_phrase < on_bar < phase_kept < metre_break
    assert T[16, 64] < T[16, 48]  # section start (8 bars) beats a phrase start mid-section


def test_keep_costs_prefer_the_loud_sections():
    song = analysed(32, meter=4, seed=9)
    c = keep_costs(song)
    loud = song.features[:, col("rms_db")]
    assert c[np.argmax(loud)] == 0.0 and c[np.argmin(loud)] == pytest.approx(SearchConfig().material_cost)


def test_the_dp_finds_the_cheapest_path_of_each_length():
    """Brute force over every piece sequence of a tiny song (pieces >= R beats, beat 0 .. last beat)."""
    song = analysed(11, meter=2, seed=10)  # 22 beats
    n, R = song.n_beats, 2
    s = SearchConfig(min_piece_bars=1, material_cost=0.2)
    T, c = jump_costs(song, s), keep_costs(song, s)
    best: dict[int, float] = {}

    def walk(a: int, k: int, cost: float) -> None:  # a piece starts at a; it runs to b
        for b in range(a + R, n + 1):
            kk, cc = k + b - a, cost + c[a:b].sum()
            if b == n:
                best[kk] = min(best.get(kk, np.inf), cc)
                continue
            for a2 in range(b + 1, n - R + 1):
                walk(a2, kk, cc + T[b, a2])

    walk(0, 0, 0.0)
    g = song_grid(song)
    B = g.bounds
    for K in range(2 * R, n):
        res = _solve(g, T, c, R, 0.0, 1e12, K, K, s)  # one candidate length; any error "within"
        assert res is not None and sum(b - a for a, b in res.pieces) == K
        assert res.cost == pytest.approx(best[K]), K
        path_cost = c[np.concatenate([np.arange(a, b) for a, b in res.pieces])].sum() + sum(
            T[o, i] for o, i in splices(res.pieces))
        assert path_cost == pytest.approx(res.cost)
        assert res.output_samples == sum(int(B[b] - B[a]) for a, b in res.pieces)


def test_bad_config_is_refused(songs):
    with pytest.raises(ValueError, match="SearchConfig"):
        search_path(songs[0], 0.6, SearchConfig(cut_cost=-1.0))
    with pytest.raises(ValueError, match="target ratio"):
        search_path(songs[0], 1.5)
