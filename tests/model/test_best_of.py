"""Best-of-N: policy samples (seeded, length-guarded) ranked by the reward model with the target."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from beatedit.config import EnvConfig, PolicyConfig
from models.best_of import best_of_n, best_of_n_many, rank_edits
from models.policy import policy_for_env
from models.policy_edit import edit_song
from models.reward_model import RewardModel, score_batch
from tests.rlhfkit import rl_song

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_policy(seed: int = 0):
    torch.manual_seed(seed)
    return policy_for_env(EnvConfig(), PolicyConfig(d_model=16, n_layers=1, hidden=32))


def tiny_reward_model(seed: int = 0) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel(d_model=16, n_layers=1, n_heads=2, dropout=0.0).eval()


def test_samples_are_ranked_by_the_reward_with_the_target_and_length_guarded():
    song, pol, rm = rl_song(3), small_policy(), tiny_reward_model()
    target = 0.6
    # the guard is on even when the caller's env config turned it off
    ranked = best_of_n(pol, rm, song, target, 8, dataclasses.replace(EnvConfig(), length_guard=False), seed=1)
    assert len(ranked) == 8
    assert [r.rank for r in ranked] == list(range(8))
    assert sorted(r.sample for r in ranked) == list(range(8))
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # the scores are the reward model's, WITH the target ratio (the reward PPO optimised)
    expect = score_batch(rm, [(song.features, r.edit.beat_actions, target) for r in ranked])
    np.testing.assert_allclose(scores, expect, rtol=1e-5, atol=1e-6)
    beat = float(np.median(np.diff(song.beat_times)))
    for r in ranked:
        assert abs(r.edit.duration - target * song.duration) <= 1.0 * beat + 1e-6, r.edit.duration
    # stochastic: 8 draws of a random policy are not all the same edit, and not all the greedy one
    assert len({r.decisions for r in ranked}) > 1
    greedy = tuple(edit_song(pol, song, target).decisions)
    assert any(r.decisions != greedy for r in ranked)


def test_seeded_and_one_sample_for_n_1():
    song, pol, rm = rl_song(4), small_policy(1), tiny_reward_model(1)
    a = best_of_n(pol, rm, song, 0.55, 4, seed=7)
    b = best_of_n(pol, rm, song, 0.55, 4, seed=7)
    assert [r.decisions for r in a] == [r.decisions for r in b]
    assert [r.score for r in a] == [r.score for r in b]
    c = best_of_n(pol, rm, song, 0.55, 4, seed=8)
    assert [r.decisions for r in a] != [r.decisions for r in c]
    one = best_of_n(pol, rm, song, 0.55, 1, seed=7)
    assert len(one) == 1 and one[0].rank == 0 and one[0].sample == 0


def test_many_jobs_at_once_each_ranked_within_its_own_song():
    songs = [rl_song(5), rl_song(6, n_bars=16)]
    pol, rm = small_policy(2), tiny_reward_model(2)
    out = best_of_n_many(pol, rm, [(songs[0], 0.6), (songs[1], 0.7)], 3, seed=0)
    assert [len(x) for x in out] == [3, 3]
    for (song, t), ranked in zip([(songs[0], 0.6), (songs[1], 0.7)], out):
        assert all(len(r.edit.beat_actions) == len(song.beat_times) for r in ranked)
        expect = score_batch(rm, [(song.features, r.edit.beat_actions, t) for r in ranked])
        np.testing.assert_allclose([r.score for r in ranked], expect, rtol=1e-5, atol=1e-6)
    assert best_of_n_many(pol, rm, [], 3) == []


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_n_is_refused(n):
    with pytest.raises(ValueError, match="n must be a whole number"):
        best_of_n(small_policy(), tiny_reward_model(), rl_song(0), 0.6, n)


@pytest.mark.parametrize("t", [0.0, 1.5, float("nan")])
def test_bad_target_is_refused(t):
    with pytest.raises(ValueError, match="target ratio"):
        best_of_n(small_policy(), tiny_reward_model(), rl_song(0), t, 2)


def test_rank_edits_keeps_drawing_order_on_ties_and_checks_lengths():
    ranked = rank_edits(["a", "b", "c"], [1.0, 2.0, 1.0])  # type: ignore[list-item]
    assert [(r.edit, r.rank, r.sample) for r in ranked] == [("b", 0, 1), ("a", 1, 0), ("c", 2, 2)]
    with pytest.raises(ValueError, match="2 scores"):
        rank_edits(["a", "b", "c"], [1.0, 2.0])  # type: ignore[list-item]
