"""DPO: the loss by hand, pair decoding from the pair table, sequence log-probs, learning on real pairs."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from beatedit.config import Config, PolicyConfig
from beatedit.editing.env import BeatEditEnv
from beatedit.preferences.pairs import merge_pairs, song_pairs
from models.dpo import _Replayer, build_pairs, dpo_loss, pair_metrics, sequence_logprobs, train_dpo
from models.policy import policy_for_env
from tests.rlhfkit import rl_song


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_cfg(**dpo) -> Config:
    cfg = Config()
    prefs = dataclasses.replace(cfg.preferences, pairs_per_song=16, ood_pairs_per_song=4, candidates_per_song=12)
    rl = dataclasses.replace(cfg.rlhf, n_eval_songs=1, eval_targets=(0.6,), policy=PolicyConfig(d_model=16, n_layers=1, hidden=32),
                             dpo=dataclasses.replace(cfg.rlhf.dpo, **dpo))
    return dataclasses.replace(cfg, preferences=prefs, rlhf=rl)


def pair_table(cfg: Config, n_train: int = 3, n_val: int = 1):
    songs = [rl_song(i, n_bars=12) for i in range(n_train + n_val)]
    rows = [song_pairs(s, None, None, cfg, split="train" if i < n_train else "validation") for i, s in enumerate(songs)]
    return songs, merge_pairs(rows)


def test_dpo_loss_by_hand():
    pi_c, ref_c = torch.tensor([-3.0]), torch.tensor([-4.0])  # chosen: +1 over the reference
    pi_r, ref_r = torch.tensor([-5.0]), torch.tensor([-4.0])  # rejected: -1
    loss, st = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6)  # -log sigmoid(0.5 * 2)
    assert st["rewards_chosen"].item() == pytest.approx(0.5) and st["rewards_rejected"].item() == pytest.approx(-0.5)
    assert st["accuracy"].item() == 1.0
    smooth, _ = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.9 * math.log1p(math.exp(-1.0)) + 0.1 * math.log1p(math.exp(1.0)), abs=1e-6)
    same, _ = dpo_loss(pi_c, pi_r, pi_c, pi_r, beta=0.1)  # policy == reference: log 2
    assert same.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_build_pairs_orients_skips_ties_and_ood():
    cfg = small_cfg()
    songs, df = pair_table(cfg, 1, 0)
    df = df.reset_index(drop=True)
    df.loc[0, "choice"] = 0.5  # a tie
    n_ood = int(df["ood"].sum())
    assert n_ood > 0
    ps = build_pairs(df, songs, cfg.env, "train")
    from models.dpo import _decisions, within_guard

    def reachable(row) -> bool:  # both edits possible under the length guard the policy acts under
        return all(within_guard(songs[0], _decisions(songs[0], row[f"actions_{x}"], row[f"edl_{x}"], cfg.env, "t"),
                                row["target_ratio"], cfg.env) for x in "ab")

    keep = df[(~df["ood"]) & (df["choice"] != 0.5)].reset_index(drop=True)
    keep = keep[[reachable(r) for _, r in keep.iterrows()]].reset_index(drop=True)
    assert 0 < len(ps) == len(keep) < len(df) - n_ood - int((df["choice"] == 0.5).sum())
    for k, row in keep.iterrows():
        chosen_actions = row["actions_a"] if row["choice"] == 0 else row["actions_b"]
        from beatedit.editing.program import build_edit
        rebuilt = build_edit(songs[0], ps.chosen[k], 20.0, row["target_ratio"], cfg.env)
        assert np.array_equal(rebuilt.beat_actions, np.asarray(chosen_actions))
    with pytest.raises(ValueError, match="without features"):
        build_pairs(df.assign(song_id="nope"), songs, cfg.env, "train")


def test_sequence_logprob_is_the_sum_over_the_replayed_decisions():
    cfg = small_cfg()
    songs, df = pair_table(cfg, 1, 0)
    ps = build_pairs(df, songs, cfg.env, "train")
    torch.manual_seed(0)
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    rep = _Replayer(songs, cfg.env)
    idx = [0, 1, 2]
    dec = [ps.chosen[i] for i in idx]
    trajs = rep(ps.song[idx], ps.target[idx], dec)
    got = sequence_logprobs(pol, trajs, dec, "cpu")
    # by hand with the single-song gymnasium env
    env = BeatEditEnv(songs, cfg.env)
    for j, i in enumerate(idx):
        obs, info = env.reset(options={"song_index": int(ps.song[i]), "target_ratio": float(ps.target[i])})
        total = 0.0
        for a in dec[j]:
            with torch.no_grad():
                lp = pol.log_probs(torch.as_tensor(obs)[None], torch.as_tensor(info["action_mask"])[None])[0, a]
            total += float(lp)
            obs, _, term, _, info = env.step(a)
        assert term
        assert got[j].item() == pytest.approx(total, rel=1e-4, abs=1e-3)


def test_dpo_learns_the_training_preferences():
    cfg = small_cfg(epochs=6, batch_size=8, lr=1e-3, beta=0.5)
    songs, df = pair_table(cfg, 3, 1)
    torch.manual_seed(0)
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    ref = copy.deepcopy(pol).eval()
    train = build_pairs(df, songs, cfg.env, "train")
    rep = _Replayer(songs, cfg.env)
    before = pair_metrics(pol, ref, rep, train, 0.5, "cpu")
    assert before["loss"] == pytest.approx(math.log(2.0), abs=1e-5)
    logged = []
    res = train_dpo(pol, ref, df, songs, cfg, log=lambda m, s: logged.append((s, m)), progress=False, restore_best=False)
    pol.load_state_dict(res["final_state_dict"])
    after = pair_metrics(pol, ref, rep, train, 0.5, "cpu")
    assert after["loss"] < before["loss"] - 0.05 and after["accuracy"] > 0.7, (before, after)
    assert res["pairs_train"] == len(train) and res["steps"] == 6 * -(-len(train) // 8)
    assert any("dpo/margin" in m for _, m in logged) and any("eval/gold" in m for _, m in logged)
    assert res["history"][0]["kl"] == 0.0 and res["final_kl"] > 0.0


# ----------------------------------------------------------------------------- online, iterative DPO
def test_ipo_loss_by_hand():
    from models.dpo import ipo_loss

    pi_c, ref_c, pi_r, ref_r = torch.tensor([-3.0]), torch.tensor([-4.0]), torch.tensor([-5.0]), torch.tensor([-4.0])
    assert ipo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.25).item() == pytest.approx(0.0)  # h = 2 = 1/(2*0.25)
    assert ipo_loss(pi_c, pi_r, ref_c, ref_r, beta=0.5).item() == pytest.approx(1.0)  # (2 - 1)^2: past the target, pulled back


def test_online_dpo_ranks_its_own_samples_with_the_reward_model_and_learns_them():
    from models.dpo import online_pairs, train_online_dpo
    from models.ppo_monitor import score_learned
    from models.reward_model import RewardModel, RewardNormalizer

    cfg = small_cfg(rounds=2, prompts_per_song=2, samples_per_prompt=4, epochs=3, batch_size=4, lr=1e-3, beta=0.5,
                    temperature=2.0, min_reward_gap=0.0, nll_coef=0.1)
    songs = [rl_song(i, n_bars=12) for i in range(3)]
    torch.manual_seed(0)
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    ref = copy.deepcopy(pol).eval()
    torch.manual_seed(0)
    rm, norm = RewardModel(d_model=16, n_layers=1, n_heads=2, dropout=0.0).eval(), RewardNormalizer(0.0, 1.0)
    pairs, stats = online_pairs(pol, rm, norm, songs[:2], cfg, np.random.default_rng(0))
    assert stats["prompts"] == 4 and 0 < len(pairs) <= 4
    for i, t, c, r in zip(pairs.song, pairs.target, pairs.chosen, pairs.rejected):  # best over worst, by the learned reward
        from beatedit.editing.program import build_edit

        ec, er = (build_edit(songs[i], d, 0.0, t, cfg.env) for d in (c, r))
        sc, sr = score_learned(rm, [(songs[i], ec.beat_actions, t), (songs[i], er.beat_actions, t)], "cpu", 8)
        assert sc > sr and c != r
    logged = []
    res = train_online_dpo(pol, ref, rm, norm, songs[:2], songs[2:], cfg, log=lambda m, s: logged.append(m),
                           progress=False, restore_best=False)
    assert [r["round"] for r in res["history"]] == [0, 1, 2] and res["history"][0]["kl"] == 0.0
    assert res["learned_reward_calls"] == 2 * 4 * 4 and res["steps"] > 0 and res["final_kl"] > 0.0
    assert any("dpo/nll_chosen" in m for m in logged) and any("eval/gold_search" in m for m in logged)
    # the last round's pairs are now preferred by the policy over the reference (positive implicit margin)
    pol.load_state_dict(res["final_state_dict"])
    rep = _Replayer(songs[:2], cfg.env)
    last, _ = online_pairs(ref, rm, norm, songs[:2], cfg, np.random.default_rng(1))
    m = pair_metrics(pol, ref, rep, last, 0.5, "cpu")
    assert m["margin"] > 0.0, m
    with pytest.raises(ValueError, match="reward model"):
        train_online_dpo(pol, ref, None, None, songs[:2], songs[2:], cfg, progress=False)
