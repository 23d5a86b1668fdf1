"""Best-of-N at inference: sample N edits from the policy, rank them with the learned reward.

The policy is sampled (not argmax) inside the editing env with the length guard on, so
every sample lands within ``env.length_tolerance_beats`` of the target like any other
editor; each sample is scored by the reward model WITH the target ratio -- the reward PPO
optimised (``models.ppo_monitor.score_learned``) -- and the samples come back best first.
The simulated listener never runs here: this is the production path (``beatedit edit
--best-of N`` / ``--variations N``) and the evaluation's best-of-N figure.

Seeded: the same (policy, song, target, n, seed) gives the same samples in the same order.
N = 1 is one sample (a draw from the policy, not its greedy edit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from beatedit.audio.song import SongAnalysis
from beatedit.config import EnvConfig, RenderConfig
from beatedit.editing.program import EditResult

from models.policy import ActorCritic
from models.policy_edit import edit_songs
from models.reward_model import RewardModel, score_batch


@dataclass(frozen=True)
class RankedEdit:
    """One sampled edit with its learned-reward score; ``rank`` 0 is the best of its (song, target)."""

    edit: EditResult
    score: float  # raw reward-model score of the edit at its target ratio (higher is better)
    rank: int  # position in the ranking, 0 = best
    sample: int  # order in which it was drawn (0..n-1)

    @property
    def decisions(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.edit.decisions)


def _check(n: int, target_ratio: float) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"best-of-N: n must be a whole number >= 1, got {n!r}")
    if not np.isfinite(target_ratio) or not 0.0 < float(target_ratio) <= 1.0:
        raise ValueError(f"best-of-N: target ratio must be in (0, 1], got {target_ratio!r}")


def rank_edits(edits: Sequence[EditResult], scores: Sequence[float]) -> list[RankedEdit]:
    """Edits ordered best first by score (ties keep the drawing order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(edits):
        raise ValueError(f"rank_edits: {len(edits)} edits but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    return [RankedEdit(edits[int(i)], float(scores[int(i)]), r, int(i)) for r, i in enumerate(order)]


@torch.no_grad()
def best_of_n_many(policy: ActorCritic, reward_model: RewardModel, jobs: Sequence[tuple[SongAnalysis, float]], n: int,
                   env_cfg: EnvConfig | None = None, *, seed: int = 0, render_cfg: RenderConfig | None = None,
                   crossfade_ms: float | None = None, device: str | torch.device = "cpu",
                   batch_size: int = 64) -> list[list[RankedEdit]]:
    """``best_of_n`` for many (song, target) jobs at once: all ``len(jobs) * n`` samples are stepped
    together in one vectorised env and scored in batched reward-model calls. Returns, per job,
    its ``n`` samples best first."""
    jobs = list(jobs)
    for _, t in jobs:
        _check(n, t)
    if not jobs:
        return []
    env_cfg = dataclasses.replace(env_cfg or EnvConfig(), length_guard=True)
    songs = [s for s, _ in jobs for _ in range(n)]
    targets = [float(t) for _, t in jobs for _ in range(n)]
    res = edit_songs(policy, songs, targets, env_cfg, greedy=False, rng=np.random.default_rng(seed),
                     render_cfg=render_cfg, crossfade_ms=crossfade_ms, device=device)
    scores = score_batch(reward_model, [(s.features, r.edit.beat_actions, t) for s, t, r in zip(songs, targets, res)],
                         device, batch_size)
    return [rank_edits([r.edit for r in res[k * n:(k + 1) * n]], scores[k * n:(k + 1) * n]) for k in range(len(jobs))]


def best_of_n(policy: ActorCritic, reward_model: RewardModel, song: SongAnalysis, target_ratio: float, n: int,
              env_cfg: EnvConfig | None = None, *, seed: int = 0, render_cfg: RenderConfig | None = None,
              crossfade_ms: float | None = None, device: str | torch.device = "cpu",
              batch_size: int = 64) -> list[RankedEdit]:
    """``n`` policy samples of ``song`` at ``target_ratio`` (length-guarded, seeded), scored by the reward
    model with the target, best first: ``[0].edit`` is the best-of-N edit, ``[0].score`` its score."""
    return best_of_n_many(policy, reward_model, [(song, target_ratio)], n, env_cfg, seed=seed, render_cfg=render_cfg,
                          crossfade_ms=crossfade_ms, device=device, batch_size=batch_size)[0]
