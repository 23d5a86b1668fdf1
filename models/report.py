"""The final report's evaluation: several trained policies (one per seed) against the strong baselines on the
frozen test set, under the listener (gold, audio seams) and the independent judge; real music under the judge.

Policies edit in one batch per seed (``edit_songs``: the same greedy edits as ``edit_song``, one vectorised env),
best-of-N likewise (``models.best_of.best_of_n_many``: N seeded samples per item ranked by the reward model with
the target), then ``beatedit.judging.statistics.evaluate_editors`` scores every (song, target, editor) item, as the
evaluate stage does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from beatedit.audio.song import SongAnalysis
from beatedit.config import Config
from beatedit.judging.report import BASELINES, best_of_editor, seed_editor
from beatedit.judging.statistics import evaluate_editors
from models.best_of import best_of_n_many
from models.heldout import editors_for, learned_scorer, scorer, song_targets
from models.policy import ActorCritic
from models.policy_edit import edit_songs


def batched_policy_editor(policy: ActorCritic, songs: Sequence[SongAnalysis], targets: Mapping[str, Sequence[float]],
                          cfg: Config) -> Callable[[SongAnalysis, float], Any]:
    """Greedy edits of every (song, target) in one vectorised pass; the editor returns them by (song, target)."""
    jobs = [(s, float(t)) for s in songs for t in targets[s.song_id]]
    res = edit_songs(policy, [s for s, _ in jobs], [t for _, t in jobs], cfg.env, greedy=True, render_cfg=cfg.render)
    done = {(s.song_id, round(t, 9)): r.edit for (s, t), r in zip(jobs, res)}
    return lambda song, target: done[(song.song_id, round(float(target), 9))]


def batched_best_of_editor(policy: ActorCritic, reward_model: Any, songs: Sequence[SongAnalysis],
                           targets: Mapping[str, Sequence[float]], n: int, cfg: Config, seed: int) -> Callable[[SongAnalysis, float], Any]:
    """Best-of-``n`` edits (the reward model's pick of ``n`` seeded policy samples) of every (song, target), batched."""
    jobs = [(s, float(t)) for s in songs for t in targets[s.song_id]]
    ranked = best_of_n_many(policy, reward_model, jobs, n, cfg.env, seed=seed, render_cfg=cfg.render,
                            batch_size=cfg.reward.score_batch_size)
    done = {(s.song_id, round(t, 9)): r[0].edit for (s, t), r in zip(jobs, ranked)}
    return lambda song, target: done[(song.song_id, round(float(target), 9))]


def frozen_report_rows(songs: Sequence[SongAnalysis], cfg: Config, policies: Mapping[int, ActorCritic],
                       reward_model: Any, normalizer: Any, progress: bool = True) -> pd.DataFrame:
    """Rows of every (song, target, editor) on the frozen test set: each seed's policy and the baselines under the
    listener (gold, audio seams) and, on the first ``report.judge_songs`` songs, the independent judge; best-of-N per seed and N under the listener; the learned
    reward (with the target) for all."""
    targets = song_targets(songs, cfg, cfg.report.seed, cfg.report.targets_per_song)
    base = editors_for(cfg, seed=cfg.report.seed)
    eds: dict[str, Any] = {seed_editor(s): batched_policy_editor(p, songs, targets, cfg) for s, p in policies.items()}
    eds.update({k: base[k] for k in BASELINES})
    learned = learned_scorer(reward_model, normalizer, cfg.reward.score_batch_size)
    n_judged = cfg.report.judge_songs or len(songs)  # the judge is the report's main cost: the first N songs get it
    judged = pd.concat([evaluate_editors(part, targets, eds, scorer(cfg, judge=judge), learned, progress=progress)
                        for part, judge in ((songs[:n_judged], True), (songs[n_judged:], False)) if part], ignore_index=True)
    best = {best_of_editor(s, n): batched_best_of_editor(p, reward_model, songs, targets, n, cfg, seed=cfg.report.seed + s)
            for n in cfg.report.best_of for s, p in policies.items()}
    if not best:
        return judged
    # best-of-N is a listener figure (N = 8 vs N = 1 against the search editor): the judge (~1 s an edit) is spent on the
    # policies and baselines only, which keeps the full report within its time budget
    return pd.concat([judged, evaluate_editors(songs, targets, best, scorer(cfg, judge=False), learned, progress=progress)],
                     ignore_index=True)


def real_music_rows(songs: Sequence[SongAnalysis], cfg: Config, policies: Mapping[int, ActorCritic],
                    progress: bool = True) -> pd.DataFrame:
    """Real music (no ground truth that the listener could use honestly): every seed's policy and the baselines,
    scored by the independent judge (audio only; the listener's columns are kept for reference only)."""
    targets = song_targets(songs, cfg, cfg.report.seed, cfg.report.targets_per_song)
    base = editors_for(cfg, seed=cfg.report.seed)
    eds: dict[str, Any] = {seed_editor(s): batched_policy_editor(p, songs, targets, cfg) for s, p in policies.items()}
    eds.update({k: base[k] for k in BASELINES})
    return evaluate_editors(songs, targets, eds, scorer(cfg, judge=True), None, progress=progress)
