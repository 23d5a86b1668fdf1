"""DPO (Rafailov et al. 2023) on the preference pairs: the offline alternative to PPO.

For a pair (chosen c, rejected r) of edits of one song at one target, the policy's
sequence log-probability of an edit is the sum over its decisions of
log pi(a_k | s_k), where (s_k, mask_k) are the observations met when the edit's
decisions are replayed through the env. With the frozen reference pi_ref (the BC policy):

    h    = [log pi(c) - log pi_ref(c)] - [log pi(r) - log pi_ref(r)]
    loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)     (eps = label_smoothing)

Logged like PPO: loss, implicit rewards beta (log pi - log pi_ref) of chosen / rejected,
their margin, pair accuracy (margin > 0) on train and validation pairs, the mean
sequence KL estimate on the chosen edits, and the same over-optimisation monitor as
PPO (greedy edits on validation songs: gold, proxy when a reward model is given, KL).

Decisions: the pair table stores per-source-beat actions (``actions_a/actions_b``); an
EDL's ``meta["decisions"]`` is used when present (the edit program does not store it
today), otherwise the decisions are recovered exactly from the per-beat actions
(``policy_edit.decisions_from_beat_actions``: the action at the cursor beat is the
decision; the replay must reproduce the per-beat actions, else the pair is rejected
with a clear error). Pairs used: ``split == "train"``, not ``ood``, decisive
(``choice`` 0 or 1; ties skipped), ``strength >= dpo.min_strength``, and both edits reachable
under the env's length guard (``within_guard``: the policy acts under it, so an off-target edit
such as a ``wrong_length`` candidate is not a choice it has).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from beatedit.progress import progress_bar
from beatedit.config import Config, EnvConfig
from beatedit.editing.env import VecBeatEditEnv
from beatedit.editing.program import policy_can_take
from beatedit.audio.song import SongAnalysis

from models.bc import stratified_targets
from models.policy import ActorCritic, attach_reference, save_policy
from models.policy_edit import decisions_from_beat_actions, edit_songs, replay_trajectories
from models.ppo_monitor import audio_for, baseline_golds, evaluate_policy, monitor_targets, score_learned, selection_summary

LogFn = Callable[[dict, int], None]
CheckpointFn = Callable[[Path, int], None]


@dataclass
class PairSet:
    song: np.ndarray  # int64 [P]: index into the song table
    target: np.ndarray  # float64 [P]
    chosen: list[list[int]]  # decisions of the preferred edit
    rejected: list[list[int]]
    weight: np.ndarray  # float32 [P] (1.0; room for strength weighting)

    def __len__(self) -> int:
        return len(self.song)


def _decisions(song: SongAnalysis, actions, edl_json, env_cfg: EnvConfig, where: str) -> list[int]:
    if isinstance(edl_json, str) and edl_json:
        try:
            meta = json.loads(edl_json).get("meta", {})
        except (json.JSONDecodeError, AttributeError):
            meta = {}
        if isinstance(meta, dict) and meta.get("decisions") is not None:
            return [int(a) for a in meta["decisions"]]
    try:
        return decisions_from_beat_actions(song, np.asarray(actions, dtype=np.int64), env_cfg)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def within_guard(song: SongAnalysis, decisions: Sequence[int], target_ratio: float, env_cfg: EnvConfig) -> bool:
    """Whether the policy, which acts under the env's masks (length guard, ``keep_start``), could take ``decisions``."""
    return policy_can_take(song, decisions, target_ratio, env_cfg)


