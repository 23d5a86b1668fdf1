"""The over-optimisation monitor of RLHF training, and checkpoint selection by gold.

Optimising a learned reward eventually raises the proxy while the true preference falls
(Gao et al. 2022). So, every few updates, greedy edits of validation songs are scored by
the learned reward (proxy), the simulated listener (gold) and their KL to the reference;
the policy with the best gold is the one kept. PPO and DPO share these functions.

Gold is measured as the evaluation measures it: the listener with seams on the rendered audio
(``audio_for``; a song whose source file is missing -- synthetic test songs -- falls back to
feature seams, and the row's ``audio_seams`` says which share had audio), on the evaluation's
target protocol (``monitor_targets``). The strong baselines (search, fade) and the heuristic and
random editors are scored once, at the start, on the same jobs, so every checkpoint's gold is
read against them (``gold_<editor>``, ``win_rate_vs_<editor>``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from beatedit.audio.io import load_mono
from beatedit.audio.song import SongAnalysis
from beatedit.config import Config
from beatedit.editing.editors import edit_with
from beatedit.judging.listener import score_edit

from models.checkpoint import load_checkpoint
from models.heldout import song_targets
from models.policy import POLICY_KIND, ActorCritic, save_policy
from models.policy_edit import edit_songs

Targets = Sequence[float] | Mapping[str, Sequence[float]]  # the same targets for every song, or per song id


def monitor_jobs(songs: Sequence[SongAnalysis], targets: Targets) -> list[tuple[SongAnalysis, float]]:
    """(song, target) pairs in song order."""
    if isinstance(targets, Mapping):
        return [(s, float(t)) for s in songs for t in targets[s.song_id]]
    return [(s, float(t)) for s in songs for t in targets]


def monitor_targets(songs: Sequence[SongAnalysis], cfg: Config) -> Targets:
    """The monitor's edit targets: ``rlhf.eval_targets`` if set, else the held-out evaluation's protocol
    (``evaluate.targets_per_song`` per song, spread over the env's target range), so that the checkpoint
    chosen on validation is chosen on the same kind of jobs the promotion and frozen test songs are scored on."""
    if cfg.rlhf.eval_targets:
        return tuple(cfg.rlhf.eval_targets)
    return song_targets(songs, cfg, cfg.evaluate.seed, cfg.evaluate.targets_per_song)


MONITOR_BASELINES = ("search", "fade", "heuristic", "random")  # scored once per run on the monitor's jobs


def audio_for(songs: Sequence[SongAnalysis], cfg: Config) -> dict[str, np.ndarray]:
    """Each song's mono audio at the analysis rate, for seams measured on rendered audio (songs without a source
    file on disk are left out: their seams are judged from features)."""
    return {s.song_id: load_mono(s.source_path, cfg.audio.analysis_sr) for s in songs if Path(s.source_path).is_file()}


def gold_score(song: SongAnalysis, edit, target: float, cfg: Config, audio: Mapping[str, np.ndarray] | None) -> float:
    """The listener's total as the evaluation computes it (seams on audio when the song's audio is given)."""
    y = (audio or {}).get(song.song_id)
    if y is None:
        return float(score_edit(song, edit, target, cfg=cfg.listener)["total"])
    return float(score_edit(song, edit, target, audio=y, sr=cfg.audio.analysis_sr, cfg=cfg.listener)["total"])


def score_learned(reward_model, items: Sequence[tuple[SongAnalysis, np.ndarray, float]], device, batch_size: int) -> np.ndarray:
    """Raw learned-reward scores of (song, beat actions, target) items, batched."""
    from models.reward_model import score_batch

    return score_batch(reward_model, [(s.features, a, t) for s, a, t in items], device, batch_size)


def evaluate_policy(policy: ActorCritic, reference: ActorCritic | None, reward_model, normalizer,
                    songs: Sequence[SongAnalysis], targets: Targets, cfg: Config,
                    device: str | torch.device = "cpu", baselines: dict[str, list[float]] | None = None,
                    reward_batch_size: int = 64, audio: Mapping[str, np.ndarray] | None = None) -> dict:
    """Greedy edits of every (song, target): proxy (normalised learned reward), gold (listener total),
    dense total, KL to the reference (summed exact KL along the path), and -- when ``baselines``
    (gold scores of other editors on the same jobs, in the same order) are given -- win rates."""
    jobs = monitor_jobs(songs, targets)
    if not jobs:
        return {}
    res = edit_songs(policy, [s for s, _ in jobs], [t for _, t in jobs], cfg.env, greedy=True, reference=reference,
                     render_cfg=cfg.render, device=device)
    gold = np.array([gold_score(s, r.edit, t, cfg, audio) for (s, t), r in zip(jobs, res)])
    out = {"gold": float(gold.mean()), "kl": float(np.mean([r.kl for r in res])),
           "audio_seams": float(np.mean([s.song_id in (audio or {}) for s, _ in jobs])),
           "decisions": float(np.mean([r.n_decisions for r in res])),
           "ratio_error": float(np.mean([abs(r.edit.duration / s.duration - t) for (s, t), r in zip(jobs, res)]))}
    if reward_model is not None:
        raw = score_learned(reward_model, [(s, r.edit.beat_actions, t) for (s, t), r in zip(jobs, res)], device,
                            reward_batch_size)
        out["proxy"] = float(np.mean(normalizer(raw)))
    for name, other in (baselines or {}).items():
        o = np.asarray(other)
        out[f"win_rate_vs_{name}"] = float(np.mean((gold > o + 1e-9) + 0.5 * (np.abs(gold - o) <= 1e-9)))
    out["gold_per_job"] = gold.tolist()
    return out


def baseline_golds(songs: Sequence[SongAnalysis], targets: Targets, cfg: Config, seed: int = 0,
                   audio: Mapping[str, np.ndarray] | None = None,
                   editors: Sequence[str] = MONITOR_BASELINES) -> dict[str, list[float]]:
    """Listener totals (gold as ``evaluate_policy`` measures it) of the baseline editors -- the strong ones, search
    and fade, and the heuristic and random -- on the (song, target) jobs of ``evaluate_policy``."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {name: [] for name in editors}
    for s, t in monitor_jobs(songs, targets):
        for name in out:
            e = edit_with(name, s, t, rng=rng, cfg=cfg.env, crossfade_ms=cfg.render.crossfade_ms)
            out[name].append(gold_score(s, e, t, cfg, audio))
    return out


