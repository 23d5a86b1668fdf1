"""The final report's figures: the policy of several seeds against the strong baselines on the frozen test set.

Every win rate is over seeds x songs with the two-way bootstrap (``statistics.seeds_songs_bootstrap``): a
song's items (targets) are averaged first, then seeds and songs are resampled independently. Computed only
from rows the caller produced (``models.report``); nothing here runs an editor or a judge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from beatedit.judging.statistics import multi_seed_win_rates

BASELINES = ("search", "fade", "heuristic")  # the strong baselines of the report (random, the floor, is the evaluate stage's)
JUDGES = {"listener": "listener_total", "judge": "judge_total"}  # prefix in report.json -> score column


def seed_editor(seed: int) -> str:
    """The editor name of the policy trained with ``rlhf.seed = seed``."""
    return f"policy_seed{seed}"


def best_of_editor(seed: int, n: int) -> str:
    """The editor name of best-of-``n`` sampling from that policy."""
    return f"best_of_{n}_seed{seed}"


def report_summary(df: pd.DataFrame, seeds: Sequence[int], best_of: Sequence[int] = (), real: pd.DataFrame | None = None,
                   n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """metrics/report.json: ``<judge>_win_rate_vs_<baseline>`` (+ CI, + per seed) for the policy under both judges,
    ``best_of_<n>_win_rate_vs_search`` under the listener, each editor's mean totals, and the real-music figures
    under the independent judge (``real_judge_win_rate_vs_<baseline>``)."""
    policy = {s: seed_editor(s) for s in seeds}
    out: dict[str, float] = {"n_seeds": float(len(seeds)), "n_songs": float(df.song_id.nunique()),
                             "n_items": float(df[df.editor == policy[seeds[0]]].shape[0])}
    if "judge_total" in df.columns:
        out["n_judged_songs"] = float(df.loc[df.editor == policy[seeds[0]]].dropna(subset=["judge_total"]).song_id.nunique())
    for prefix, key in JUDGES.items():
        if key in df.columns and df[key].notna().any():
            out.update({f"{prefix}_{k}": v for k, v in multi_seed_win_rates(df, policy, BASELINES, key, n_boot, seed).items()})
    for n in best_of:
        eds = {s: best_of_editor(s, n) for s in seeds}
        if all(e in set(df.editor) for e in eds.values()):
            out.update({f"best_of_{n}_{k}": v for k, v in multi_seed_win_rates(df, eds, ("search",), "listener_total", n_boot, seed).items()
                        if "_seed" not in k})
    if len(best_of) >= 2 and f"best_of_{max(best_of)}_win_rate_vs_search" in out and f"best_of_{min(best_of)}_win_rate_vs_search" in out:
        out["best_of_gain_vs_search"] = out[f"best_of_{max(best_of)}_win_rate_vs_search"] - out[f"best_of_{min(best_of)}_win_rate_vs_search"]
    for editor, g in df.groupby("editor"):
        for key in ("listener_total", "judge_total", "learned_reward", "abs_duration_error_seconds"):
            if key in g.columns and g[key].notna().any():
                out[f"{key}_{editor}"] = float(g[key].mean())
    if real is not None and len(real):
        out["real_n_pieces"] = float(real.song_id.nunique())
        out.update({f"real_judge_{k}": v for k, v in multi_seed_win_rates(real, policy, BASELINES, "judge_total", n_boot, seed).items()})
    return {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in out.items()}


def win_rate_rows(metrics: dict[str, float]) -> pd.DataFrame:
    """The bars of the report's plot: one row per (set and judge, opponent) with the win rate and its CI."""
    import re

    rows = []
    best_of = sorted({int(m.group(1)) for k in metrics if (m := re.match(r"best_of_(\d+)_win_rate_vs_", k))})
    for prefix, label in (("listener", "frozen test, listener"), ("judge", "frozen test, independent judge"),
                          ("real_judge", "real music, independent judge"),
                          *((f"best_of_{n}", f"best-of-{n}, listener") for n in best_of)):
        for opp in BASELINES:
            k = f"{prefix}_win_rate_vs_{opp}"
            if k in metrics:
                rows.append({"set": label, "opponent": opp, "win_rate": metrics[k], "ci_low": metrics[f"{k}_ci_low"],
                             "ci_high": metrics[f"{k}_ci_high"]})
    return pd.DataFrame(rows, columns=["set", "opponent", "win_rate", "ci_low", "ci_high"])


def markdown_table(metrics: dict[str, float], skipped: dict[str, str] | None = None) -> str:
    """The report as a markdown table: win rates with their seeds x songs CIs, then what did not run and why."""
    rows = win_rate_rows(metrics)
    lines = [f"Policy of {int(metrics['n_seeds'])} seeds on {int(metrics['n_songs'])} frozen test songs "
             f"({int(metrics['n_items'])} items per seed; the independent judge on {int(metrics.get('n_judged_songs', 0))} of the songs); "
             "95% CI from a seeds x songs bootstrap.", "",
             "| set, judge | vs | win rate | 95% CI |", "|---|---|---|---|"]
    lines += [f"| {r.set} | {r.opponent} | {r.win_rate:.3f} | {r.ci_low:.3f} - {r.ci_high:.3f} |" for r in rows.itertuples()]
    if "best_of_gain_vs_search" in metrics:
        lines += ["", f"Best-of-N gain vs the search editor (largest N minus smallest): {metrics['best_of_gain_vs_search']:+.3f}"]
    for what, why in (skipped or {}).items():
        lines += ["", f"Not run: {what}: {why}"]
    return "\n".join(lines) + "\n"
