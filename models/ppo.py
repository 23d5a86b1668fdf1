"""PPO on the learned reward + dense reward, with a per-step KL penalty to the reference.

Modelled on CleanRL's ``ppo.py``: one loop, every detail visible. Per update:

1. Rollout: ``n_envs`` episodes stepped together in ``VecBeatEditEnv`` (songs and targets
   drawn from the training songs by the env's seeded RNG; finished episodes auto-reset)
   for ``rollout_steps`` steps. Each step stores obs, mask, action, log pi(a|s), log
   pi_ref(a|s), V(s), and whether the obs starts a new episode (CleanRL's ``dones``).
2. Reward of step t (env e):
       r = w_dense * dense_total                      (terminal step; the env's reward)
         + w_learned * normalizer(RM(edit))           (terminal step; the whole edit)
         - kl_coef * (log pi(a|s) - log pi_ref(a|s))  (every step)
   The learned reward of every episode that finished during the rollout is computed in
   one batched ``score_batch`` call after the rollout (the same numbers as calling it at
   each terminal step; GAE needs them only after the rollout) and counted in
   ``learned_reward_calls``.
3. GAE(gamma, lambda) with CleanRL's done convention (``compute_gae``), bootstrapping
   from V(next obs) at the rollout's end unless that obs starts a new episode.
4. ``update_epochs`` epochs over ``n_minibatches`` shuffled minibatches: per-minibatch
   advantage normalisation, clipped surrogate, clipped value loss, entropy bonus,
   global grad-norm clipping, optional ``grad_accum`` micro-batches and bf16 autocast;
   early stop of the epoch loop when approx-KL(old || new) exceeds ``target_kl``.
   Logged: losses, approx-KL (and the old estimator), clip fraction, explained variance.
5. Optional adaptive KL coefficient (Ziegler et al. 2019): the mean per-episode KL to
   the reference of this rollout's finished episodes vs ``kl_target``.
6. Every ``eval_interval`` updates (and before the first and after the last): the
   over-optimisation monitor (``models.ppo_monitor``) on validation songs -- greedy edits
   scored by the learned reward (proxy), the simulated listener (gold) and their KL to the
   reference (summed exact KL along the path); the best policy by gold is kept (``best.pt``).
7. Every ``checkpoint_every`` updates (and after the last): a resumable checkpoint
   (``models.ppo_state.ResumeState``: optimizer, RNG states of torch / numpy / python and
   the sampling generator, the vectorised env's state, the next observation, kl_coef,
   counters, history). Resuming from it continues the run exactly: on CPU with the same
   seed the metrics and weights equal those of an uninterrupted run (tested).

Nothing here imports prefect / mlflow / dvc: the caller passes ``log(metrics, step)``
and ``on_checkpoint(path, step)`` (``step`` = env steps so far).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from beatedit.progress import progress_bar
from beatedit.audio.song import SongAnalysis
from beatedit.config import Config
from beatedit.editing.env import VecBeatEditEnv

from models.device import bf16_autocast
from models.policy import ActorCritic, attach_reference
from models.policy_edit import finished_mask
from models.ppo_monitor import PPOMonitor, score_learned, selection_summary
from models.ppo_state import ResumeState, env_state, resolve_resume, rng_state, set_env_state, set_rng_state

LogFn = Callable[[dict, int], None]
CheckpointFn = Callable[[Path, int], None]


# ----------------------------------------------------------------------------- pieces (tested on their own)
def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
                next_done: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a [T, E] rollout; returns (advantages, returns = advantages + values).

    CleanRL's convention: ``dones[t]`` is 1 when ``obs[t]`` is the first observation of a new
    episode (the previous step ended one), ``rewards[t]`` is the reward of the action taken
    at ``obs[t]``; ``next_value`` / ``next_done`` describe the observation after the last step.
    So the bootstrap across step t -> t+1 is cut exactly when ``dones[t + 1]`` is 1.
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(rewards[0])
    for t in reversed(range(T)):
        if t == T - 1:
            nextnonterminal = 1.0 - next_done.float()
            nextvalues = next_value
        else:
            nextnonterminal = 1.0 - dones[t + 1].float()
            nextvalues = values[t + 1]
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        advantages[t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
    return advantages, advantages + values


def clipped_policy_loss(newlogprob: torch.Tensor, oldlogprob: torch.Tensor, advantages: torch.Tensor,
                        clip_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, as a loss: mean(max(-A r, -A clip(r, 1-c, 1+c))), r = pi/pi_old.

    Also returns approx-KL estimators (``old`` = mean(-log r), ``approx`` = mean((r - 1) - log r))
    and the fraction of samples whose ratio was clipped.
    """
    logratio = newlogprob - oldlogprob
    ratio = logratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    loss = torch.max(pg_loss1, pg_loss2).mean()
    with torch.no_grad():
        stats = {"old_approx_kl": (-logratio).mean(), "approx_kl": ((ratio - 1) - logratio).mean(),
                 "clipfrac": ((ratio - 1.0).abs() > clip_coef).float().mean()}
    return loss, stats


