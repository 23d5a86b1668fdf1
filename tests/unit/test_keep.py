"""--keep: parsing regions, impossible constraints, the search editor's constrained path, the kept-region check."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.config import EnvConfig
from beatedit.editing.keep import check_regions, keep_beats, keeps, parse_keep
from beatedit.editing.program import build_edit
from beatedit.editing.search import search_decisions, search_path
from tests.rlhfkit import rl_song


@pytest.mark.parametrize("text,want", [("1:10-1:40", (70.0, 100.0)), ("70-100", (70.0, 100.0)), ("0-12.5", (0.0, 12.5)),
                                       ("1m-1m30s", (60.0, 90.0)), (" 0:05 - 0:09 ", (5.0, 9.0))])
def test_parse_keep(text, want):
    assert parse_keep(text) == pytest.approx(want)


@pytest.mark.parametrize("text,message", [("1:10", "START-END"), ("1:10-", "START-END"), ("-1:10", "START-END"),
                                          ("1:40-1:10", "before or where it starts"), ("10-10", "before or where it starts"),
                                          ("a-b", "is not a length"), ("1:10-1:40-2:00", "START-END"), ("1:75-2:00", "below 60")])
def test_parse_keep_refuses_malformed_regions(text, message):
    with pytest.raises(ValueError, match=message) as exc:
        parse_keep(text)
    assert "--keep" in str(exc.value)


@pytest.mark.parametrize("regions,message", [([(10.0, 60.0)], "ends after the song"),
                                             ([(5.0, 10.0), (8.0, 12.0)], "overlap"),
                                             ([(0.0, 20.0), (25.0, 40.0)], "longer than the target")])
def test_impossible_constraints_are_clear_errors(regions, message):
    with pytest.raises(ValueError, match=message):
        check_regions(regions, source_seconds=48.0, target_seconds=30.0)
    check_regions([(5.0, 10.0), (10.0, 12.0)], 48.0, 30.0)  # touching regions are fine


def test_keep_beats_covers_every_overlapping_beat():
    song = rl_song(0)  # beats ~0.5 s apart from 0.05 s
    ((b0, b1),) = keep_beats(song, [(10.0, 12.0)])
    t = song.beat_times
    assert t[b0] <= 10.0 < t[b0 + 1] and t[b1 - 1] < 12.0 <= t[b1]
    assert keep_beats(song, [(10.0, 11.0), (11.0, 12.0)]) == [(b0, b1)]  # adjacent regions merge


@pytest.mark.parametrize("seed,region", [(1, (20.0, 26.0)), (2, (5.0, 9.0)), (3, (30.0, 34.0))])
def test_search_keeps_the_region_whole_and_lands_on_the_target(seed, region):
    song, cfg = rl_song(seed), EnvConfig()
    target = 0.5
    ranges = keep_beats(song, [region])
    free = build_edit(song, search_decisions(song, target, cfg), 50.0, target, cfg)
    kept = build_edit(song, search_decisions(song, target, cfg, keep=ranges), 50.0, target, cfg)
    assert keeps(kept, ranges)
    beat = float(np.median(np.diff(song.beat_times)))
    assert abs(kept.duration - target * song.duration) <= beat + 1e-6
    # the constraint does something: unconstrained, the search cuts into each of these regions, and keeping one costs
    assert not keeps(free, ranges)
    assert search_path(song, target, keep=ranges).cost >= search_path(song, target).cost - 1e-9


def test_search_without_a_feasible_path_is_a_clear_error():
    song = rl_song(4, n_bars=16)  # 64 beats, ~32 s
    ranges = [(0, 20), (40, 60)]  # 40 beats kept, target ~13 beats
    with pytest.raises(ValueError, match="no edit of .* keeps the region"):
        search_decisions(song, 0.2, EnvConfig(), keep=ranges)


def test_keeps_checks_order_contiguity_and_gain():
    ob = [(0, 1.0, 1.0), (1, 1.0, 1.0), (5, 1.0, 1.0), (6, 1.0, 1.0), (7, 1.0, 0.5)]
    assert keeps(ob, [(0, 2), (5, 7)])
    assert not keeps(ob, [(5, 7), (0, 2)])  # order
    assert not keeps(ob, [(1, 6)])  # a cut inside
    assert not keeps(ob, [(6, 8)])  # faded inside
