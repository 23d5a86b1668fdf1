"""Evaluation statistics and the promotion rule."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.judging.statistics import WinRate, bootstrap_ci, promotion_decision, splices, win_rate, wins


def test_wins_counts_ties_as_half():
    assert wins([1, 2, 3], [0, 2, 4]).tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        wins([1, 2], [1])


def test_bootstrap_ci_brackets_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.random(20) < 0.7
    big = rng.random(2000) < 0.7
    lo_s, hi_s = bootstrap_ci(small)
    lo_b, hi_b = bootstrap_ci(big)
    assert lo_s <= small.mean() <= hi_s and lo_b <= big.mean() <= hi_b
    assert hi_b - lo_b < hi_s - lo_s


def test_win_rate_all_wins():
    w = win_rate([2.0] * 30, [1.0] * 30)
    assert w.rate == 1.0 and w.ci_low == 1.0 and w.n == 30


def test_splices_found_from_output_beats():
    out = [(0, 1, 1), (1, 1, 1), (4, 1, 1), (5, 1, 1), (5, 1, 1)]
    assert splices(out) == [(2, 4), (6, 5)]


def test_promotion_rule():
    strong, weak, noisy = WinRate(0.8, 0.65, 0.9, 40), WinRate(0.52, 0.4, 0.6, 40), WinRate(0.7, 0.45, 0.9, 10)
    assert promotion_decision(strong, weak, 0.05, True)[0]
    assert not promotion_decision(strong, strong, 0.05, False)[0]
    ok, why = promotion_decision(weak, strong, 0.05, True)
    assert not ok and "below" in why
    ok, why = promotion_decision(noisy, strong, 0.05, True)
    assert not ok and "lower bound" in why
    assert promotion_decision(None, strong, 0.05, True)[0]
    assert not promotion_decision(None, weak, 0.05, True)[0]


def test_cluster_bootstrap_is_wider_than_iid_for_correlated_items():
    from beatedit.judging.statistics import cluster_bootstrap_ci

    # 6 songs x 5 targets; outcomes identical within a song (fully correlated)
    per_song = [1, 1, 1, 0, 1, 0]
    values = [v for v in per_song for _ in range(5)]
    clusters = [f"s{i}" for i in range(6) for _ in range(5)]
    lo_c, hi_c = cluster_bootstrap_ci(values, clusters, seed=1)
    lo_i, hi_i = bootstrap_ci(values, seed=1)
    assert hi_c - lo_c > hi_i - lo_i
    assert lo_c <= np.mean(values) <= hi_c


def test_seeds_songs_bootstrap_holds_the_seed_to_seed_spread():
    from beatedit.judging.statistics import seeds_songs_bootstrap

    rng = np.random.default_rng(0)
    songs = (rng.random(200) < 0.7).astype(float)
    same = np.tile(songs, (3, 1))  # three seeds that agree: only the song spread
    apart = np.stack([songs * 0 + 0.9, songs * 0 + 0.5, songs * 0 + 0.7])  # seeds that disagree, songs that do not
    m1, lo1, hi1 = seeds_songs_bootstrap(same, n_boot=500)
    m2, lo2, hi2 = seeds_songs_bootstrap(apart, n_boot=500)
    assert m1 == pytest.approx(songs.mean()) and lo1 < m1 < hi1
    assert m2 == pytest.approx(0.7) and hi2 - lo2 > 0.1  # a songs-only bootstrap would give a zero-width CI here
    assert seeds_songs_bootstrap(np.full((2, 5), 0.5), n_boot=50)[1:] == (0.5, 0.5)
    with pytest.raises(ValueError, match="2-d"):
        seeds_songs_bootstrap(np.zeros(4))


def test_report_summary_win_rates_per_seed_and_best_of_gain():
    import pandas as pd

    from beatedit.judging.report import markdown_table, report_summary

    rows = []
    for song in range(6):
        item = f"s{song}@0.6"
        score = {"policy_seed0": 0.9, "policy_seed1": 0.5 if song % 2 else 0.95, "search": 0.8, "fade": 0.6, "heuristic": 0.7,
                 "best_of_1_seed0": 0.7, "best_of_1_seed1": 0.7, "best_of_8_seed0": 0.85, "best_of_8_seed1": 0.85}
        for ed, v in score.items():
            rows.append({"song_id": f"s{song}", "item": item, "editor": ed, "listener_total": v,
                         "judge_total": v if not ed.startswith("best_of") else np.nan})
    m = report_summary(pd.DataFrame(rows), [0, 1], [1, 8], n_boot=200)
    assert m["listener_win_rate_vs_search_seed0"] == 1.0 and m["listener_win_rate_vs_search_seed1"] == 0.5
    assert m["listener_win_rate_vs_search"] == pytest.approx(0.75)
    assert m["listener_win_rate_vs_search_ci_low"] <= 0.75 <= m["listener_win_rate_vs_search_ci_high"]
    assert m["best_of_1_win_rate_vs_search"] == 0.0 and m["best_of_8_win_rate_vs_search"] == 1.0
    assert m["best_of_gain_vs_search"] == 1.0 and m["judge_win_rate_vs_fade"] == pytest.approx(0.75)
    table = markdown_table(m, {"real music": "no soundfont"})
    assert "| frozen test, listener | search | 0.750 |" in table and "| best-of-8, listener | search | 1.000 |" in table
