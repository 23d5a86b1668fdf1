"""Evaluation statistics: win rates with bootstrap CIs, edit statistics, the promotion rule.

Everything here is computed from edits and listener scores the caller produced; no
number is invented. Win rates count a tie as half a win.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from beatedit.editing.actions import ACTION_NAMES, N_ACTIONS
from beatedit.audio.song import SongAnalysis


def wins(a: Sequence[float], b: Sequence[float], tie_tol: float = 1e-9) -> np.ndarray:
    """Per-item outcome of A against B: 1 win, 0.5 tie, 0 loss."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare {a.shape} scores with {b.shape}")
    d = a - b
    return np.where(np.abs(d) <= tie_tol, 0.5, (d > 0).astype(np.float64))


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (resampling items, i.e. songs)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


@dataclass(frozen=True)
class WinRate:
    rate: float
    ci_low: float
    ci_high: float
    n: int

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {prefix: self.rate, f"{prefix}_ci_low": self.ci_low, f"{prefix}_ci_high": self.ci_high}


def win_rate(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0) -> WinRate:
    w = wins(a, b)
    lo, hi = bootstrap_ci(w, n_boot=n_boot, seed=seed)
    return WinRate(float(w.mean()), lo, hi, int(w.size))


def splices(output_beats: Sequence[tuple[int, float, float]]) -> list[tuple[int, int]]:
    """(source beat left behind + 1, source beat jumped to) for every non-contiguous step of the output."""
    src = [int(b[0]) for b in output_beats]
    return [(x + 1, y) for x, y in zip(src, src[1:]) if y != x + 1]


def edit_stats(song: SongAnalysis, output_beats: Sequence[tuple[int, float, float]], duration: float,
               target_ratio: float, beat_actions: np.ndarray) -> dict[str, float]:
    """Duration error (relative, and in seconds: within one median beat is what the length guard promises),
    share of cuts on bar / phrase boundaries, splices, loops, action shares."""
    bars = set(int(b) for b in song.bar_starts) | {song.n_beats}
    phrases = set(int(p) for p in song.phrase_starts) | {song.n_beats}
    cuts = splices(output_beats)
    on_bar = [a in bars and b in bars for a, b in cuts]
    on_phrase = [a in phrases and b in phrases for a, b in cuts]
    ratio = duration / song.duration
    err = abs(ratio - target_ratio) / target_ratio
    err_s = duration - target_ratio * song.duration
    beat = float(np.median(np.diff(np.asarray(song.beat_times, dtype=np.float64)))) if song.n_beats > 1 else song.duration
    hist = np.bincount(np.asarray(beat_actions, dtype=np.int64), minlength=N_ACTIONS) / max(len(beat_actions), 1)
    out = {
        "duration_ratio": ratio,
        "duration_error": err,
        "duration_within_5pct": float(err <= 0.05),
        "duration_error_seconds": float(err_s),
        "abs_duration_error_seconds": float(abs(err_s)),
        "within_one_beat": float(abs(err_s) <= beat + 1e-9),
        "n_splices": float(len(cuts)),
        "cuts_on_bar": float(np.mean(on_bar)) if cuts else 1.0,
        "cuts_on_phrase": float(np.mean(on_phrase)) if cuts else 1.0,
    }
    out.update({f"action_share_{name}": float(h) for name, h in zip(ACTION_NAMES, hist)})
    return out


def promotion_decision(vs_champion: WinRate | None, vs_floor: WinRate, margin: float,
                       reward_gate_passed: bool) -> tuple[bool, str]:
    """Promote only a candidate whose reward model passed the gate and that beats the incumbent clearly.

    With a champion: win rate against it >= 0.5 + margin and its CI's lower bound > 0.5.
    With none yet (the very first promotion) the same rule applies against ``vs_floor``,
    the random editor: production never gets a policy that does not clearly beat chance.
    """
    if not reward_gate_passed:
        return False, "its reward model did not pass the validation gate"
    incumbent, w = ("champion", vs_champion) if vs_champion is not None else ("random editor (no champion yet)", vs_floor)
    if w.rate < 0.5 + margin:
        return False, f"win rate vs {incumbent} {w.rate:.3f} is below 0.5 + margin {margin:.3f}"
    if w.ci_low <= 0.5:
        return False, f"win rate vs {incumbent} {w.rate:.3f}, but its CI lower bound {w.ci_low:.3f} is not above 0.5"
    return True, f"beats the {incumbent}: win rate {w.rate:.3f} (95% CI {w.ci_low:.3f}-{w.ci_high:.3f}) over {w.n} edits"


