"""The gymnasium env and the vectorised env: API, observations, masks, rewards, equivalence."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from beatedit.editing.actions import N_ACTIONS, Action
from beatedit.config import DenseRewardConfig, EnvConfig
from beatedit.editing.program import (EditState, action_mask, apply_action, beat_sample_bounds, build_edit, source_samples,
                                      start_state)
from beatedit.editing.env import ROW, BeatEditEnv, VecBeatEditEnv, obs_dim, obs_layout, standardise
from beatedit.judging.dense import dense_reward
from beatedit.audio.schema import N_FEATURES
from tests.worldkit import make_world_song

A = Action


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    d = tmp_path_factory.mktemp("env")
    return [make_world_song(d, meter=4, n_bars=10, pickup=1, song_id="a", seed=0)[0],
            make_world_song(d, meter=3, n_bars=12, sr=22050, channels=1, song_id="b", seed=1)[0],
            make_world_song(d, meter=4, n_bars=8, song_id="c", seed=2, phrases=False)[0],
            make_world_song(d, meter=2, n_bars=20, sr=22050, channels=1, song_id="d", seed=3)[0]]  # 2/2 or 6/8 (hard songs)


def test_meter_2_song_through_env_dense_reward_and_listener(songs):
    """Hard songs (slow 2/2, 6/8) have 2-beat bars: masks, bar-aligned cuts, the dense reward and the listener work."""
    from beatedit.judging.listener import score_edit

    song = songs[3]
    assert song.meter == 2 and set(song.beat_in_bar.tolist()) == {0, 1}
    env = BeatEditEnv([song])
    rng = np.random.default_rng(1)
    for ep in range(4):
        obs, info = env.reset(seed=ep)
        term = False
        while not term:
            obs, r, term, trunc, info = env.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
        edit = info["edit"]
        dense = dense_reward(song, edit, env.target_ratio, DenseRewardConfig())
        assert all(np.isfinite(v) for v in dense.values()) and r == pytest.approx(dense["total"])
        gold = score_edit(song, edit, env.target_ratio)
        assert np.isfinite(gold["total"]) and 0.0 <= gold["total"] <= 1.0


def test_check_env_passes(songs):
    from gymnasium.utils.env_checker import check_env

    env = BeatEditEnv(songs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either (render modes aside)
        warnings.filterwarnings("ignore", message=".*render.*")
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (obs_dim(EnvConfig()),) == (3114,)


def test_sb3_ppo_runs_unmodified(songs):
    import torch
    from stable_baselines3 import PPO

    env = BeatEditEnv(songs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLP: extra threads only contend on a shared CI box
    try:
        model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, device="cpu", verbose=0)
        model.learn(300)
    finally:
        torch.set_num_threads(threads)
    assert model.num_timesteps >= 300
    obs, _ = env.reset(seed=1)
    a, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(a))


def test_illegal_action_falls_back_to_keep(songs):
    env = BeatEditEnv(songs[:1])
    obs, info = env.reset(seed=0)
    assert not info["action_mask"][A.END]
    obs, r, term, trunc, info = env.step(int(A.END))  # masked: nothing output yet
    assert info["illegal_action"] is True and info["requested_action"] == A.END
    assert env.state.decisions == [A.KEEP] and env.state.output == [(0, 1.0, 1.0)] and not term
    obs, r, term, trunc, info = env.step(int(A.KEEP))
    assert info["illegal_action"] is False
    strict = BeatEditEnv(songs[:1], EnvConfig(illegal_action="raise"))
    strict.reset(seed=0)
    with pytest.raises(ValueError, match="illegal action END"):
        strict.step(int(A.END))


def test_episode_reward_is_the_dense_reward_of_the_edit(songs):
    env = BeatEditEnv(songs)
    rng = np.random.default_rng(0)
    for ep in range(6):
        obs, info = env.reset(seed=ep)
        total, term, steps = 0.0, False, 0
        while not term:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            obs, r, term, trunc, info = env.step(a)
            assert env.observation_space.contains(obs)
            total += r
            steps += 1
            if not term:
                assert r == 0.0
        edit = info["edit"]
        assert edit.decisions == env.state.decisions and len(edit.decisions) == steps
        again = build_edit(env.song, edit.decisions, env.crossfade_ms, env.target_ratio)
        assert again.edl.segments == edit.edl.segments
        assert total == pytest.approx(dense_reward(env.song, edit, env.target_ratio, DenseRewardConfig())["total"])
        assert not info["action_mask"].any()
        with pytest.raises(RuntimeError, match="reset"):
            env.step(0)


def test_observation_layout(songs):
    cfg = EnvConfig(window_before=4, window_after=6, recent_actions=3)
    env = BeatEditEnv(songs[:1], cfg)
    song = songs[0]
    lay = obs_layout(cfg)
    assert obs_dim(cfg) == 10 * ROW + 10 + 30 == lay["recent_actions"].stop
    z = standardise(song.features)
    np.testing.assert_allclose(z.mean(axis=0)[np.abs(z).max(axis=0) > 0], 0, atol=1e-4)  # per-song z-score
    obs, info = env.reset(options={"song_index": 0, "target_ratio": 0.5})
    win = obs[lay["window"]].reshape(10, ROW)
    assert (win[:4] == 0).all()  # before the song: masked rows (flag 0, zero features)
    np.testing.assert_array_equal(win[4:, N_FEATURES], 1.0)
    np.testing.assert_array_equal(win[4:, :N_FEATURES], z[0:6])
    assert obs[lay["output_ratio"]][0] == 0 and obs[lay["has_output"]][0] == 0
    np.testing.assert_array_equal(obs[lay["beat_in_bar"]], [0, 0, 0, 1])  # pickup beat = last beat of a bar
    assert (obs[lay["recent_actions"]] == 0).all()
    B = beat_sample_bounds(song)
    target = 0.5 * source_samples(song)
    for a in (A.KEEP, A.LOOP_BEAT, A.CUT_TO_NEXT_BAR):
        obs, *_ = env.step(int(a))
    # cursor: 0 -> 1 -> 2 -> 5 (next bar); output: beat 0, beat 1 twice
    out = (B[1] - B[0]) + 2 * (B[2] - B[1])
    assert obs[lay["output_ratio"]][0] == pytest.approx(out / target, rel=1e-6)
    assert obs[lay["source_position"]][0] == pytest.approx(5 / song.n_beats)
    np.testing.assert_array_equal(obs[lay["beat_in_bar"]], [1, 0, 0, 0])
    assert obs[lay["phrase_position"]][0] == pytest.approx(4 / 16)
    assert obs[lay["need_ratio"]][0] == pytest.approx((target - out) / (B[-1] - B[5]), rel=1e-5)
    assert obs[lay["has_output"]][0] == 1
    assert obs[lay["loops_left"]][0] == pytest.approx(1 - 1 / 8)
    hist = obs[lay["recent_actions"]].reshape(3, N_ACTIONS)
    assert [int(np.argmax(h)) for h in hist] == [A.CUT_TO_NEXT_BAR, A.LOOP_BEAT, A.KEEP]
    win = obs[lay["window"]].reshape(10, ROW)
    np.testing.assert_array_equal(win[:, :N_FEATURES], z[1:11])
    # near the end: rows past the song are masked
    env.reset(options={"song_index": 0, "target_ratio": 0.5})
    for _ in range(song.n_beats - 2):
        obs, *_ = env.step(int(A.KEEP))
    win = obs[lay["window"]].reshape(10, ROW)
    np.testing.assert_array_equal(win[:, N_FEATURES], [1] * 6 + [0] * 4)
    assert (win[6:] == 0).all()


def test_targets_are_sampled_from_the_range_and_validated(songs):
    env = BeatEditEnv(songs, EnvConfig(target_min=0.3, target_max=0.4))
    seen = set()
    for s in range(30):
        _, info = env.reset(seed=s)
        assert 0.3 <= info["target_ratio"] <= 0.4
        seen.add(info["song_id"])
    assert seen == {"a", "b", "c", "d"}
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            env.reset(options={"target_ratio": bad})
    with pytest.raises(ValueError, match="target_min"):
        BeatEditEnv(songs, EnvConfig(target_max=1.2))
    with pytest.raises(ValueError, match="target_min"):
        VecBeatEditEnv(songs, 4, EnvConfig(target_min=0.0))
    vec = VecBeatEditEnv(songs, 2)
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        vec.reset(target_ratios=[0.5, 1.2])


def test_missing_dense_reward_module_is_an_import_error(songs, monkeypatch):
    monkeypatch.setitem(sys.modules, "beatedit.judging.dense", None)
    with pytest.raises(ImportError, match="beatedit.judging.dense"):
        BeatEditEnv(songs)
    with pytest.raises(ImportError, match="beatedit.judging.dense"):
        VecBeatEditEnv(songs, 2)


# ----------------------------------------------------------------------------- vectorised
def test_vec_env_matches_the_single_env(songs):
    """Same songs, targets and actions: identical observations, masks, rewards and edits, across auto-resets."""
    E = 7
    vec = VecBeatEditEnv(songs, E, seed=3)
    singles = [BeatEditEnv(songs) for _ in range(E)]
    vobs, vmask = vec.reset(song_indices=[0, 1, 2, 0, 1, 2, 0], target_ratios=np.linspace(0.3, 1.0, E))
    for e, env in enumerate(singles):
        obs, info = env.reset(options={"song_index": int(vec.song[e]), "target_ratio": float(vec.target_ratio[e])})
        np.testing.assert_array_equal(vobs[e], obs)
        np.testing.assert_array_equal(vmask[e], info["action_mask"])
    rng = np.random.default_rng(0)
    n_finished = 0
    weights = np.ones(N_ACTIONS)
    weights[[A.FADE_OUT, A.END]] = 0.05  # let episodes run long enough to visit loops, bars, phrases
    for step in range(400):
        acts = np.argmax(rng.random((E, N_ACTIONS)) * vmask * weights, axis=1)
        vobs, vmask, vrew, vdone, fin = vec.step(acts)
        fin_by_env = {f.env_index: f for f in fin}
        assert set(fin_by_env) == set(np.flatnonzero(vdone).tolist())
        for e, env in enumerate(singles):
            obs, r, term, _, info = env.step(int(acts[e]))
            assert term == bool(vdone[e])
            if term:
                f = fin_by_env[e]
                n_finished += 1
                assert f.song_index == env.song_index and f.target_ratio == env.target_ratio
                assert f.edit.decisions == info["edit"].decisions
                assert f.edit.edl.segments == info["edit"].edl.segments
                assert vrew[e] == pytest.approx(r) and f.dense == pytest.approx(info["dense"])
                obs, info = env.reset(options={"song_index": int(vec.song[e]),
                                               "target_ratio": float(vec.target_ratio[e])})
            else:
                assert vrew[e] == 0.0
            np.testing.assert_array_equal(vobs[e], obs)
            np.testing.assert_array_equal(vmask[e], info["action_mask"])
    assert n_finished >= 10


def test_vec_masks_match_the_edit_program(songs):
    """Vectorised masks == editing.action_mask on states reached by random legal play."""
    cfg = EnvConfig(max_loops_per_episode=2)
    vec = VecBeatEditEnv(songs, 5, cfg, seed=0, dense=False)
    vec.reset()
    states = [start_state(songs[vec.song[e]], vec.target_ratio[e], cfg) for e in range(5)]
    assert all(s.guard is not None for s in states)  # the length guard is part of the rules compared
    rng = np.random.default_rng(5)
    for _ in range(300):
        m = vec.action_masks()
        for e in range(5):
            np.testing.assert_array_equal(m[e], action_mask(songs[vec.song[e]], states[e], cfg))
        acts = np.array([rng.choice(np.flatnonzero(row)) for row in m])
        songs_before = vec.song.copy()
        _, _, _, done, _ = vec.step(acts)
        for e in range(5):
            states[e] = start_state(songs[vec.song[e]], vec.target_ratio[e], cfg) if done[e] else \
                apply_action(songs[songs_before[e]], states[e], acts[e], cfg)


def test_vec_env_illegal_actions_and_dense_flag(songs):
    vec = VecBeatEditEnv(songs, 4, EnvConfig(length_guard=False), seed=0, dense=False)  # END/FADE_OUT mechanics
    obs, mask = vec.reset(song_indices=[0, 0, 1, 2], target_ratios=[0.5] * 4)
    assert obs.shape == (4, vec.obs_dim) and obs.dtype == np.float32 and mask.shape == (4, N_ACTIONS)
    obs, mask, rew, done, fin = vec.step(np.full(4, int(A.END)))  # END is masked at the start
    assert vec.illegal_actions == 4 and not done.any()
    assert (vec.decisions[:, 0] == A.KEEP).all()
    with pytest.raises(ValueError):
        vec.step(np.full(4, N_ACTIONS))
    with pytest.raises(ValueError):
        vec.step(np.zeros(3, dtype=int))
    obs, mask, rew, done, fin = vec.step(np.full(4, int(A.FADE_OUT)))
    assert done.all() and len(fin) == 4 and (rew == 0).all()
    for f in fin:
        assert f.dense is None
        assert f.edit.decisions == [A.KEEP, A.FADE_OUT]  # built on demand by the edit program
        assert f.edit.output_beats[0] == (0, 1.0, 1.0) and f.edit.edl.segments[-1].gain_end == 0.0
    # auto-reset: fresh episodes
    assert (vec.cursor == 0).all() and (vec.out_samples == 0).all() and (vec.t == 0).all()
    buf = np.zeros((4, vec.obs_dim), np.float32)
    obs2, *_ = vec.step(np.zeros(4, dtype=int), obs_out=buf)
    assert obs2 is buf and buf.any()
    with pytest.raises(ValueError, match="obs_out"):
        vec.step(np.zeros(4, dtype=int), obs_out=np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("keep_start", [True, False])
def test_keep_start_masks_cuts_at_the_first_beat_only(songs, keep_start):
    """env.keep_start: the policy's masks (single env, vectorised env, action_mask) forbid a cut at the first beat and
    nowhere else; off, cuts there are legal again. Plans / editors' decisions are not restricted by it."""
    cfg = EnvConfig(keep_start=keep_start)
    cuts = [A.CUT, A.CUT_TO_NEXT_BAR, A.CUT_TO_NEXT_PHRASE]
    vec = VecBeatEditEnv(songs, 4, cfg, seed=0, dense=False)
    vec.reset()
    m0 = vec.action_masks()
    assert (m0[:, cuts].any(axis=1) == (not keep_start)).all() and m0[:, A.KEEP].all()
    single = BeatEditEnv(songs[0], cfg)
    single.reset(seed=0)
    assert single.action_masks()[cuts].any() == (not keep_start)
    s = start_state(songs[0], 0.6, cfg)
    assert action_mask(songs[0], s, cfg)[cuts].any() == (not keep_start)
    s = apply_action(songs[0], s, A.KEEP, cfg)
    assert action_mask(songs[0], s, cfg)[cuts].any()  # from the second beat on, cutting is the policy's choice


def test_policy_can_take_refuses_a_cut_at_the_first_beat(songs):
    """The check BC and DPO filter demonstrations / pairs with: an edit that skips the intro can be built (editors and
    preference candidates may), but the policy under env.keep_start could not take it."""
    from beatedit.editing.program import policy_can_take, song_grid

    song = songs[0]
    g = song_grid(song)
    first_bar = int(g.next_bar[0])
    skip_intro = [int(A.CUT_TO_NEXT_BAR)] + [int(A.KEEP)] * (g.n - first_bar)
    edit = build_edit(song, skip_intro, 0.0, None, EnvConfig(), guarded=False)
    ratio = edit.edl.n_samples / source_samples(song)
    assert policy_can_take(song, skip_intro, ratio, EnvConfig(keep_start=False))
    assert not policy_can_take(song, skip_intro, ratio, EnvConfig())
    keep_intro = [int(A.KEEP)] * first_bar + [int(A.CUT_TO_NEXT_BAR)] + [int(A.KEEP)] * (g.n - int(g.next_bar[first_bar]))
    ratio = build_edit(song, keep_intro, 0.0, None, EnvConfig(), guarded=False).edl.n_samples / source_samples(song)
    assert policy_can_take(song, keep_intro, ratio, EnvConfig())
