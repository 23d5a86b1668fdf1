"""Behaviour cloning of baseline editors: the reference policy (SFT before RL).

The reference is both PPO's starting point and its KL anchor (and DPO's). It is
trained on (observation, mask, action) triples from replaying, through the env, the
decisions of the baseline editors named in ``rlhf.bc.editors`` (default: the search
editor, ``beatedit.editing.search.search_decisions``, the strongest baseline; also
``heuristic`` and ``fade``) on every training song at ``samples_per_song`` targets
stratified over the env's target range, plus human edits when given (decision lists,
or per-beat actions from which the decisions are recovered exactly). An editor's edit
that the length-guarded env could not take (``beatedit.editing.program.policy_can_take``: the length guard, ``env.keep_start``) is left out and
counted (``bc_expressible_<editor>``: the fraction kept; the same check).

Loss: cross-entropy of the masked policy against the demonstrated action, weighted per
pair by ``count(action) ** -class_balance`` (normalised to mean 1: KEEP is ~90-95% of the
decisions, and without it the clone never cuts or fades greedily), with optional
``label_smoothing`` spread over the *legal* actions only. The default is no smoothing:
with it, every sharpened policy pays a flat KL of about ``-log(1 - eps)`` nats per decision
to the reference, so the KL measures the smoothing rather than distance from the prior.
Only the actor (shared encoder + actor head) is trained; the critic is left to PPO.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from beatedit.progress import progress_bar
from beatedit.config import Config, EnvConfig
from beatedit.editing.editors import fade_decisions, heuristic_decisions
from beatedit.editing.program import policy_can_take
from beatedit.editing.search import search_decisions
from beatedit.audio.song import SongAnalysis

from models.policy import ActorCritic
from models.policy_edit import decisions_from_beat_actions, replay_trajectories

LogFn = Callable[[dict, int], None]


@dataclass
class Demonstrations:
    obs: np.ndarray  # float32 [N, D]
    mask: np.ndarray  # bool [N, 10]
    action: np.ndarray  # int64 [N]
    song: np.ndarray  # int64 [N]: index of the song the step comes from
    source: np.ndarray  # <U9 [N]: the editor's name ("search", "heuristic", "fade") | "human"

    def __len__(self) -> int:
        return len(self.action)

    @staticmethod
    def concat(parts: Sequence["Demonstrations"]) -> "Demonstrations":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no demonstrations")
        return Demonstrations(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("obs", "mask", "action", "song", "source")))

    def subset(self, keep: np.ndarray) -> "Demonstrations":
        return Demonstrations(self.obs[keep], self.mask[keep], self.action[keep], self.song[keep], self.source[keep])


def stratified_targets(n: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` targets in [lo, hi], one uniformly inside each of ``n`` equal strata."""
    return lo + (hi - lo) * (np.arange(n) + rng.random(n)) / n


def demonstrations(songs: Sequence[SongAnalysis], jobs: Sequence[tuple[int, float, list[int]]], env_cfg: EnvConfig,
                   source: str, chunk: int = 64) -> Demonstrations:
    """Replay (song index, target, decisions) jobs through the env (``chunk`` at a time)."""
    obs, mask, act, song = [], [], [], []
    for s in range(0, len(jobs), chunk):
        part = jobs[s:s + chunk]
        trajs = replay_trajectories([songs[i] for i, _, _ in part], [t for _, t, _ in part], [d for _, _, d in part], env_cfg)
        for (i, _, d), (o, m) in zip(part, trajs):
            obs.append(o)
            mask.append(m)
            act.append(np.asarray(d, dtype=np.int64))
            song.append(np.full(len(d), i, dtype=np.int64))
    if not obs:
        return Demonstrations(np.zeros((0, 0), np.float32), np.zeros((0, 10), bool), np.zeros(0, np.int64),
                              np.zeros(0, np.int64), np.zeros(0, "<U9"))
    n = sum(len(a) for a in act)
    return Demonstrations(np.concatenate(obs), np.concatenate(mask), np.concatenate(act), np.concatenate(song),
                          np.full(n, source, dtype="<U9"))


#: the baseline editors BC can clone: name -> decisions(song, target_ratio, env_cfg)
EDITOR_DECISIONS = {"search": search_decisions, "heuristic": heuristic_decisions, "fade": fade_decisions}


