"""The policy: observation parsing, masking, checkpoints (schema refused), edits through the env."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from beatedit.editing.actions import N_ACTIONS, Action
from beatedit.config import Config, EnvConfig, PolicyConfig
from beatedit.editing.program import build_edit
from beatedit.editing.editors import heuristic_decisions, random_decisions
from beatedit.editing.env import VecBeatEditEnv, obs_dim
from beatedit.audio.schema import SchemaMismatchError
from models.checkpoint import CheckpointError
from models.policy import ActorCritic, load_policy, masked_kl, policy_for_env, save_policy
from models.policy_edit import decisions_from_beat_actions, edit_song, edit_songs, replay_trajectories, sample_actions
from tests.rlhfkit import rl_song


pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = PolicyConfig(d_model=16, n_layers=1, hidden=32)


def small_policy(seed: int = 0, encoder: str = "conv") -> ActorCritic:
    torch.manual_seed(seed)
    return policy_for_env(EnvConfig(), dataclasses.replace(SMALL, encoder=encoder))


@pytest.mark.parametrize("encoder", ["conv", "transformer"])
def test_masked_actions_are_never_sampled(encoder):
    pol = small_policy(encoder=encoder)
    env = VecBeatEditEnv([rl_song(0), rl_song(1)], 64, EnvConfig(), seed=0, dense=False)
    obs, mask = env.reset()
    # make the masks harsh: random subsets, always at least one legal action
    rng = np.random.default_rng(0)
    mask = mask & (rng.random(mask.shape) < 0.4)
    mask[np.arange(64), rng.integers(0, N_ACTIONS, 64)] = True
    o, m = torch.as_tensor(obs), torch.as_tensor(mask)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        a, logp, ent, v = pol.get_action_and_value(o, m, generator=gen)
        assert m[torch.arange(64), a].all()
        assert torch.isfinite(logp).all() and torch.isfinite(ent).all() and torch.isfinite(v).all()
    lp = pol.log_probs(o, m)
    assert (lp[~m] < -1e8).all()  # illegal actions get no probability mass
    assert torch.allclose(lp.exp().sum(-1), torch.ones(64), atol=1e-5)
    greedy, *_ = pol.get_action_and_value(o, m, greedy=True)
    assert m[torch.arange(64), greedy].all()
    # numpy sampler used for stochastic edits
    for _ in range(20):
        a = sample_actions(lp.detach().numpy(), rng)
        assert mask[np.arange(64), a].all()


def test_given_actions_are_scored_not_resampled():
    pol = small_policy()
    env = VecBeatEditEnv([rl_song(0)], 8, EnvConfig(), seed=1, dense=False)
    obs, mask = env.reset()
    o, m = torch.as_tensor(obs), torch.as_tensor(mask)
    act = torch.zeros(8, dtype=torch.long)  # KEEP is always legal
    a, logp, _, _ = pol.get_action_and_value(o, m, act)
    assert torch.equal(a, act)
    assert torch.allclose(logp, pol.log_probs(o, m)[:, 0])


def test_masked_kl_zero_for_identical_and_positive_otherwise():
    p, q = small_policy(0), small_policy(1)
    env = VecBeatEditEnv([rl_song(0)], 16, EnvConfig(), seed=2, dense=False)
    obs, mask = env.reset()
    o, m = torch.as_tensor(obs), torch.as_tensor(mask)
    with torch.no_grad():
        assert torch.equal(masked_kl(p.log_probs(o, m), p.log_probs(o, m), m), torch.zeros(16))
        assert (masked_kl(p.log_probs(o, m), q.log_probs(o, m), m) > 0).all()


def test_window_layout_matches_env():
    """The policy reads the cursor row where the env writes the cursor beat's features."""
    cfg = EnvConfig()
    song = rl_song(3)
    env = VecBeatEditEnv([song], 1, cfg, seed=0, dense=False)
    obs, _ = env.reset()
    pol = small_policy()
    W, F = pol.window, pol.n_features
    rows = obs[0, : W * (F + 1)].reshape(W, F + 1)
    assert rows[pol.cursor, F] == 1.0 and rows[: pol.cursor, F].sum() == 0  # before the song: invalid rows
    assert pol.n_extra == obs_dim(cfg) - W * (F + 1) > 0
    with pytest.raises(ValueError, match="observation has"):
        pol.get_value(torch.zeros(2, obs_dim(cfg) + 1))


