"""Benchmark: env steps per second of the whole PPO loop (rollout + update), ours vs Stable-Baselines3.

    .venv/bin/python bench/bench_ppo.py [--envs 16] [--rollout 128] [--updates 4] [--reps 2] [--threads 1] [--write]

Same env (``BeatEditEnv`` songs and ``EnvConfig``; dense terminal reward), same network
(our ``ActorCritic`` encoder as SB3's features extractor, SB3 ``net_arch`` pi=[hidden], vf=[hidden]
with tanh = our actor / critic heads; the parameter counts are printed and must match),
same hyper-parameters (n_envs, n_steps, minibatch size, epochs, gamma, lambda, clip range,
value clipping, entropy / value coefficients, grad-norm clip, Adam lr with linear annealing,
advantage normalisation; ``target_kl`` off in both so both run every epoch).

* SB3: ``PPO("MlpPolicy")`` on ``DummyVecEnv`` of ``n_envs`` ``BeatEditEnv`` (mask-unaware: the
  env plays KEEP for an illegal pick), ``model.learn(total_timesteps)``.
* ours, "RLHF loop": ``models.ppo.train_ppo`` on ``VecBeatEditEnv`` with everything the RLHF
  stage does per step: masked sampling, the reference policy's log-probs (KL penalty), and the
  learned reward (a default-size ``RewardModel``) on every finished episode; monitor off.
* ours, "dense + KL": the same loop with no reward model (the reference forward stays).
* ours, "plain": no reward model and kl_coef 0 (no reference forward): like for like with SB3.

Each configuration runs ``--reps`` times, interleaved (SB3, ours, ours-dense, SB3, ...), and the
median steps/s is reported, so a noisy shared machine hits all of them alike.
``--write`` appends/replaces the "RLHF / PPO" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from beatedit.config import Config, PolicyConfig  # noqa: E402
from beatedit.env import BeatEditEnv  # noqa: E402
from models.policy import ActorCritic, policy_for_env  # noqa: E402
from models.ppo import train_ppo  # noqa: E402
from tests.rlhfkit import rl_song  # noqa: E402


def make_songs(n: int) -> list:
    return [rl_song(i, n_bars=int(32 + 8 * (i % 4)), song_id=f"bench_{i:02d}") for i in range(n)]


# ----------------------------------------------------------------------------- SB3 side
def sb3_model(songs, cfg: Config, seed: int):
    from stable_baselines3 import PPO
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from stable_baselines3.common.vec_env import DummyVecEnv

    rl = cfg.rlhf

    class OurEncoder(BaseFeaturesExtractor):
        """Our ActorCritic's encoder + trunk (its own heads removed): SB3 adds the same heads."""

        def __init__(self, observation_space, **kw):
            super().__init__(observation_space, features_dim=rl.policy.hidden)
            ac = policy_for_env(cfg.env, rl.policy)
            del ac.actor, ac.critic
            self.ac = ac

        def forward(self, obs):
            return self.ac._hidden(obs)

    def make(i):
        def f():
            env = BeatEditEnv(songs, cfg.env, cfg.dense_reward, cfg.render)
            env.reset(seed=seed + i)
            return env
        return f

    venv = DummyVecEnv([make(i) for i in range(rl.n_envs)])
    venv.seed(seed)
    lr = (lambda p: p * rl.lr) if rl.anneal_lr else rl.lr
    model = PPO("MlpPolicy", venv, learning_rate=lr, n_steps=rl.rollout_steps,
                batch_size=rl.n_envs * rl.rollout_steps // rl.n_minibatches, n_epochs=rl.update_epochs, gamma=rl.gamma,
                gae_lambda=rl.gae_lambda, clip_range=rl.clip_coef, clip_range_vf=rl.clip_coef if rl.clip_vloss else None,
                normalize_advantage=rl.norm_adv, ent_coef=rl.ent_coef, vf_coef=rl.vf_coef, max_grad_norm=rl.max_grad_norm,
                target_kl=None, seed=seed, device="cpu", verbose=0,
                policy_kwargs=dict(features_extractor_class=OurEncoder, net_arch=dict(pi=[rl.policy.hidden], vf=[rl.policy.hidden]),
                                   activation_fn=nn.Tanh, ortho_init=True))
    return model


#: Final-layer actor bias of the shared starting policy: mostly KEEP, rarely an ending, so episodes are a
#: pass over the song as with the BC reference PPO really starts from (a fresh orthogonal init ends
#: most episodes within ~6 steps with FADE_OUT / END, which would make the benchmark measure
#: episode finishing -- EDL replay + dense reward -- instead of the PPO loop).
START_BIAS = (3.0, 0.0, -0.5, -0.5, -2.0, -2.0, -2.0, -2.0, -5.0, -5.0)