# ----------------------------------------------------------------------------- editors head to head
def evaluate_editors(songs: Sequence[SongAnalysis], targets: dict[str, Sequence[float]], editors: dict[str, Callable[[SongAnalysis, float], Any]],
                     score: Callable[[SongAnalysis, Any, float], dict[str, float]],
                     learned: Callable[[list[tuple[np.ndarray, np.ndarray, float]]], np.ndarray] | None = None,
                     progress: bool = True) -> "pd.DataFrame":
    """One row per (song, target, editor): listener (gold) scores, dense components, learned reward, edit statistics.

    ``targets[song_id]`` lists the edit targets to try on that song. ``score(song, edit,
    target)`` returns the listener's and dense reward's components (the caller binds audio
    and configs); ``learned`` scores (features, beat_actions, target) items in one batch when given: with the
    target, as PPO's terminal reward scores its episodes, so ``learned_reward`` is the reward the policy optimised.
    """
    import pandas as pd
    from beatedit.progress import progress_bar

    rows, items = [], []
    for song in progress_bar(songs, desc="evaluate", unit="song", disable=not progress):
        for target in targets[song.song_id]:
            for name, editor in editors.items():
                edit = editor(song, target)
                row = {"song_id": song.song_id, "item": f"{song.song_id}@{target:.4f}", "editor": name, "target_ratio": target}
                row.update(score(song, edit, target))
                row.update(edit_stats(song, edit.output_beats, edit.edl.duration, target, edit.beat_actions))
                row["edl"] = edit.edl.to_json()
                row["beat_actions"] = [int(a) for a in edit.beat_actions]  # per source beat: the listening set's pairs need them
                rows.append(row)
                items.append((song.features, np.asarray(edit.beat_actions, dtype=np.int64), float(target)))
    df = pd.DataFrame(rows)
    if learned is not None and len(df):
        df["learned_reward"] = learned(items)
    return df


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[str], n_boot: int = 2000, alpha: float = 0.05,
                         seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean, resampling whole clusters (songs): items of one song are not independent."""
    v = np.asarray(values, dtype=np.float64)
    keys, inv = np.unique(np.asarray(clusters), return_inverse=True)
    sums = np.bincount(inv, weights=v, minlength=len(keys))
    counts = np.bincount(inv, minlength=len(keys)).astype(np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(keys), size=(n_boot, len(keys)))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def head_to_head(df: "pd.DataFrame", candidate: str, other: str, key: str = "listener_total", n_boot: int = 2000, seed: int = 0) -> WinRate:
    """Candidate vs other on the same (song, target) items, judged by ``key`` (default the listener's gold score).

    The CI comes from a bootstrap over songs (all targets of a song move together).
    """
    a = df[df.editor == candidate].set_index("item")
    b = df[df.editor == other].set_index("item")
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ValueError(f"no items scored for both {candidate!r} and {other!r}")
    w = wins(a.loc[common, key].to_numpy(), b.loc[common, key].to_numpy())
    lo, hi = cluster_bootstrap_ci(w, a.loc[common, "song_id"].to_numpy(), n_boot=n_boot, seed=seed)
    return WinRate(float(w.mean()), lo, hi, int(w.size))


def summarise(df: "pd.DataFrame", candidate: str, opponents: Sequence[str], n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """eval.json figures: win rates with CIs vs each opponent (listener; and the independent judge's
    ``judge_win_rate_vs_*`` when the rows carry ``judge_total``), the candidate's own means, and per editor
    the listener / judge means and the duration error in seconds (mean |error|, p95, share within one beat)."""
    mine = df[df.editor == candidate]
    out: dict[str, float] = {"n_songs": float(mine.song_id.nunique()), "n_items": float(len(mine))}
    judged = "judge_total" in df.columns
    for other in opponents:
        if other in set(df.editor):
            out.update(head_to_head(df, candidate, other, n_boot=n_boot, seed=seed).as_dict(f"win_rate_vs_{other}"))
            if judged:
                out.update(head_to_head(df, candidate, other, "judge_total", n_boot, seed).as_dict(f"judge_win_rate_vs_{other}"))
    numeric = [c for c in mine.columns if c not in ("song_id", "item", "editor", "edl") and np.issubdtype(mine[c].dtype, np.number)]
    for c in numeric:
        out[c] = float(mine[c].mean())
    for name in sorted(set(df.editor)):
        rows = df[df.editor == name]
        out[f"listener_total_{name}"] = float(rows["listener_total"].mean())
        if judged:
            out[f"judge_total_{name}"] = float(rows["judge_total"].mean())
        if "abs_duration_error_seconds" in rows.columns:
            out[f"duration_error_seconds_mean_{name}"] = float(rows["abs_duration_error_seconds"].mean())
            out[f"duration_error_seconds_p95_{name}"] = float(rows["abs_duration_error_seconds"].quantile(0.95))
            out[f"within_one_beat_{name}"] = float(rows["within_one_beat"].mean())
    return out


def baseline_report(df: "pd.DataFrame", editors: Sequence[str] = ("search", "heuristic", "fade", "random"),
                    n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """How the baselines stand against each other: the search editor vs the fade (it must win under
    the listener, or the listener still rewards a radio fade) under both judges, and whether the
    independent judge orders the baselines as the listener does (Kendall's tau of their mean totals)."""
    present = [e for e in editors if e in set(df.editor)]
    out: dict[str, float] = {}
    if {"search", "fade"} <= set(present):
        out.update(head_to_head(df, "search", "fade", n_boot=n_boot, seed=seed).as_dict("search_win_rate_vs_fade"))
        if "judge_total" in df.columns:
            out.update(head_to_head(df, "search", "fade", "judge_total", n_boot, seed).as_dict("search_judge_win_rate_vs_fade"))
    if "judge_total" in df.columns and len(present) >= 2:
        lis = [float(df[df.editor == e]["listener_total"].mean()) for e in present]
        jud = [float(df[df.editor == e]["judge_total"].mean()) for e in present]
        out["judge_listener_order_tau"] = kendall_tau(lis, jud)
        out["judge_listener_order_agree"] = float(np.array_equal(np.argsort(lis), np.argsort(jud)))
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-a of two score lists (1: same order, -1: reversed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    i, j = np.triu_indices(len(a), k=1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    return float(s.mean()) if len(s) else 1.0


# ----------------------------------------------------------------------------- several seeds (the final report)
def seeds_songs_bootstrap(grid: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean and percentile CI of a [n_seeds, n_songs] grid (e.g. each seed's win rate per song), resampling seeds
    and songs independently (two-way bootstrap): the CI holds both the seed-to-seed and the song-to-song spread.
    A NaN cell (a seed that did not edit a song) is left out of its resample's mean."""
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2 or g.size == 0:
        raise ValueError(f"seeds x songs bootstrap needs a non-empty 2-d grid, got shape {g.shape}")
    if np.isnan(g).all():
        raise ValueError("seeds x songs bootstrap of a grid with no values")
    rng = np.random.default_rng(seed)
    n_seeds, n_songs = g.shape
    means = np.empty(n_boot)
    for b in range(n_boot):
        means[b] = np.nanmean(g[np.ix_(rng.integers(0, n_seeds, n_seeds), rng.integers(0, n_songs, n_songs))])
    means = means[~np.isnan(means)]
    return float(np.nanmean(g)), float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def multi_seed_win_rates(df: "pd.DataFrame", seed_editors: dict[int, str], opponents: Sequence[str], key: str = "listener_total",
                         n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Win rate of the policy (one editor per training seed, ``seed_editors``) against each opponent judged by ``key``,
    per song averaged over its targets, with the seeds x songs bootstrap CI: ``win_rate_vs_<opp>`` (+ ``_ci_low`` /
    ``_ci_high``) and, per seed, ``win_rate_vs_<opp>_seed<k>``. Opponents are the same items' other editors."""
    import pandas as pd

    piv = df.pivot_table(index=["song_id", "item"], columns="editor", values=key, aggfunc="first")
    songs = sorted(piv.index.get_level_values(0).unique())
    out: dict[str, float] = {}
    for opp in opponents:
        if opp not in piv.columns:
            continue
        grid = np.full((len(seed_editors), len(songs)), np.nan)
        for i, (s, ed) in enumerate(seed_editors.items()):
            if ed not in piv.columns:
                continue
            w = pd.Series(wins(piv[ed].to_numpy(), piv[opp].to_numpy()), index=piv.index)
            w[piv[ed].isna().to_numpy() | piv[opp].isna().to_numpy()] = np.nan
            per_song = w.groupby(level=0).mean()
            grid[i] = per_song.reindex(songs).to_numpy()
            out[f"win_rate_vs_{opp}_seed{s}"] = float(np.nanmean(grid[i]))
        mean, lo, hi = seeds_songs_bootstrap(grid, n_boot=n_boot, seed=seed)
        out.update({f"win_rate_vs_{opp}": mean, f"win_rate_vs_{opp}_ci_low": lo, f"win_rate_vs_{opp}_ci_high": hi})
    return out