def test_checkpoint_roundtrip_and_schema_refused(tmp_path):
    pol = small_policy(encoder="transformer")
    path = save_policy(tmp_path / "policy.pt", pol)
    loaded, payload = load_policy(path)
    assert payload["config"] == pol.config
    for k, v in pol.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # another feature schema: refused with the file named
    bad = dict(payload, schema_version="beatfeat-v0")
    torch.save(bad, tmp_path / "old_schema.pt")
    with pytest.raises(SchemaMismatchError, match="old_schema.pt"):
        load_policy(tmp_path / "old_schema.pt")
    # another action vocabulary, another kind: refused too
    torch.save(dict(payload, action_vocab="actions-v0"), tmp_path / "old_vocab.pt")
    with pytest.raises(CheckpointError, match="action vocabulary"):
        load_policy(tmp_path / "old_vocab.pt")
    torch.save(dict(payload, kind="reward"), tmp_path / "reward.pt")
    with pytest.raises(CheckpointError, match="expected 'policy'"):
        load_policy(tmp_path / "reward.pt")
    torch.save(dict(payload, config=dict(payload["config"], n_features=124)), tmp_path / "feat.pt")
    with pytest.raises(CheckpointError, match="feat.pt"):
        load_policy(tmp_path / "feat.pt")


def test_edit_song_is_a_valid_edit_and_greedy_is_deterministic():
    song, cfg = rl_song(4), Config()
    pol = small_policy()
    e1 = edit_song(pol, song, 0.6, cfg.env)
    e2 = edit_song(pol, song, 0.6, cfg.env, crossfade_ms=cfg.render.crossfade_ms)
    assert e1.decisions == e2.decisions
    rebuilt = build_edit(song, e1.decisions, cfg.render.crossfade_ms, 0.6, cfg.env)  # legal under the edit program
    assert np.array_equal(rebuilt.beat_actions, e1.beat_actions)
    s1 = edit_song(pol, song, 0.6, cfg.env, greedy=False, rng=np.random.default_rng(5))
    s2 = edit_song(pol, song, 0.6, cfg.env, greedy=False, rng=np.random.default_rng(5))
    assert s1.decisions == s2.decisions
    many = edit_songs(pol, [song, rl_song(5), song], [0.5, 0.6, 0.7], cfg.env)
    assert [m.edit.target_ratio for m in many] == [0.5, 0.6, 0.7]
    assert many[0].edit.edl.song_id == song.song_id and many[1].edit.edl.song_id == "rl_5"


def test_decisions_recovered_from_beat_actions_and_replayed():
    cfg = EnvConfig(keep_start=False)  # the editors' decisions may skip a pickup at the first beat
    rng = np.random.default_rng(0)
    songs = [rl_song(i) for i in range(3)]
    jobs = []
    for s in songs:
        for t in (0.5, 0.75):
            for d in (heuristic_decisions(s, t, cfg), random_decisions(s, t, rng, cfg)):
                e = build_edit(s, d, 20.0, t, cfg)
                assert decisions_from_beat_actions(s, e.beat_actions, cfg) == d
                jobs.append((s, t, d))
    trajs = replay_trajectories([j[0] for j in jobs], [j[1] for j in jobs], [j[2] for j in jobs], cfg)
    for (s, t, d), (o, m) in zip(jobs, trajs):
        assert o.shape == (len(d), obs_dim(cfg)) and m.shape == (len(d), N_ACTIONS)
        assert m[np.arange(len(d)), d].all()
    # an inconsistent trace is rejected
    ba = build_edit(songs[0], heuristic_decisions(songs[0], 0.6, cfg), 20.0, 0.6, cfg).beat_actions.copy()
    ba[1] = Action.CUT_TO_NEXT_BAR  # would skip beats 2-3, which the trace says were kept
    with pytest.raises(ValueError, match="not the trace"):
        decisions_from_beat_actions(songs[0], ba, cfg)
    # a decision list that stops early is rejected by the replay
    with pytest.raises(ValueError, match="does not end"):
        replay_trajectories([songs[0]], [0.6], [[0, 0, 0]], cfg)


