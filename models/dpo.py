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
from beatedit.editing.program import build_edit
from beatedit.audio.song import SongAnalysis

from models.policy import ActorCritic, attach_reference, save_policy
from models.policy_edit import decisions_from_beat_actions, replay_trajectories
from models.ppo_monitor import audio_for, baseline_golds, evaluate_policy, monitor_targets

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
    """Whether the policy, which acts under the env's length guard, could take ``decisions`` at all."""
    try:
        build_edit(song, decisions, 0.0, target_ratio, env_cfg, guarded=True)
    except ValueError:
        return False
    return True


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
            "final_state_dict": final_state, "learned_reward_calls": 0, "seconds": time.time() - t0}