class PPOMonitor:
    """The monitor as PPO runs it: one history row per evaluation, the best policy by gold kept
    (``best.pt`` in ``ckpt_dir``, or a CPU copy of the weights when there is no folder)."""

    def __init__(self, policy: ActorCritic, reference: ActorCritic, reward_model, normalizer,
                 songs: Sequence[SongAnalysis], cfg: Config, device: torch.device, ckpt_dir: Path | None,
                 log: Callable[[dict, int], None] | None):
        self.policy, self.reference, self.reward_model, self.normalizer = policy, reference, reward_model, normalizer
        self.songs, self.cfg, self.device, self.ckpt_dir, self.log = list(songs), cfg, device, ckpt_dir, log
        self.targets = monitor_targets(self.songs, cfg)
        self.audio = audio_for(self.songs, cfg)
        self.baselines = baseline_golds(self.songs, self.targets, cfg, seed=cfg.rlhf.seed, audio=self.audio) if self.songs else {}
        self.history: list[dict] = []
        self.best: dict = {"gold": -np.inf, "update": -1, "path": None}
        self.best_state: dict | None = None

    def restore(self, history: list[dict], best: dict, best_state: dict | None) -> None:
        """Continue from a resumed run's monitor state."""
        self.history, self.best = history, best
        if best["path"] is None and best_state is not None:
            self.best_state = best_state

    def __call__(self, update: int, global_step: int, kl_coef: float) -> dict:
        """Evaluate the policy now; record the row, keep it if it is the best so far, log ``eval/*``."""
        ev = evaluate_policy(self.policy, self.reference, self.reward_model, self.normalizer, self.songs, self.targets,
                             self.cfg, self.device, self.baselines, self.cfg.rlhf.reward_batch_size, self.audio)
        if not ev:
            return {}
        row = {"update": update, "global_step": global_step, "kl_coef": kl_coef,
               **{k: v for k, v in ev.items() if k != "gold_per_job"}}
        row.update({f"gold_{name}": float(np.mean(g)) for name, g in self.baselines.items()})
        self.history.append(row)
        if ev["gold"] > self.best["gold"]:
            self.best = {"gold": ev["gold"], "update": update, "path": None}
            if self.ckpt_dir is not None:
                self.best["path"] = str(save_policy(self.ckpt_dir / "best.pt", self.policy,
                                                    extra={"update": update, "gold": ev["gold"], "global_step": global_step}))
                self.best_state = None
            else:
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.policy.state_dict().items()}
        metrics = {f"eval/{k}": v for k, v in row.items() if k not in ("update", "global_step")}
        metrics["eval/best_gold"] = self.best["gold"]
        if self.log is not None:
            self.log(metrics, global_step)
        return row

    def load_best(self) -> None:
        """Put the best-by-gold weights into the policy (no-op when nothing was evaluated)."""
        if self.best["update"] < 0:
            return
        if self.best["path"] is not None:
            self.policy.load_state_dict(load_checkpoint(self.best["path"], kind=POLICY_KIND)["state_dict"])
        elif self.best_state is not None:
            self.policy.load_state_dict(self.best_state)


def selection_summary(history: Sequence[dict], best_gold: float) -> dict:
    """Validation figures of a monitored run, side by side for PPO and DPO: the reference's gold (the first
    evaluation, KL 0), the search editor's gold on the same jobs, and the best-by-gold checkpoint's gold, KL and
    win rates against the search editor and the heuristic."""
    if not history:
        return {}
    first = history[0]
    best = next((r for r in history if r.get("gold") == best_gold), history[-1])
    out = {"reference_gold": first.get("gold"), "search_gold": first.get("gold_search"), "best_kl": best.get("kl"),
           "best_win_rate_vs_search": best.get("win_rate_vs_search"),
           "best_win_rate_vs_heuristic": best.get("win_rate_vs_heuristic"),
           "reference_win_rate_vs_search": first.get("win_rate_vs_search")}
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float))}

