"""PPO: GAE, the clipped objective, the KL penalty, resume == uninterrupted, learning on one song."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from beatedit.config import Config, PolicyConfig
from models.checkpoint import CheckpointError
from models.policy import policy_for_env
from models.ppo import (adaptive_kl_coef, clipped_policy_loss, compute_gae, explained_variance, kl_penalty, train_ppo,
                        value_loss)
from models.ppo_state import latest_checkpoint
from models.reward_model import RewardModel, RewardNormalizer
from tests.rlhfkit import rl_song


pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOLATILE = ("charts/SPS", "time/rollout_s", "time/rewards_gae_s", "time/update_s")


def tiny_cfg(**rl_overrides) -> Config:
    cfg = Config()
    env = dataclasses.replace(cfg.env, illegal_action="raise")  # any masked action sampled would raise
    rl = dataclasses.replace(cfg.rlhf, n_envs=4, rollout_steps=32, n_minibatches=2, update_epochs=2,
                             total_steps=4 * 32 * 4, eval_interval=2, checkpoint_every=2, n_eval_songs=1,
                             eval_targets=(0.6,), policy=PolicyConfig(d_model=16, n_layers=1, hidden=32))
    rl = dataclasses.replace(rl, **rl_overrides)
    return dataclasses.replace(cfg, env=env, rlhf=rl)


def make_policy(cfg: Config, seed: int = 0):
    torch.manual_seed(seed)
    return policy_for_env(cfg.env, cfg.rlhf.policy)


def tiny_reward_model(seed: int = 0) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel(d_model=16, n_layers=1, n_heads=2, dropout=0.0).eval()


# ----------------------------------------------------------------------------- GAE
def test_gae_hand_computed_with_an_episode_end_in_the_middle():
    gamma, lam = 0.9, 0.8
    # env 0: an episode ends after step 1 (obs 2 starts a new one); env 1: the next obs starts a new episode
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 1.0]])
    values = torch.tensor([[0.5, 0.1], [0.4, 0.1], [0.3, 0.1], [0.2, 0.2]])
    dones = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    next_value = torch.tensor([0.7, 5.0])
    next_done = torch.tensor([0.0, 1.0])
    adv, ret = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)
    # by hand (delta_t = r_t + gamma V_{t+1} (1 - done_{t+1}) - V_t; A_t = delta_t + gamma lam (1 - done_{t+1}) A_{t+1}):
    # env 0: d3 = 4 + .9*.7 - .2 = 4.43; d2 = 3 + .9*.2 - .3 = 2.88 -> A2 = 2.88 + .72*4.43 = 6.0696
    #        d1 = 2 - .4 = 1.6 (cut) -> A1 = 1.6;  d0 = 1 + .9*.4 - .5 = .86 -> A0 = .86 + .72*1.6 = 2.012
    # env 1: A3 = 1 - .2 = .8 (cut: next obs is a new episode); A2 = .08 + .72*.8 = .656
    #        A1 = -.01 + .72*.656 = .46232; A0 = -.01 + .72*.46232 = .3228704
    expected = torch.tensor([[2.012, 0.3228704], [1.6, 0.46232], [6.0696, 0.656], [4.43, 0.8]])
    assert torch.allclose(adv, expected, atol=1e-5)
    assert torch.allclose(ret, expected + values, atol=1e-5)


def test_gae_with_gamma_lambda_one_is_the_monte_carlo_return_minus_value():
    rng = np.random.default_rng(0)
    T = 7
    r = torch.as_tensor(rng.normal(size=(T, 1)), dtype=torch.float32)
    v = torch.as_tensor(rng.normal(size=(T, 1)), dtype=torch.float32)
    d = torch.zeros(T, 1)
    d[4] = 1.0  # episode boundary between steps 3 and 4
    adv, _ = compute_gae(r, v, d, torch.zeros(1), torch.ones(1), 1.0, 1.0)
    mc = torch.cat([r[:4].flip(0).cumsum(0).flip(0), r[4:].flip(0).cumsum(0).flip(0)])
    assert torch.allclose(adv, mc - v, atol=1e-5)


# ----------------------------------------------------------------------------- losses
def test_clipped_objective_hand_computed():
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7])
    newlogprob = ratio.log().clone().requires_grad_(True)
    old = torch.zeros(4)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, st = clipped_policy_loss(newlogprob, old, adv, 0.2)
    # per sample max(-A r, -A clip(r, .8, 1.2)): max(-1.5, -1.2) = -1.2; max(-.5, -.8) = -.5;
    # max(1.1, 1.1) = 1.1; max(.7, .8) = .8  -> mean .05
    assert loss.item() == pytest.approx(0.05, abs=1e-6)
    assert st["clipfrac"].item() == pytest.approx(0.75)
    loss.backward()
    # gradient flows only where the unclipped term is the max: d(-A r)/d log r = -A r, over 4
    assert torch.allclose(newlogprob.grad, torch.tensor([0.0, -0.5, 1.1, 0.0]) / 4, atol=1e-6)
    lr = ratio.log()
    assert st["approx_kl"].item() == pytest.approx(((ratio - 1) - lr).mean().item(), abs=1e-6)


def test_value_loss_clipped_hand_computed():
    new = torch.tensor([1.0, 0.0])
    old = torch.tensor([0.5, 0.1])
    ret = torch.tensor([2.0, 0.0])
    # sample 0: unclipped (1-2)^2 = 1, clipped (0.5+clip(0.5)=0.7 - 2)^2 = 1.69 -> 1.69
    # sample 1: the change -0.1 is inside the clip range: both terms (0-0)^2 = 0
    assert value_loss(new, old, ret, 0.2, True).item() == pytest.approx(0.5 * (1.69 + 0.0) / 2, abs=1e-6)
    assert value_loss(new, old, ret, 0.2, False).item() == pytest.approx(0.5 * (1.0 + 0.0) / 2, abs=1e-6)


def test_small_helpers():
    assert torch.equal(kl_penalty(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -2.0]), 0.3), torch.zeros(2))
    assert kl_penalty(torch.tensor([-1.0]), torch.tensor([-2.0]), 0.5).item() == pytest.approx(-0.5)
    assert explained_variance(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert adaptive_kl_coef(0.1, 10.0, 5.0, 1000, 10000) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert adaptive_kl_coef(0.1, 1.0, 5.0, 1000, 10000) < 0.1


# ----------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("bf16", [True, False])
def test_kl_penalty_is_zero_when_policy_equals_reference(bf16):
    cfg = tiny_cfg(total_steps=4 * 32, kl_coef=1.0, bf16=bf16)
    songs = [rl_song(0, n_bars=12), rl_song(1, n_bars=12)]
    pol = make_policy(cfg)
    rows = []
    res = train_ppo(pol, copy.deepcopy(pol), None, None, songs[:1], songs[1:], cfg,
                    log=lambda m, s: rows.append(m), progress=False, restore_best=False)
    first = res["train_history"][0]
    assert first["charts/episodes"] > 0
    assert first["charts/episode_kl"] == 0.0  # logp - logp_ref exactly 0 along every step of the rollout
    assert first["charts/episode_reward"] == first["charts/episode_reward_minus_kl"]
    assert res["history"][0]["kl"] == 0.0  # the monitor's exact KL of the greedy edits, before any update
    # and a different reference gives a non-zero penalty (the test can fail)
    res2 = train_ppo(make_policy(cfg, 0), make_policy(cfg, 1), None, None, songs[:1], songs[1:], cfg, progress=False)
    assert res2["train_history"][0]["charts/episode_kl"] != 0.0


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


@pytest.mark.parametrize("bf16", [True, False])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, bf16):
    cfg = tiny_cfg(adaptive_kl=True, kl_target=0.5, kl_horizon=500, bf16=bf16)
    songs = [rl_song(i, n_bars=12) for i in range(3)]
    train, val = songs[:2], songs[2:]
    init = make_policy(cfg)
    ref = make_policy(cfg, seed=1)
    rm, norm = tiny_reward_model(), RewardNormalizer(0.1, 2.0)

    straight = train_ppo(copy.deepcopy(init), ref, rm, norm, train, val, cfg, checkpoint_dir=tmp_path / "a",
                         progress=False, restore_best=False)
    assert straight["updates"] == 4 and straight["learned_reward_calls"] > 0
    assert straight["learned_reward_calls"] == sum(r["charts/episodes"] for r in straight["train_history"])

    class Killed(Exception):
        pass

    def kill_at_2(path, step):
        if step == 2 * 4 * 32:
            raise Killed

    with pytest.raises(Killed):
        train_ppo(copy.deepcopy(init), ref, rm, norm, train, val, cfg, checkpoint_dir=tmp_path / "b",
                  on_checkpoint=kill_at_2, progress=False, restore_best=False)
    assert latest_checkpoint(tmp_path / "b").name == "ckpt_000002.pt"
    # a fresh process: new policy object with other weights, resumed from the folder
    seen = []
    resumed = train_ppo(make_policy(cfg, seed=7), ref, rm, norm, train, val, cfg, checkpoint_dir=tmp_path / "b",
                        resume_from=tmp_path / "b", progress=False, restore_best=False,
                        on_checkpoint=lambda p, s: seen.append(s))
    assert seen == [4 * 4 * 32]  # only the remaining updates ran (checkpoint_every=2: update 4)
    assert _strip(resumed["train_history"]) == _strip(straight["train_history"])
    assert resumed["history"] == straight["history"]
    assert resumed["learned_reward_calls"] == straight["learned_reward_calls"]
    assert resumed["kl_coef"] == straight["kl_coef"] != cfg.rlhf.kl_coef
    for k, v in straight["final_state_dict"].items():
        assert torch.equal(v, resumed["final_state_dict"][k]), k

    # resuming with other training settings is refused, naming the key
    other = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, lr=cfg.rlhf.lr / 2))
    with pytest.raises(CheckpointError, match="rlhf.lr"):
        train_ppo(make_policy(cfg), ref, rm, norm, train, val, other, resume_from=tmp_path / "b", progress=False)


def test_a_tiny_run_on_one_song_raises_its_reward():
    cfg = tiny_cfg(n_envs=8, rollout_steps=64, total_steps=8 * 64 * 12, n_minibatches=4, update_epochs=4,
                   lr=3e-3, ent_coef=0.0, kl_coef=0.0, target_kl=None, eval_interval=100, w_dense=1.0)
    song = rl_song(0, n_bars=12)
    pol = make_policy(cfg)
    res = train_ppo(pol, copy.deepcopy(pol), None, None, [song], [], cfg, progress=False)
    r = [h["charts/episode_reward"] for h in res["train_history"]]
    assert np.mean(r[-3:]) > np.mean(r[:3]) + 0.05, r  # measured: ~0.79 -> ~0.98


def test_monitor_targets_follow_the_evaluation_protocol_unless_fixed():
    from models.heldout import song_targets
    from models.ppo_monitor import monitor_jobs, monitor_targets

    songs = [rl_song(i, n_bars=12, song_id=f"m{i}") for i in range(3)]
    cfg = Config()
    assert cfg.rlhf.eval_targets == ()
    per_song = monitor_targets(songs, cfg)
    assert per_song == song_targets(songs, cfg, cfg.evaluate.seed, cfg.evaluate.targets_per_song)
    jobs = monitor_jobs(songs, per_song)
    assert len(jobs) == 3 * cfg.evaluate.targets_per_song
    lo, hi = cfg.env.target_min, cfg.env.target_max
    for s in songs:  # spread over the whole target range, one target per equal slice, like the test songs get
        ts = sorted(t for song, t in jobs if song is s)
        assert lo <= ts[0] < lo + (hi - lo) / len(ts) and hi - (hi - lo) / len(ts) <= ts[-1] <= hi
    fixed = tiny_cfg()  # eval_targets=(0.6,)
    assert monitor_targets(songs, fixed) == (0.6,)
    assert monitor_jobs(songs, (0.6,)) == [(s, 0.6) for s in songs]



# ----------------------------------------------------------------------------- the evaluation's learned reward
def test_evaluation_learned_reward_is_scored_with_the_target_as_ppo_scores_it():
    """``learned_reward`` in metrics/eval.json is the reward PPO optimised: the reward model sees each edit's target
    (compare_editors = evaluate_editors + learned_scorer; PPO's terminal reward = score_learned with the target)."""
    from beatedit.judging.statistics import evaluate_editors
    from models.heldout import editors_for, learned_scorer, song_targets
    from models.ppo_monitor import score_learned
    from models.reward_model import score_batch

    cfg = tiny_cfg()
    songs = {s.song_id: s for s in (rl_song(seed=1, song_id="a"), rl_song(seed=2, song_id="b"))}
    model, norm = tiny_reward_model(), RewardNormalizer(mean=0.1, std=2.0)
    eds = {k: v for k, v in editors_for(cfg).items() if k in ("heuristic", "search", "fade")}  # deterministic editors
    df = evaluate_editors(list(songs.values()), song_targets(list(songs.values()), cfg, 0, 2), eds,
                          lambda song, edit, target: {}, learned_scorer(model, norm), progress=False)
    with_target, without = [], []
    for row in df.itertuples(index=False):
        song = songs[row.song_id]
        actions = eds[row.editor](song, row.target_ratio).beat_actions
        with_target.append(norm(score_learned(model, [(song, actions, row.target_ratio)], "cpu", 8))[0])
        without.append(norm(score_batch(model, [(song.features, actions)], "cpu", 8))[0])
    assert len(df) == 12
    assert np.allclose(df.learned_reward, with_target, atol=1e-5)
    assert not np.allclose(df.learned_reward, without, atol=1e-5)  # the target changes the score: the test can fail


def test_monitor_gold_uses_audio_seams_and_scores_the_strong_baselines_once():
    """The monitor measures gold like the evaluation (seams on audio when the song's audio is there) and reads each
    checkpoint against search and fade scored once on the same jobs."""
    from models.ppo_monitor import MONITOR_BASELINES, baseline_golds, evaluate_policy, gold_score

    cfg = tiny_cfg()
    song = rl_song(seed=3, song_id="m")
    rng = np.random.default_rng(0)
    audio = {"m": (0.1 * rng.standard_normal(int(song.duration * cfg.audio.analysis_sr))).astype(np.float32)}
    base = baseline_golds([song], (0.6,), cfg, audio=audio)
    assert set(base) == set(MONITOR_BASELINES) >= {"search", "fade"} and all(len(v) == 1 for v in base.values())
    from beatedit.editing.editors import edit_with

    e = edit_with("search", song, 0.6, None, cfg.env, cfg.render.crossfade_ms)
    assert base["search"][0] == pytest.approx(gold_score(song, e, 0.6, cfg, audio))
    policy = make_policy(cfg)
    with_audio = evaluate_policy(policy, None, None, None, [song], (0.6,), cfg, baselines=base, audio=audio)
    without = evaluate_policy(policy, None, None, None, [song], (0.6,), cfg, baselines=base)
    assert with_audio["audio_seams"] == 1.0 and without["audio_seams"] == 0.0
    assert {"win_rate_vs_search", "win_rate_vs_fade"} <= set(with_audio)