def value_loss(newvalue: torch.Tensor, oldvalue: torch.Tensor, returns: torch.Tensor, clip_coef: float,
               clip_vloss: bool) -> torch.Tensor:
    """0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)) (or the plain MSE)."""
    if not clip_vloss:
        return 0.5 * ((newvalue - returns) ** 2).mean()
    v_loss_unclipped = (newvalue - returns) ** 2
    v_clipped = oldvalue + torch.clamp(newvalue - oldvalue, -clip_coef, clip_coef)
    v_loss_clipped = (v_clipped - returns) ** 2
    return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()


def kl_penalty(logprob: torch.Tensor, ref_logprob: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-step reward term -kl_coef * (log pi(a|s) - log pi_ref(a|s)) (k1 estimator of the KL)."""
    return -kl_coef * (logprob - ref_logprob)


def explained_variance(y_pred: np.ndarray, y_true: np.ndarray) -> float:
    var_y = np.var(y_true)
    return float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)


def adaptive_kl_coef(kl_coef: float, current_kl: float, target: float, n_steps: int, horizon: int) -> float:
    """Ziegler et al. (2019): proportional controller on log(kl_coef), error clipped to +-0.2."""
    error = float(np.clip(current_kl / target - 1.0, -0.2, 0.2))
    return kl_coef * (1.0 + error * n_steps / horizon)


# ----------------------------------------------------------------------------- the loop
def train_ppo(policy: ActorCritic, reference: ActorCritic, reward_model, normalizer,
              songs_train: Sequence[SongAnalysis], songs_val: Sequence[SongAnalysis], cfg: Config,
              log: LogFn | None = None, on_checkpoint: CheckpointFn | None = None, resume_from: str | Path | None = None,
              device: str | torch.device = "cpu", *, checkpoint_dir: str | Path | None = None, progress: bool = True,
              restore_best: bool = True, max_updates: int | None = None) -> dict:
    """Train ``policy`` in place with PPO (see the module docstring). Returns a result dict.

    ``reward_model=None`` (or ``w_learned=0``) trains on the dense reward alone. ``resume_from``: a
    ``ckpt_*.pt`` or a folder (its latest checkpoint is used; none there = fresh start).
    ``checkpoint_dir``: where ``ckpt_<update>.pt`` and ``best.pt`` go (None: no files; the best
    weights are kept in memory). ``restore_best``: load the best-by-gold weights into
    ``policy`` at the end. ``max_updates``: stop after this update index (the schedule
    still spans all updates -- for smoke runs and benchmarks).
    """
    rl = cfg.rlhf
    device = torch.device(device)
    t_start = time.time()
    use_rm = reward_model is not None and rl.w_learned > 0
    if reward_model is not None and normalizer is None:
        raise ValueError("train_ppo: a reward model needs its RewardNormalizer (from the reward checkpoint)")
    songs_train, songs_val = list(songs_train), list(songs_val)
    eval_songs = songs_val[: rl.n_eval_songs]
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    # --- seeding (CleanRL: random, numpy, torch) + our own generators -----------------------------
    random.seed(rl.seed)
    torch.manual_seed(rl.seed)
    np_rng = np.random.default_rng(rl.seed)  # minibatch shuffles
    gen = torch.Generator().manual_seed(rl.seed)  # action sampling (on CPU, so runs match across devices)

    # --- env, models, optimizer, storage --------------------------------------------------------
    envs = VecBeatEditEnv(songs_train, rl.n_envs, cfg.env, cfg.dense_reward, seed=rl.seed, render_cfg=cfg.render)
    if envs.obs_dim != policy.obs_dim:
        raise ValueError(f"policy expects {policy.obs_dim} observation values, the env ({cfg.env}) gives {envs.obs_dim}")
    attach_reference(policy, reference, device)
    if reward_model is not None:
        reward_model.to(device).eval()
    # fused: one kernel for the whole parameter list instead of a dozen foreach passes (same Adam)
    optimizer = torch.optim.Adam(policy.parameters(), lr=rl.lr, eps=1e-5, fused=True)
    E, T, D, A = rl.n_envs, rl.rollout_steps, envs.obs_dim, policy.n_actions
    batch_size = E * T
    minibatch_size = batch_size // rl.n_minibatches
    num_updates = max(1, rl.total_steps // batch_size)
    obs = torch.zeros((T, E, D), device=device)
    masks = torch.zeros((T, E, A), dtype=torch.bool, device=device)
    actions = torch.zeros((T, E), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, E), device=device)
    ref_logprobs = torch.zeros((T, E), device=device)
    rewards = torch.zeros((T, E), device=device)
    dones = torch.zeros((T, E), device=device)
    values = torch.zeros((T, E), device=device)
    need_ref = rl.kl_coef != 0 or rl.adaptive_kl  # per-step reference log-probs only feed the KL penalty
    autocast = bf16_autocast(device, rl.bf16, "rlhf.bf16")

    # --- fresh start, or the state a checkpoint carries ------------------------------------------
    start_update, global_step, kl_coef, learned_reward_calls = 1, 0, rl.kl_coef, 0
    train_history: list[dict] = []  # one row per update
    ep_kl = np.zeros(E)  # running per-env sums of (logp - logp_ref) over the current episode
    ep_len = np.zeros(E, dtype=np.int64)
    resume_path = resolve_resume(resume_from)
    resumed: ResumeState | None = None
    if resume_path is not None:
        state_dict, resumed = ResumeState.load(resume_path, rl)
        policy.load_state_dict(state_dict)
        optimizer.load_state_dict(resumed.optimizer)
        set_env_state(envs, resumed.env)
        set_rng_state(resumed.rng, gen, np_rng)
        next_obs, next_mask, next_done = (resumed.next_obs.to(device), resumed.next_mask.to(device),
                                          resumed.next_done.to(device))
        start_update, global_step, kl_coef = resumed.update + 1, resumed.global_step, resumed.kl_coef
        learned_reward_calls, train_history = resumed.learned_reward_calls, resumed.train_history
        ep_kl, ep_len = resumed.ep_kl.copy(), resumed.ep_len.copy()
    else:
        o, m = envs.reset()
        next_obs = torch.as_tensor(o, device=device)
        next_mask = torch.as_tensor(m, device=device)
        next_done = torch.zeros(E, device=device)

    monitor = PPOMonitor(policy, reference, reward_model, normalizer, eval_songs, cfg, device, ckpt_dir, log)
    if resumed is not None:
        monitor.restore(resumed.history, resumed.best, resumed.best_state)
    elif eval_songs:
        monitor(0, global_step, kl_coef)  # the reference's own point: KL 0

    last_update = num_updates if max_updates is None else min(num_updates, max_updates)
    bar = progress_bar(range(start_update, last_update + 1), desc="ppo", disable=not progress, initial=start_update - 1,
               total=last_update)
    t_loop = time.time()
    steps_this_run = 0
    last_ckpt: Path | None = None
    for update in bar:
        # Annealing the learning rate if instructed to do so.
        if rl.anneal_lr:
            frac = 1.0 - (update - 1.0) / num_updates
            optimizer.param_groups[0]["lr"] = frac * rl.lr

        # ---------------------------------------------------------------- rollout
        t_rollout = time.perf_counter()
        policy.eval()
        finished_eps = []  # (t, FinishedEpisode)
        ep_kls, ep_lens = [], []
        dense_env = torch.zeros((T, E))
        # one autocast context for the whole rollout: the behaviour policy runs at the update's precision,
        # and autocast's cast cache keeps the bf16 copies of the (unchanging) leaf weights for the whole rollout
        with autocast:
            for step in range(T):
                global_step += E
                if next_obs.data_ptr() != obs[step].data_ptr():  # else the env already wrote it there
                    obs[step] = next_obs
                masks[step] = next_mask
                dones[step] = next_done
                with torch.inference_mode():
                    action, logprob, _, value = policy.get_action_and_value(next_obs, next_mask, generator=gen)
                    if need_ref:
                        ref_logprob = reference.log_probs(next_obs, next_mask).gather(-1, action.unsqueeze(-1)).squeeze(-1)
                    else:  # no KL penalty configured: the reference forward is skipped (KL metrics read 0)
                        ref_logprob = logprob
                values[step] = value
                actions[step] = action
                logprobs[step] = logprob
                ref_logprobs[step] = ref_logprob
                # on CPU the env writes the next observation straight into the rollout buffer's next slot
                into = obs[step + 1].numpy() if device.type == "cpu" and step + 1 < T else None
                o, m, r, _, finished = envs.step(action.cpu().numpy(), obs_out=into)
                done = finished_mask(finished, E)  # from the finished list: the env auto-resets before returning
                dense_env[step] = torch.as_tensor(r)
                step_kl = (logprob - ref_logprob).cpu().numpy()
                ep_kl += step_kl
                ep_len += 1
                for f in finished:
                    finished_eps.append((step, f))
                    ep_kls.append(ep_kl[f.env_index])
                    ep_lens.append(ep_len[f.env_index])
                ep_kl[done], ep_len[done] = 0.0, 0
                next_obs = torch.as_tensor(o, device=device)
                next_mask = torch.as_tensor(m, device=device)
                next_done = torch.as_tensor(done, dtype=torch.float32, device=device)

        t_rewards = time.perf_counter()
        # ---------------------------------------------------------------- rewards
        learned = torch.zeros((T, E))
        learned_raw = np.zeros(0)
        if use_rm and finished_eps:
            learned_raw = score_learned(reward_model, [(songs_train[f.song_index], f.edit.beat_actions, f.target_ratio)
                                                       for _, f in finished_eps], device, rl.reward_batch_size)
            learned_reward_calls += len(finished_eps)
            norm = np.asarray(normalizer(learned_raw), dtype=np.float64)
            for (t, f), v in zip(finished_eps, norm):
                learned[t, f.env_index] = float(v)
        with torch.no_grad():
            kl_term = kl_penalty(logprobs, ref_logprobs, kl_coef)
            rewards.copy_((rl.w_dense * dense_env + rl.w_learned * learned).to(device) + kl_term)

        # ---------------------------------------------------------------- GAE
        with torch.no_grad(), autocast:
            next_value = policy.get_value(next_obs).float()
            advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, rl.gamma, rl.gae_lambda)

        # flatten the batch
        b_obs = obs.reshape((-1, D))
        if rl.bf16:  # autocast would cast each minibatch's observations anyway: cast once, gather half the bytes
            b_obs = b_obs.to(torch.bfloat16)
        b_masks = masks.reshape((-1, A))
        b_actions = actions.reshape(-1)
        b_logprobs = logprobs.reshape(-1)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # ---------------------------------------------------------------- optimise policy and value
        t_update = time.perf_counter()
        policy.train()
        b_inds = np.arange(batch_size)
        clipfracs, approx_kls, old_approx_kls = [], [], []
        pg_l = v_l = ent_l = grad_norm = torch.zeros(())
        epochs_done = 0
        for epoch in range(rl.update_epochs):
            np_rng.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start:start + minibatch_size]
                mb_adv = b_advantages[mb_inds]
                if rl.norm_adv:  # over the whole minibatch, before splitting it into micro-batches
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                optimizer.zero_grad(set_to_none=True)
                pg_l = v_l = ent_l = torch.zeros((), device=device)
                for micro in np.array_split(np.arange(len(mb_inds)), rl.grad_accum):
                    mi = torch.as_tensor(mb_inds[micro], device=device)
                    w = len(micro) / len(mb_inds)  # micro-batch losses sum to the minibatch mean
                    with autocast:
                        _, newlogprob, entropy, newvalue = policy.get_action_and_value(b_obs[mi], b_masks[mi], b_actions[mi])
                    pg_loss, st = clipped_policy_loss(newlogprob.float(), b_logprobs[mi], mb_adv[micro], rl.clip_coef)
                    v_loss = value_loss(newvalue.float(), b_values[mi], b_returns[mi], rl.clip_coef, rl.clip_vloss)
                    entropy_loss = entropy.float().mean()
                    loss = pg_loss - rl.ent_coef * entropy_loss + v_loss * rl.vf_coef
                    (loss * w).backward()
                    pg_l, v_l, ent_l = pg_l + w * pg_loss.detach(), v_l + w * v_loss.detach(), ent_l + w * entropy_loss.detach()
                    clipfracs.append(float(st["clipfrac"]))
                    approx_kls.append(float(st["approx_kl"]))
                    old_approx_kls.append(float(st["old_approx_kl"]))
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.max_grad_norm)
                optimizer.step()
            epochs_done = epoch + 1
            approx_kl = approx_kls[-1]  # CleanRL: the last minibatch's estimate decides
            if rl.target_kl is not None and approx_kl > rl.target_kl:
                break

        t_done = time.perf_counter()
        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        explained_var = explained_variance(y_pred, y_true)

        # ---------------------------------------------------------------- adaptive KL
        mean_ep_kl = float(np.mean(ep_kls)) if ep_kls and need_ref else float("nan")
        kl_coef_used = kl_coef  # the coefficient this rollout's rewards were computed with
        if rl.adaptive_kl and ep_kls:
            kl_coef = adaptive_kl_coef(kl_coef, mean_ep_kl, rl.kl_target, batch_size, rl.kl_horizon)

        # ---------------------------------------------------------------- record
        steps_this_run += batch_size
        dense_done = [f.dense["total"] for _, f in finished_eps if f.dense is not None]
        ep_rewards = [float(rl.w_dense * dense_env[t, f.env_index] + rl.w_learned * learned[t, f.env_index])
                      for t, f in finished_eps]  # the task reward of each finished episode (without the KL term)
        row = {
            "update": update, "global_step": global_step,
            "charts/learning_rate": optimizer.param_groups[0]["lr"],
            "charts/episodes": len(finished_eps),
            "charts/episode_length": float(np.mean(ep_lens)) if ep_lens else float("nan"),
            "charts/episode_kl": mean_ep_kl,
            "charts/dense_reward": float(np.mean(dense_done)) if dense_done else float("nan"),
            "charts/learned_reward": float(np.mean(normalizer(learned_raw))) if len(learned_raw) else float("nan"),
            "charts/learned_reward_calls": learned_reward_calls,
            "charts/kl_coef": kl_coef_used,
            "charts/episode_reward": float(np.mean(ep_rewards)) if ep_rewards else float("nan"),
            "charts/episode_reward_minus_kl": float(np.mean(ep_rewards) - (kl_coef_used * mean_ep_kl if need_ref else 0.0)) if ep_rewards else float("nan"),
            "charts/SPS": steps_this_run / max(time.time() - t_loop, 1e-9),
            "losses/policy_loss": float(pg_l), "losses/value_loss": float(v_l), "losses/entropy": float(ent_l),
            "losses/old_approx_kl": float(np.mean(old_approx_kls)), "losses/approx_kl": float(np.mean(approx_kls)),
            "losses/clipfrac": float(np.mean(clipfracs)), "losses/explained_variance": explained_var,
            "losses/grad_norm": float(grad_norm), "losses/epochs": epochs_done,
            "time/rollout_s": t_rewards - t_rollout, "time/rewards_gae_s": t_update - t_rewards,
            "time/update_s": t_done - t_update,
        }
        train_history.append(row)
        if log is not None:
            log({k: v for k, v in row.items() if k not in ("update", "global_step")} | {"charts/update": update}, global_step)

        # ---------------------------------------------------------------- monitor, checkpoint
        if eval_songs and (update % rl.eval_interval == 0 or update == last_update):
            ev = monitor(update, global_step, kl_coef)
            bar.set_postfix(gold=f"{ev.get('gold', float('nan')):.3f}", kl=f"{ev.get('kl', float('nan')):.2f}",
                            dense=f"{row['charts/dense_reward']:.3f}")
        else:
            bar.set_postfix(dense=f"{row['charts/dense_reward']:.3f}", ep_kl=f"{mean_ep_kl:.2f}")

        if ckpt_dir is not None and (update % rl.checkpoint_every == 0 or update == last_update):
            state = ResumeState(
                update=update, global_step=global_step, kl_coef=kl_coef, optimizer=optimizer.state_dict(),
                rng=rng_state(gen, np_rng), env=env_state(envs), next_obs=next_obs.cpu(), next_mask=next_mask.cpu(),
                next_done=next_done.cpu(), learned_reward_calls=learned_reward_calls, history=monitor.history,
                train_history=train_history, best=monitor.best,
                best_state=monitor.best_state if monitor.best["path"] is None else None,
                ep_kl=ep_kl.copy(), ep_len=ep_len.copy(), rlhf=dataclasses.asdict(rl), num_updates=num_updates)
            last_ckpt = state.save(ckpt_dir / f"ckpt_{update:06d}.pt", policy)
            if on_checkpoint is not None:
                on_checkpoint(last_ckpt, global_step)
    bar.close()

    final_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    if restore_best:
        monitor.load_best()
    policy.eval()
    history, best = monitor.history, monitor.best
    last_eval = history[-1] if history else {}
    return {
        "updates": last_update, "num_updates": num_updates, "global_step": global_step,
        "learned_reward_calls": learned_reward_calls, "final_kl": last_eval.get("kl", float("nan")),
        "final_gold": last_eval.get("gold", float("nan")), "final_proxy": last_eval.get("proxy", float("nan")),
        "best_gold": best["gold"], "best_update": best["update"], "best_path": best["path"],
        "last_checkpoint": str(last_ckpt) if last_ckpt else None, "kl_coef": kl_coef,
        "history": history, "train_history": train_history, "final_state_dict": final_state,
        "seconds": time.time() - t_start, "sps": steps_this_run / max(time.time() - t_loop, 1e-9),
        **selection_summary(history, best["gold"]),
    }