def test_bc_clones_the_heuristic_editor_including_its_rare_decisions():
    from models.bc import heuristic_demonstrations, make_reference, rare_recall, train_bc

    cfg = Config()
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, keep_start=False))  # all of the heuristic's edits replayable
    bc = dataclasses.replace(cfg.rlhf.bc, editors=("heuristic",), epochs=30, samples_per_song=4, val_fraction=0.0,
                             batch_size=32)
    cfg = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, bc=bc, policy=SMALL))
    songs = [rl_song(i, n_bars=16) for i in range(4)]
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    demos = heuristic_demonstrations(songs, cfg.env, 4, seed=0)
    assert set(np.unique(demos.action)) >= {int(Action.KEEP), int(Action.FADE_OUT)}
    before = rare_recall(pol, demos)
    logged = []
    res = train_bc(pol, songs, cfg, log=lambda m, s: logged.append(m), progress=False)
    assert len(logged) == 30 and res["bc_pairs"] == len(demos)
    assert res["bc_train_accuracy"] > 0.9
    assert rare_recall(pol, demos) > max(0.5, before), (before, res)  # cuts and fades, not just KEEP
    ref = make_reference(pol)
    assert not any(p.requires_grad for p in ref.parameters())
    # human edits as per-beat actions are replayed too
    e = build_edit(songs[0], random_decisions(songs[0], 0.6, np.random.default_rng(0), cfg.env), 20.0, 0.6, cfg.env)
    res2 = train_bc(policy_for_env(cfg.env, cfg.rlhf.policy), songs, dataclasses.replace(
        cfg, rlhf=dataclasses.replace(cfg.rlhf, bc=dataclasses.replace(bc, epochs=1))),
        human_edits=[{"song_id": songs[0].song_id, "target_ratio": 0.6, "beat_actions": e.beat_actions}], progress=False)
    assert res2["bc_human_pairs"] == len(e.decisions)


def test_bc_clones_the_search_editor_without_smoothing_so_the_reference_is_sharp():
    from beatedit.editing.search import search_decisions
    from models.bc import editor_demonstrations, stratified_targets, train_bc

    cfg = Config()
    assert cfg.rlhf.bc.editors == ("search",) and cfg.rlhf.bc.label_smoothing == 0.0  # the defaults issue 17 asks for
    bc = dataclasses.replace(cfg.rlhf.bc, epochs=30, samples_per_song=4, val_fraction=0.0, batch_size=32)
    cfg = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, bc=bc, policy=SMALL))
    songs = [rl_song(i, n_bars=16) for i in range(4)]
    demos, expressible = editor_demonstrations(songs, cfg.env, "search", 4, seed=0)
    assert expressible == 1.0 and set(demos.source) == {"search"}
    assert set(np.unique(demos.action)) <= {int(Action.KEEP), int(Action.CUT), int(Action.CUT_TO_NEXT_BAR),
                                           int(Action.CUT_TO_NEXT_PHRASE)}
    assert (demos.action != Action.KEEP).any()  # the search editor's cuts are in the demonstrations
    # the demonstrations are the search editor's own decisions (first job: song 0 at the first stratified target)
    t0 = float(stratified_targets(4, cfg.env.target_min, cfg.env.target_max, np.random.default_rng(0))[0])
    d0 = search_decisions(songs[0], t0, cfg.env)
    assert demos.action[:len(d0)].tolist() == d0
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    res = train_bc(pol, songs, cfg, progress=False)
    assert res["bc_pairs_search"] == len(demos) == res["bc_pairs"] and res["bc_expressible_search"] == 1.0
    assert res["bc_train_accuracy"] > 0.9
    # no smoothing: where the clone agrees with the demonstration it is nearly deterministic (the KL to it of a
    # policy that acts the same is ~0 instead of the flat ~0.09 nats per decision smoothing costs)
    with torch.no_grad():
        p = pol.log_probs(torch.as_tensor(demos.obs), torch.as_tensor(demos.mask)).exp().numpy()
    hit = p.argmax(1) == demos.action
    assert np.median(p[hit, demos.action[hit]]) > 0.95
    with pytest.raises(ValueError, match="unknown editor 'nope'"):
        editor_demonstrations(songs, cfg.env, "nope", 1)
    empty = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, bc=dataclasses.replace(bc, editors=())))
    with pytest.raises(ValueError, match="rlhf.bc.editors is empty"):
        train_bc(policy_for_env(cfg.env, cfg.rlhf.policy), songs, empty, progress=False)