def start_policy(cfg: Config, seed: int) -> ActorCritic:
    torch.manual_seed(seed)
    pol = policy_for_env(cfg.env, cfg.rlhf.policy)
    with torch.no_grad():
        pol.actor[2].bias.copy_(torch.tensor(START_BIAS))
    return pol


def load_into_sb3(model, pol: ActorCritic) -> None:
    """Copy our policy's weights into the SB3 policy (same architecture, module by module)."""
    sp = model.policy
    enc = {k: v for k, v in pol.state_dict().items() if not k.startswith(("actor.", "critic."))}
    sp.features_extractor.ac.load_state_dict(enc)
    sp.mlp_extractor.policy_net[0].load_state_dict(pol.actor[0].state_dict())
    sp.action_net.load_state_dict(pol.actor[2].state_dict())
    sp.mlp_extractor.value_net[0].load_state_dict(pol.critic[0].state_dict())
    sp.value_net.load_state_dict(pol.critic[2].state_dict())


def run_sb3(songs, cfg: Config, seed: int) -> tuple[float, int, float]:
    """(steps/s, parameters, share of the time spent in the update: ``PPO.train``)."""
    model = sb3_model(songs, cfg, seed)
    load_into_sb3(model, start_policy(cfg, seed))
    total = cfg.rlhf.total_steps
    train, spent = model.train, []

    def timed_train():
        t0 = time.perf_counter()
        train()
        spent.append(time.perf_counter() - t0)

    model.train = timed_train
    t = time.perf_counter()
    model.learn(total_timesteps=total)
    wall = time.perf_counter() - t
    return total / wall, sum(p.numel() for p in model.policy.parameters()), sum(spent) / wall


def run_ours(songs, cfg: Config, seed: int, with_rm: bool, with_kl: bool = True) -> tuple[float, int, int, float]:
    from models.reward_model import RewardModel, RewardNormalizer

    pol = start_policy(cfg, seed)
    ref = start_policy(cfg, seed)
    rm = RewardModel(dropout=0.0) if with_rm else None
    if rm is not None:
        rm.fit_feature_stats(np.concatenate([s.features for s in songs]))
    if not with_kl:  # plain PPO: no KL penalty, so no reference forward
        cfg = dataclasses.replace(cfg, rlhf=dataclasses.replace(cfg.rlhf, kl_coef=0.0, adaptive_kl=False))
    t = time.perf_counter()
    res = train_ppo(pol, ref, rm, RewardNormalizer() if rm else None, songs, [], cfg, progress=False, restore_best=False)
    wall = time.perf_counter() - t
    update_share = sum(h["time/update_s"] for h in res["train_history"]) / wall
    lens = [h["charts/episode_length"] for h in res["train_history"]]
    EPISODE_LENGTHS.append(float(np.nanmean(lens)))
    return res["global_step"] / wall, sum(p.numel() for p in pol.parameters()), res["learned_reward_calls"], update_share


EPISODE_LENGTHS: list[float] = []