def editor_demonstrations(songs: Sequence[SongAnalysis], env_cfg: EnvConfig, editor: str, samples_per_song: int,
                          seed: int = 0) -> tuple[Demonstrations, float]:
    """``editor``'s edits of every song at ``samples_per_song`` stratified targets, replayed through the env;
    returns (demonstrations, fraction of the edits the length-guarded env could take: only those are kept)."""
    if editor not in EDITOR_DECISIONS:
        raise ValueError(f"rlhf.bc.editors: unknown editor {editor!r}; choose from {', '.join(EDITOR_DECISIONS)}")
    decide = EDITOR_DECISIONS[editor]
    rng = np.random.default_rng(seed)
    jobs, total = [], 0
    for i, s in enumerate(songs):
        for t in stratified_targets(samples_per_song, env_cfg.target_min, env_cfg.target_max, rng):
            d = decide(s, float(t), env_cfg)
            total += 1
            if policy_can_take(s, d, float(t), env_cfg):
                jobs.append((i, float(t), d))
    return demonstrations(songs, jobs, env_cfg, editor), (len(jobs) / total if total else float("nan"))


def heuristic_demonstrations(songs: Sequence[SongAnalysis], env_cfg: EnvConfig, samples_per_song: int,
                             seed: int = 0) -> Demonstrations:
    return editor_demonstrations(songs, env_cfg, "heuristic", samples_per_song, seed)[0]


def human_demonstrations(songs: Sequence[SongAnalysis], edits: Sequence[dict], env_cfg: EnvConfig) -> Demonstrations:
    """``edits``: dicts with ``song_id``, ``target_ratio`` and ``decisions`` (list of action ids) or
    ``beat_actions`` (per source beat). Edits of songs not in ``songs`` are an error (named); an edit the policy
    could not take (``policy_can_take``: off target, or a cut at the first beat under ``env.keep_start``) is left out."""
    index = {s.song_id: i for i, s in enumerate(songs)}
    jobs = []
    for k, e in enumerate(edits):
        if e["song_id"] not in index:
            raise ValueError(f"human edit {k}: song {e['song_id']!r} is not among the training songs")
        i = index[e["song_id"]]
        d = e.get("decisions")
        if d is None:
            d = decisions_from_beat_actions(songs[i], e["beat_actions"], env_cfg)
        jobs.append((i, float(e["target_ratio"]), [int(a) for a in d]))
    jobs = [j for j in jobs if policy_can_take(songs[j[0]], j[2], j[1], env_cfg)]  # e.g. one that skips the intro
    return demonstrations(songs, jobs, env_cfg, "human")