def test_compared_algorithms_start_from_the_reference_and_report_prefixed_figures():
    from models.bc import make_reference
    from tasks.rlhf import fresh_policy, training_figures

    reference = make_reference(small_policy(3))
    other = fresh_policy(reference)
    assert other is not reference and all(p.requires_grad for p in other.parameters())
    assert not any(p.requires_grad for p in reference.parameters())  # the anchor stays frozen
    for a, b in zip(other.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert not torch.equal(next(other.parameters()), next(reference.parameters()))  # a copy, not a view
    figs = training_figures("dpo", {"learned_reward_calls": 0, "final_kl": 1.5, "history": [1], "best_path": None, "flag": True})
    assert figs == {"dpo_learned_reward_calls": 0, "dpo_final_kl": 1.5}


def test_rlhf_run_key_is_stable_and_changes_with_training_settings(tmp_path, monkeypatch):
    from tasks.rlhf import run_key

    monkeypatch.chdir(tmp_path)  # no pipeline outputs here: the key still hashes params and code
    cfg = Config()
    assert run_key(cfg) == run_key(Config())
    assert run_key(dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, lr=cfg.rlhf.lr / 2))) != run_key(cfg)


def test_bf16_log_probs_do_not_depend_on_the_batch_they_are_computed_in():
    """PPO's ratio pi/pi_old under bf16: the rollout scores 16 observations at a time, the update 512;
    the same weights must give the same log-probs up to float32 rounding (the encoder's bf16 results are
    batch-independent; the float32 heads' GEMMs sum in another order), else the first ratio is not 1."""
    cfg = EnvConfig()
    torch.manual_seed(0)
    pol = policy_for_env(cfg, PolicyConfig())
    obs = torch.randn(64, pol.obs_dim).clamp(-10, 10)
    obs[:, pol.n_features:pol.window * (pol.n_features + 1):pol.n_features + 1] = 1.0  # every window row valid
    mask, act = torch.ones(64, N_ACTIONS, dtype=torch.bool), torch.randint(0, N_ACTIONS, (64,))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        small = torch.cat([pol.get_action_and_value(obs[i:i + 16], mask[i:i + 16], act[i:i + 16])[1] for i in range(0, 64, 16)])
        big = pol.get_action_and_value(obs.to(torch.bfloat16), mask, act)[1]
    with torch.no_grad():
        fp32 = pol.get_action_and_value(obs, mask, act)[1]
    assert (small - big).abs().max() < 1e-4
    assert small.dtype == big.dtype == torch.float32  # the heads run in float32 under autocast
    assert 1e-6 < (big - fp32).abs().max() < 1e-2  # bf16 really ran in the encoder, and stays close to float32


def test_songs_by_split_names_the_third_split_promotion_and_reads_an_old_splits_csv(tmp_path):
    """The evaluate stage decides promotions on the "promotion" split; a splits.csv from before the rename ("test") still loads."""
    import dataclasses

    import pandas as pd

    from beatedit.config import Config
    from tasks.rlhf import songs_by_split
    from tests.rlhfkit import rl_song

    cfg = Config()
    cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, out_dir=str(tmp_path / "features")),
                              preferences=dataclasses.replace(cfg.preferences, out_dir=str(tmp_path / "prefs")))
    (tmp_path / "features").mkdir()
    (tmp_path / "prefs").mkdir()
    for i, sid in enumerate(("a", "b", "c")):
        rl_song(seed=i, song_id=sid).save(tmp_path / "features" / f"{sid}.npz")
    pd.DataFrame({"song_id": ["a", "b", "c"]}).to_parquet(tmp_path / "features" / "index.parquet")
    for third in ("promotion", "test"):
        pd.DataFrame({"song_id": ["a", "b", "c"], "split": ["train", "validation", third]}).to_csv(tmp_path / "prefs" / "splits.csv", index=False)
        split = songs_by_split(cfg)
        assert set(split) == {"train", "validation", "promotion"}
        assert [s.song_id for s in split["promotion"]] == ["c"] and [s.song_id for s in split["train"]] == ["a"]
    assert cfg.evaluate.split == "promotion"


def test_logged_policy_input_example_comes_from_a_real_split():
    """The rlhf stage's splits are train / validation / promotion: the input example is a promotion song, else any
    analysed song (a missing "test" key once left every logged policy without an example)."""
    from types import SimpleNamespace

    from tasks.rlhf import input_example_song

    song = lambda sid: SimpleNamespace(song_id=sid)
    assert input_example_song({"train": [song("t")], "validation": [song("v")], "promotion": [song("p")]}) == "p"
    assert input_example_song({"train": [song("t")], "validation": [], "promotion": []}) == "t"
    assert input_example_song({}) is None