def write_results(text: str) -> None:
    path = REPO / "bench" / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    section = re.compile(r"\n## RLHF / PPO\n.*?(?=\n## |\Z)", re.S)
    new = section.sub("", old).rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="PPO loop throughput: ours vs Stable-Baselines3 on the same env")
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--rollout", type=int, default=128)
    ap.add_argument("--updates", type=int, default=4)
    ap.add_argument("--songs", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = Config()
    rl = dataclasses.replace(base.rlhf, n_envs=args.envs, rollout_steps=args.rollout,
                             total_steps=args.envs * args.rollout * args.updates, target_kl=None, n_eval_songs=0)
    cfg = dataclasses.replace(base, rlhf=rl)
    songs = make_songs(args.songs)
    load0 = os.getloadavg()[0]
    runs: dict[str, list[float]] = {"sb3": [], "ours_rlhf": [], "ours_dense": [], "ours_plain": []}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch's one-time optimizer imports before timing
    params = {}
    calls = 0
    shares: dict[str, list[float]] = {k: [] for k in runs}
    for rep in range(args.reps):
        sps, params["sb3"], share = run_sb3(songs, cfg, args.seed + rep)
        runs["sb3"].append(sps)
        shares["sb3"].append(share)
        sps, params["ours"], calls, share = run_ours(songs, cfg, args.seed + rep, with_rm=True)
        runs["ours_rlhf"].append(sps)
        shares["ours_rlhf"].append(share)
        sps, _, _, share = run_ours(songs, cfg, args.seed + rep, with_rm=False)
        runs["ours_dense"].append(sps)
        shares["ours_dense"].append(share)
        sps, _, _, share = run_ours(songs, cfg, args.seed + rep, with_rm=False, with_kl=False)
        runs["ours_plain"].append(sps)
        shares["ours_plain"].append(share)
        print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:,.0f} steps/s" for k, v in runs.items()), flush=True)
    med = {k: float(np.median(v)) for k, v in runs.items()}
    sh = {k: float(np.median(v)) for k, v in shares.items()}
    # time per env step spent outside the update (rollout, rewards, GAE): where the loops really differ
    outside = {k: (1.0 - sh[k]) / med[k] * 1e6 for k in med}
    out = {"median_steps_per_s": med, "ratio_rlhf_vs_sb3": med["ours_rlhf"] / med["sb3"],
           "ratio_dense_vs_sb3": med["ours_dense"] / med["sb3"], "ratio_plain_vs_sb3": med["ours_plain"] / med["sb3"],
           "update_share": sh, "us_per_step_outside_update": outside, "params": params, "learned_reward_calls_last": calls}
    print(out)
    if params["sb3"] != params["ours"]:
        print(f"WARNING: parameter counts differ: SB3 {params['sb3']:,} vs ours {params['ours']:,}")
    n_beats = [s.n_beats for s in songs]
    text = f"""## RLHF / PPO

`.venv/bin/python bench/bench_ppo.py --envs {args.envs} --rollout {args.rollout} --updates {args.updates} --songs {args.songs} --reps {args.reps} --threads {args.threads} --write` ({time.strftime('%Y-%m-%d')})

- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} (CPU), {args.threads} torch thread(s), 1-min load average at start {load0:.1f} (other jobs share the cores)
- env: {args.songs} synthetic songs ({min(n_beats)}-{max(n_beats)} beats), default EnvConfig (obs {policy_for_env(cfg.env, rl.policy).obs_dim} floats), dense terminal reward in every run
- same network in both: our conv encoder + tanh trunk + actor/critic heads, {params['ours']:,} parameters (SB3 policy: {params['sb3']:,}), and the same starting weights (copied into SB3), biased towards KEEP like the BC reference: mean episode length {np.mean(EPISODE_LENGTHS):.0f} decisions (ours)
- same hyper-parameters: {args.envs} envs x {args.rollout} steps, {rl.n_minibatches} minibatches, {rl.update_epochs} epochs, gamma {rl.gamma}, lambda {rl.gae_lambda}, clip {rl.clip_coef} (policy and value), lr {rl.lr} annealed, target_kl off; {args.updates} updates = {rl.total_steps:,} env steps per run; median of {args.reps} interleaved runs

| PPO loop (rollout + update) | env steps/s | vs SB3 | share of time in the update | us per env step outside the update |
|---|---|---|---|---|
| Stable-Baselines3 PPO, `DummyVecEnv` of `BeatEditEnv` (peer) | {med['sb3']:,.0f} | 1.00x | {sh['sb3']:.0%} | {outside['sb3']:,.0f} |
| ours, `train_ppo`, plain PPO like SB3 (dense reward, no KL so no reference forward) | {med['ours_plain']:,.0f} | {out['ratio_plain_vs_sb3']:.2f}x | {sh['ours_plain']:.0%} | {outside['ours_plain']:,.0f} |
| ours, `train_ppo`, dense reward + KL penalty (reference log-probs every step), no reward model | {med['ours_dense']:,.0f} | {out['ratio_dense_vs_sb3']:.2f}x | {sh['ours_dense']:.0%} | {outside['ours_dense']:,.0f} |
| ours, `train_ppo`, full RLHF step: + learned reward (default `RewardModel`, {calls} episodes scored in the last run) | {med['ours_rlhf']:,.0f} | {out['ratio_rlhf_vs_sb3']:.2f}x | {sh['ours_rlhf']:.0%} | {outside['ours_rlhf']:,.0f} |

Reading it: the update (5 epochs x 4 minibatches of forward + backward through the same
112k-parameter network) is identical work in both loops and takes {sh['sb3']:.0%} of SB3's time, so
even a free rollout could not make the loop more than {1 / max(sh['sb3'], 1e-9):.2f}x faster than SB3
at these hyper-parameters: the 1.5x goal is out of reach for any rollout-side change here.
Outside the update ours spends {outside['ours_plain']:,.0f} us per env step against SB3's {outside['sb3']:,.0f}
(the vectorised env writes all envs' observations with numpy straight into the rollout buffer,
`obs_out`; SB3 steps its `DummyVecEnv` one env at a time in Python). The KL penalty adds one
reference forward per step; the learned reward scores every finished episode with the 256-wide
3-layer transformer in one batched call per rollout (cheap with one-pass episodes; a fresh,
unbiased policy ends episodes ~20x sooner and then the reward model dominates the loop).
Timings are noisy on this shared 2-core machine: the runs are interleaved and the median kept;
the like-for-like ratio moved between 0.9x and 1.4x across repeated runs at load averages 3-8.
"""
    if args.write:
        write_results(text)
    return out


if __name__ == "__main__":
    main()