def bc_loss(logp: torch.Tensor, mask: torch.Tensor, action: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Per-row cross-entropy against (1 - eps) one-hot(action) + eps uniform over the legal actions."""
    nll = -logp.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    if label_smoothing <= 0:
        return nll
    legal = mask.float()
    smooth = -(logp.masked_fill(~mask, 0.0) * legal).sum(-1) / legal.sum(-1).clamp_min(1.0)
    return (1 - label_smoothing) * nll + label_smoothing * smooth


@torch.no_grad()
def accuracy(policy: ActorCritic, demos: Demonstrations, device: str | torch.device = "cpu", batch: int = 2048) -> float:
    if len(demos) == 0:
        return float("nan")
    hits = 0
    for s in range(0, len(demos), batch):
        o = torch.as_tensor(demos.obs[s:s + batch], device=device)
        m = torch.as_tensor(demos.mask[s:s + batch], device=device)
        hits += int((policy.log_probs(o, m).argmax(-1).cpu().numpy() == demos.action[s:s + batch]).sum())
    return hits / len(demos)


@torch.no_grad()
def rare_recall(policy: ActorCritic, demos: Demonstrations, device: str | torch.device = "cpu") -> float:
    """Greedy recall on the demonstrated non-KEEP decisions (the cuts, fades and loops)."""
    rare = demos.action != 0
    if not rare.any():
        return float("nan")
    sub = demos.subset(rare)
    return accuracy(policy, sub, device)


def train_bc(policy: ActorCritic, songs_train: Sequence[SongAnalysis], cfg: Config, *,
             human_edits: Sequence[dict] | None = None, log: LogFn | None = None, device: str | torch.device = "cpu",
             progress: bool = True) -> dict:
    """Clone the editors of ``rlhf.bc.editors`` (+ human edits) into ``policy`` in place; returns metrics.

    Songs are split (by song, seeded) into fit / held-out for the reported accuracy.
    ``log(metrics, epoch)`` is called once per epoch.
    """
    bc, env_cfg, seed = cfg.rlhf.bc, cfg.env, cfg.rlhf.seed
    t0 = time.time()
    songs_train = list(songs_train)
    if not bc.editors and not human_edits:
        raise ValueError("rlhf.bc.editors is empty and there are no human edits: nothing to clone")
    parts, expressible = [], {}
    for editor in bc.editors:
        part, expressible[editor] = editor_demonstrations(songs_train, env_cfg, editor, bc.samples_per_song, seed)
        parts.append(part)
    if human_edits:
        parts.append(human_demonstrations(songs_train, human_edits, env_cfg))
    demos = Demonstrations.concat(parts)
    rng = np.random.default_rng(seed)
    n_val = int(round(bc.val_fraction * len(songs_train))) if len(songs_train) > 1 else 0
    val_songs = rng.permutation(len(songs_train))[:n_val]
    is_val = np.isin(demos.song, val_songs)
    fit, held = demos.subset(~is_val), demos.subset(is_val)
    # class balancing: KEEP is ~95% of the heuristic's decisions; the rare cuts and fades carry the edit
    counts = np.bincount(fit.action, minlength=policy.n_actions).astype(np.float64)
    w_action = np.where(counts > 0, np.maximum(counts, 1.0) ** -bc.class_balance, 0.0)
    weights = w_action[fit.action]
    weights = (weights / weights.mean()).astype(np.float32) if len(weights) else weights
    torch.manual_seed(seed)
    policy.to(device).train()
    params = [p for n, p in policy.named_parameters() if not n.startswith("critic.")]
    opt = torch.optim.AdamW(params, lr=bc.lr, weight_decay=bc.weight_decay)
    n = len(fit)
    steps_per_epoch = max(1, -(-n // bc.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=bc.lr, total_steps=bc.epochs * steps_per_epoch, pct_start=0.1)
    history = []
    bar = progress_bar(range(bc.epochs), desc="bc", disable=not progress)
    for epoch in bar:
        perm = rng.permutation(n)
        tot, cnt = 0.0, 0
        for s in range(0, n, bc.batch_size):
            idx = perm[s:s + bc.batch_size]
            o = torch.as_tensor(fit.obs[idx], device=device)
            m = torch.as_tensor(fit.mask[idx], device=device)
            a = torch.as_tensor(fit.action[idx], device=device)
            w = torch.as_tensor(weights[idx], device=device)
            loss = (bc_loss(policy.log_probs(o, m), m, a, bc.label_smoothing) * w).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
        policy.eval()
        row = {"bc/loss": tot / max(cnt, 1), "bc/train_accuracy": accuracy(policy, fit, device),
               "bc/val_accuracy": accuracy(policy, held, device), "bc/val_rare_recall": rare_recall(policy, held, device),
               "bc/epoch": epoch + 1}
        policy.train()
        history.append(row)
        bar.set_postfix(loss=f"{row['bc/loss']:.3f}", acc=f"{row['bc/train_accuracy']:.3f}")
        if log is not None:
            log(row, epoch + 1)
    policy.eval()
    last = history[-1] if history else {}
    return {"bc_loss": last.get("bc/loss"), "bc_train_accuracy": last.get("bc/train_accuracy"),
            "bc_val_accuracy": last.get("bc/val_accuracy"), "bc_val_rare_recall": last.get("bc/val_rare_recall"), "bc_pairs": int(n), "bc_val_pairs": int(len(held)),
            "bc_human_pairs": int((demos.source == "human").sum()), "bc_seconds": time.time() - t0,
            **{f"bc_expressible_{e}": f for e, f in expressible.items()},
            **{f"bc_pairs_{e}": int((demos.source == e).sum()) for e in bc.editors}, "history": history}


def make_reference(policy: ActorCritic) -> ActorCritic:
    """A frozen copy (eval mode, no grads): the KL anchor."""
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