def build_pairs(df: pd.DataFrame, songs: Sequence[SongAnalysis], env_cfg: EnvConfig, split: str = "train",
                min_strength: float = 0.0) -> PairSet:
    """Select and decode the usable pairs of ``split`` (see the module docstring)."""
    index = {s.song_id: i for i, s in enumerate(songs)}
    sel = df[df["split"] == split]
    if "ood" in sel.columns:
        sel = sel[~sel["ood"].fillna(False).astype(bool)]
    sel = sel[sel["choice"].isin([0, 1, 0.0, 1.0])]
    if "strength" in sel.columns:
        sel = sel[sel["strength"].fillna(1.0) >= min_strength]
    missing = sorted(set(sel["song_id"]) - set(index))
    if missing:
        raise ValueError(f"preference pairs name songs without features: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    song_i, target, chosen, rejected = [], [], [], []
    for k, row in enumerate(sel.itertuples(index=False)):
        s = songs[index[row.song_id]]
        where = f"pair {k} ({row.song_id}, {split})"
        a = _decisions(s, row.actions_a, getattr(row, "edl_a", None), env_cfg, where + " edit A")
        b = _decisions(s, row.actions_b, getattr(row, "edl_b", None), env_cfg, where + " edit B")
        if not (within_guard(s, a, float(row.target_ratio), env_cfg) and within_guard(s, b, float(row.target_ratio), env_cfg)):
            continue  # an edit the (length-guarded) policy can never produce has no log-probability to move
        c, r = (a, b) if float(row.choice) == 0.0 else (b, a)
        song_i.append(index[row.song_id])
        target.append(float(row.target_ratio))
        chosen.append(c)
        rejected.append(r)
    return PairSet(np.asarray(song_i, dtype=np.int64), np.asarray(target, dtype=np.float64), chosen, rejected,
                   np.ones(len(song_i), dtype=np.float32))


class _Replayer:
    """Replays decision lists through one ``VecBeatEditEnv`` per batch size (built once)."""

    def __init__(self, songs: Sequence[SongAnalysis], env_cfg: EnvConfig):
        self.songs, self.env_cfg, self.envs = list(songs), env_cfg, {}

    def __call__(self, song_idx: Sequence[int], targets: Sequence[float], decisions: Sequence[list[int]]):
        n = len(decisions)
        if n not in self.envs:
            self.envs[n] = VecBeatEditEnv(self.songs, n, self.env_cfg, seed=0, dense=False, build_edits=False)
        return replay_trajectories(self.songs, targets, decisions, env=self.envs[n], song_indices=list(song_idx))


def sequence_logprobs(model: ActorCritic, trajs: Sequence[tuple[np.ndarray, np.ndarray]], decisions: Sequence[list[int]],
                      device: str | torch.device) -> torch.Tensor:
    """[len(trajs)]: sum over each trajectory of log model(a_k | s_k, mask_k)."""
    obs = torch.as_tensor(np.concatenate([o for o, _ in trajs]), device=device)
    mask = torch.as_tensor(np.concatenate([m for _, m in trajs]), device=device)
    act = torch.as_tensor(np.concatenate([np.asarray(d, dtype=np.int64) for d in decisions]), device=device)
    seg = torch.as_tensor(np.repeat(np.arange(len(trajs)), [len(d) for d in decisions]), device=device)
    lp = model.log_probs(obs, mask).gather(-1, act.unsqueeze(-1)).squeeze(-1)
    return torch.zeros(len(trajs), device=device, dtype=lp.dtype).index_add_(0, seg, lp)


def dpo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-pair DPO loss and the implicit rewards (see the module docstring)."""
    h = (pi_c - ref_c) - (pi_r - ref_r)
    loss = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    with torch.no_grad():
        rc, rr = beta * (pi_c - ref_c), beta * (pi_r - ref_r)
        stats = {"rewards_chosen": rc, "rewards_rejected": rr, "margin": rc - rr, "accuracy": (rc > rr).float(),
                 "kl_chosen": pi_c - ref_c}
    return loss, stats


def _batch_logps(model, replay: _Replayer, pairs: PairSet, idx: np.ndarray, device):
    dec = [pairs.chosen[i] for i in idx] + [pairs.rejected[i] for i in idx]
    trajs = replay(list(pairs.song[idx]) * 2, list(pairs.target[idx]) * 2, dec)
    lp = sequence_logprobs(model, trajs, dec, device)
    return lp[: len(idx)], lp[len(idx):]


@torch.no_grad()
def pair_metrics(policy: ActorCritic, reference: ActorCritic, replay: _Replayer, pairs: PairSet, beta: float,
                 device, batch_size: int = 32) -> dict:
    if len(pairs) == 0:
        return {}
    acc, margin, loss = [], [], []
    for s in range(0, len(pairs), batch_size):
        idx = np.arange(s, min(s + batch_size, len(pairs)))
        pc, pr = _batch_logps(policy, replay, pairs, idx, device)
        rc, rr = _batch_logps(reference, replay, pairs, idx, device)
        l, st = dpo_loss(pc, pr, rc, rr, beta)
        acc.append(st["accuracy"].cpu().numpy())
        margin.append(st["margin"].cpu().numpy())
        loss.append(l.cpu().numpy())
    return {"loss": float(np.concatenate(loss).mean()), "accuracy": float(np.concatenate(acc).mean()),
            "margin": float(np.concatenate(margin).mean())}


def train_dpo(policy: ActorCritic, reference: ActorCritic, pairs_df: pd.DataFrame, songs: Sequence[SongAnalysis],
              cfg: Config, *, songs_val: Sequence[SongAnalysis] | None = None, reward_model=None, normalizer=None,
              log: LogFn | None = None, on_checkpoint: CheckpointFn | None = None,
              checkpoint_dir: str | Path | None = None, device: str | torch.device = "cpu", progress: bool = True,
              restore_best: bool = True) -> dict:
    """DPO on ``pairs_df`` (train split); ``songs``: every song the pairs name (train + validation).

    ``songs_val``: songs for the over-optimisation monitor (default: the validation-split songs
    of ``pairs_df``). One monitor evaluation per epoch (and before the first); the best policy
    by gold is kept (``best.pt`` in ``checkpoint_dir``; restored at the end unless
    ``restore_best=False``); a checkpoint after every epoch (``on_checkpoint(path, step)``,
    step = optimizer steps). ``log(metrics, step)`` every optimizer step and every evaluation.
    """
    rl, dc = cfg.rlhf, cfg.rlhf.dpo
    device = torch.device(device)
    t0 = time.time()
    songs = list(songs)
    torch.manual_seed(rl.seed)
    rng = np.random.default_rng(rl.seed)
    train = build_pairs(pairs_df, songs, cfg.env, "train", dc.min_strength)
    val = build_pairs(pairs_df, songs, cfg.env, "validation", dc.min_strength)
    if len(train) == 0:
        raise ValueError("DPO: no usable training pairs (split 'train', decisive, not OOD)")
    if songs_val is None:
        val_ids = set(pairs_df.loc[pairs_df["split"] == "validation", "song_id"])
        songs_val = [s for s in songs if s.song_id in val_ids]
    eval_songs = list(songs_val)[: rl.n_eval_songs]
    replay = _Replayer(songs, cfg.env)
    attach_reference(policy, reference, device)
    opt = torch.optim.AdamW(policy.parameters(), lr=dc.lr, weight_decay=0.0)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    eval_targets = monitor_targets(eval_songs, cfg)
    eval_audio = audio_for(eval_songs, cfg)  # gold with seams on audio, as the evaluation measures it
    baselines = baseline_golds(eval_songs, eval_targets, cfg, seed=rl.seed, audio=eval_audio) if eval_songs else {}
    history: list[dict] = []
    best = {"gold": -np.inf, "epoch": -1, "path": None}
    best_state = None
    step = 0

    def monitor(epoch: int) -> dict:
        nonlocal best, best_state
        if not eval_songs:
            return {}
        ev = evaluate_policy(policy, reference, reward_model, normalizer, eval_songs, eval_targets, cfg, device,
                             baselines, rl.reward_batch_size, eval_audio)
        pm = pair_metrics(policy, reference, replay, val, dc.beta, device, dc.batch_size)
        row = {"epoch": epoch, "step": step, **{k: v for k, v in ev.items() if k != "gold_per_job"},
               **{f"gold_{name}": float(np.mean(g)) for name, g in baselines.items()},
               **{f"val_{k}": v for k, v in pm.items()}}
        history.append(row)
        if ev["gold"] > best["gold"]:
            best = {"gold": ev["gold"], "epoch": epoch, "path": None}
            if ckpt_dir is not None:
                best["path"] = str(save_policy(ckpt_dir / "best.pt", policy, extra={"epoch": epoch, "gold": ev["gold"]}))
            else:
                best_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        if log is not None:
            log({f"eval/{k}": v for k, v in row.items() if k not in ("epoch", "step")} | {"eval/best_gold": best["gold"]}, step)
        policy.train()
        return row

    monitor(0)
    steps_per_epoch = -(-len(train) // dc.batch_size)
    bar = progress_bar(total=dc.epochs * steps_per_epoch, desc="dpo", disable=not progress)
    last_ckpt = None
    for epoch in range(1, dc.epochs + 1):
        perm = rng.permutation(len(train))
        for s in range(0, len(train), dc.batch_size):
            idx = perm[s:s + dc.batch_size]
            with torch.no_grad():
                ref_c, ref_r = _batch_logps(reference, replay, train, idx, device)
            pi_c, pi_r = _batch_logps(policy, replay, train, idx, device)
            loss, st = dpo_loss(pi_c, pi_r, ref_c, ref_r, dc.beta, dc.label_smoothing)
            loss = loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.max_grad_norm)
            opt.step()
            step += 1
            row = {"dpo/loss": float(loss.detach()), "dpo/rewards_chosen": float(st["rewards_chosen"].mean()),
                   "dpo/rewards_rejected": float(st["rewards_rejected"].mean()), "dpo/margin": float(st["margin"].mean()),
                   "dpo/accuracy": float(st["accuracy"].mean()), "dpo/kl_chosen": float(st["kl_chosen"].mean()),
                   "dpo/grad_norm": float(grad_norm), "dpo/epoch": epoch}
            if log is not None:
                log(row, step)
            bar.update(1)
            bar.set_postfix(loss=f"{row['dpo/loss']:.3f}", acc=f"{row['dpo/accuracy']:.2f}")
        monitor(epoch)
        if ckpt_dir is not None:
            last_ckpt = save_policy(ckpt_dir / f"dpo_epoch_{epoch:03d}.pt", policy, extra={"epoch": epoch, "step": step})
            if on_checkpoint is not None:
                on_checkpoint(last_ckpt, step)
    bar.close()
    final_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    if restore_best and best["epoch"] >= 0:
        if best["path"] is not None:
            from models.checkpoint import load_checkpoint

            policy.load_state_dict(load_checkpoint(best["path"], kind="policy")["state_dict"])
        elif best_state is not None:
            policy.load_state_dict(best_state)
    policy.eval()
    last = history[-1] if history else {}
    return {"pairs_train": len(train), "pairs_val": len(val), "steps": step, "final_kl": last.get("kl", float("nan")),
            "final_gold": last.get("gold", float("nan")), "final_proxy": last.get("proxy", float("nan")),
            "val_accuracy": last.get("val_accuracy", float("nan")), "best_gold": best["gold"], "best_epoch": best["epoch"],
            "best_path": best["path"], "last_checkpoint": str(last_ckpt) if last_ckpt else None, "history": history,
            "final_state_dict": final_state, "learned_reward_calls": 0, "seconds": time.time() - t0,
            **selection_summary(history, best["gold"])}


# ----------------------------------------------------------------------------- online, iterative DPO
def ipo_loss(pi_c: torch.Tensor, pi_r: torch.Tensor, ref_c: torch.Tensor, ref_r: torch.Tensor, beta: float
             ) -> torch.Tensor:
    """Per-pair IPO loss (Azar et al. 2023): (h - 1/(2 beta))^2 with h the DPO log-ratio margin.
    Unlike the sigmoid loss it stops pushing once the margin reaches 1/(2 beta), so a
    deterministic preference cannot drive the log-ratios to infinity."""
    h = (pi_c - ref_c) - (pi_r - ref_r)
    return (h - 1.0 / (2.0 * beta)) ** 2


def online_pairs(policy: ActorCritic, reward_model, normalizer, songs: Sequence[SongAnalysis], cfg: Config,
                 rng: np.random.Generator, device: str | torch.device = "cpu") -> tuple[PairSet, dict]:
    """One round's pairs: ``prompts_per_song`` (song, target) prompts per song, ``samples_per_prompt`` edits
    sampled from ``policy`` for each, ranked by the learned reward *with the target* (normalised); the best
    and the worst make a pair when their rewards differ by at least ``min_reward_gap``. Never the listener."""
    dc, env_cfg = cfg.rlhf.dpo, cfg.env
    songs = list(songs)
    K = dc.samples_per_prompt
    prompts = [(i, float(t)) for i, s in enumerate(songs)
               for t in stratified_targets(dc.prompts_per_song, env_cfg.target_min, env_cfg.target_max, rng)]
    jobs = [p for p in prompts for _ in range(K)]
    edits = edit_songs(policy, [songs[i] for i, _ in jobs], [t for _, t in jobs], env_cfg, greedy=False, rng=rng,
                       render_cfg=cfg.render, device=device, temperature=dc.temperature)
    raw = score_learned(reward_model, [(songs[i], e.edit.beat_actions, t) for (i, t), e in zip(jobs, edits)], device,
                        cfg.rlhf.reward_batch_size)
    reward = np.asarray(normalizer(raw), dtype=np.float64).reshape(len(prompts), K)
    song_i, target, chosen, rejected, gaps, distinct = [], [], [], [], [], []
    for p, (i, t) in enumerate(prompts):
        group = edits[p * K:(p + 1) * K]
        distinct.append(len({tuple(e.edit.decisions) for e in group}))
        best, worst = int(np.argmax(reward[p])), int(np.argmin(reward[p]))
        gap = reward[p, best] - reward[p, worst]
        if gap < dc.min_reward_gap or group[best].edit.decisions == group[worst].edit.decisions:
            continue
        song_i.append(i)
        target.append(t)
        chosen.append(list(group[best].edit.decisions))
        rejected.append(list(group[worst].edit.decisions))
        gaps.append(gap)
    pairs = PairSet(np.asarray(song_i, dtype=np.int64), np.asarray(target, dtype=np.float64), chosen, rejected,
                    np.ones(len(song_i), dtype=np.float32))
    stats = {"prompts": len(prompts), "pairs": len(pairs), "mean_reward": float(reward.mean()),
             "mean_best_reward": float(reward.max(1).mean()), "mean_gap": float(np.mean(gaps)) if gaps else 0.0,
             "distinct_per_prompt": float(np.mean(distinct))}
    return pairs, stats


def train_online_dpo(policy: ActorCritic, reference: ActorCritic, reward_model, normalizer,
                     songs_train: Sequence[SongAnalysis], songs_val: Sequence[SongAnalysis], cfg: Config, *,
                     log: LogFn | None = None, on_checkpoint: CheckpointFn | None = None,
                     checkpoint_dir: str | Path | None = None, device: str | torch.device = "cpu", progress: bool = True,
                     restore_best: bool = True) -> dict:
    """Online, iterative DPO (Xu et al. 2023 "Some things are more CRINGE than others"; Guo et al. 2024 "Direct
    language model alignment from online AI feedback"; RPO, Pang et al. 2024): ``rlhf.dpo.rounds`` rounds of

    1. sample ``samples_per_prompt`` edits per (train song, target) from the current policy,
    2. rank them with the learned reward model (with the target; the listener is never asked),
    3. ``epochs`` passes over the round's best-vs-worst pairs with the IPO loss (``ipo``; else sigmoid DPO with
       ``label_smoothing``) plus ``nll_coef`` x the chosen edit's per-decision NLL (against likelihood displacement),

    always against the frozen BC ``reference``. The over-optimisation monitor (greedy edits of validation songs:
    gold, proxy, KL) runs before the first round and after each; the best policy by gold is kept."""
    rl, dc = cfg.rlhf, cfg.rlhf.dpo
    if reward_model is None or normalizer is None:
        raise ValueError("online DPO ranks its samples with the learned reward model: pass reward_model and normalizer")
    device = torch.device(device)
    t0 = time.time()
    songs_train = list(songs_train)
    torch.manual_seed(rl.seed)
    rng = np.random.default_rng(rl.seed)
    eval_songs = list(songs_val)[: rl.n_eval_songs]
    replay = _Replayer(songs_train, cfg.env)
    attach_reference(policy, reference, device)
    reward_model.to(device).eval()
    opt = torch.optim.AdamW(policy.parameters(), lr=dc.lr, weight_decay=0.0)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    eval_targets = monitor_targets(eval_songs, cfg)
    eval_audio = audio_for(eval_songs, cfg)  # gold with seams on audio, as the evaluation measures it
    baselines = baseline_golds(eval_songs, eval_targets, cfg, seed=rl.seed, audio=eval_audio) if eval_songs else {}
    history: list[dict] = []
    best = {"gold": -np.inf, "epoch": -1, "path": None}
    best_state = None
    step = 0
    learned_reward_calls = 0

    def monitor(rnd: int, extra: dict) -> dict:
        nonlocal best, best_state
        if not eval_songs:
            return {}
        ev = evaluate_policy(policy, reference, reward_model, normalizer, eval_songs, eval_targets, cfg, device,
                             baselines, rl.reward_batch_size, eval_audio)
        row = {"epoch": rnd, "round": rnd, "step": step, **{k: v for k, v in ev.items() if k != "gold_per_job"},
               **{f"gold_{name}": float(np.mean(g)) for name, g in baselines.items()}, **extra}
        history.append(row)
        if ev["gold"] > best["gold"]:
            best = {"gold": ev["gold"], "epoch": rnd, "path": None}
            if ckpt_dir is not None:
                best["path"] = str(save_policy(ckpt_dir / "best.pt", policy, extra={"round": rnd, "gold": ev["gold"]}))
            else:
                best_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
        if log is not None:
            log({f"eval/{k}": v for k, v in row.items() if k not in ("epoch", "round", "step")} | {"eval/best_gold": best["gold"]}, step)
        policy.train()
        return row

    monitor(0, {})
    last_ckpt = None
    bar = progress_bar(range(1, dc.rounds + 1), desc="online dpo", disable=not progress)
    for rnd in bar:
        policy.eval()
        pairs, stats = online_pairs(policy, reward_model, normalizer, songs_train, cfg, rng, device)
        learned_reward_calls += stats["prompts"] * dc.samples_per_prompt
        policy.train()
        losses, accs, nlls = [], [], []
        for _ in range(dc.epochs if len(pairs) else 0):
            perm = rng.permutation(len(pairs))
            for s in range(0, len(pairs), dc.batch_size):
                idx = perm[s:s + dc.batch_size]
                with torch.no_grad():
                    ref_c, ref_r = _batch_logps(reference, replay, pairs, idx, device)
                pi_c, pi_r = _batch_logps(policy, replay, pairs, idx, device)
                if dc.ipo:
                    pref = ipo_loss(pi_c, pi_r, ref_c, ref_r, dc.beta)
                else:
                    pref, _ = dpo_loss(pi_c, pi_r, ref_c, ref_r, dc.beta, dc.label_smoothing)
                n_dec = torch.as_tensor([len(pairs.chosen[i]) for i in idx], device=device, dtype=pi_c.dtype)
                nll = -pi_c / n_dec  # per-decision NLL of the chosen edit
                loss = (pref + dc.nll_coef * nll).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.max_grad_norm)
                opt.step()
                step += 1
                with torch.no_grad():
                    h = (pi_c - ref_c) - (pi_r - ref_r)
                losses.append(float(loss.detach()))
                accs.append(float((h > 0).float().mean()))
                nlls.append(float(nll.detach().mean()))
                if log is not None:
                    log({"dpo/loss": losses[-1], "dpo/accuracy": accs[-1], "dpo/nll_chosen": nlls[-1],
                         "dpo/margin": float(h.mean()), "dpo/grad_norm": float(grad_norm), "dpo/round": rnd}, step)
        extra = {f"round_{k}": v for k, v in stats.items()} | {
            "round_loss": float(np.mean(losses)) if losses else float("nan"),
            "round_accuracy": float(np.mean(accs)) if accs else float("nan")}
        row = monitor(rnd, extra)
        bar.set_postfix(pairs=stats["pairs"], gold=f"{row.get('gold', float('nan')):.3f}", kl=f"{row.get('kl', float('nan')):.2f}")
        if ckpt_dir is not None:
            last_ckpt = save_policy(ckpt_dir / f"online_dpo_round_{rnd:03d}.pt", policy, extra={"round": rnd, "step": step})
            if on_checkpoint is not None:
                on_checkpoint(last_ckpt, step)
    bar.close()
    final_state = {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}
    if restore_best and best["epoch"] >= 0:
        if best["path"] is not None:
            from models.checkpoint import load_checkpoint

            policy.load_state_dict(load_checkpoint(best["path"], kind="policy")["state_dict"])
        elif best_state is not None:
            policy.load_state_dict(best_state)
    policy.eval()
    last = history[-1] if history else {}
    return {"rounds": dc.rounds, "steps": step, "pairs_train": int(sum(r.get("round_pairs", 0) for r in history)),
            "final_kl": last.get("kl", float("nan")), "final_gold": last.get("gold", float("nan")),
            "final_proxy": last.get("proxy", float("nan")), "best_gold": best["gold"], "best_round": best["epoch"],
            "best_path": best["path"], "last_checkpoint": str(last_ckpt) if last_ckpt else None, "history": history,
            "final_state_dict": final_state, "learned_reward_calls": learned_reward_calls, "seconds": time.time() - t0,
            **selection_summary(history, best["gold"])}
