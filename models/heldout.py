"""Held-out comparison of editors: the trained policy against the baselines, judged by the listener.

Binds the domain's ``evaluate_editors`` to concrete editors (policy, BC reference,
heuristic, random, optionally the registry's champion), the listener with the songs'
audio (seams are measured on rendered audio), the dense reward and the learned reward.
Used by the rlhf stage (its metrics) and the evaluate stage (the full report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from beatedit.audio.io import load_mono
from beatedit.config import Config
from beatedit.editing.editors import edit_with
from beatedit.judging.statistics import evaluate_editors, summarise
from beatedit.judging.listener import score_edit
from beatedit.judging.dense import dense_reward
from beatedit.audio.song import SongAnalysis
from models.policy import ActorCritic
from models.policy_edit import edit_song


def song_targets(songs: Sequence[SongAnalysis], cfg: Config, seed: int, per_song: int) -> dict[str, list[float]]:
    """``per_song`` edit targets per song, evenly spread over the env's target range with a seeded jitter."""
    out = {}
    lo, hi = cfg.env.target_min, cfg.env.target_max
    for s in songs:
        rng = np.random.default_rng([seed, int.from_bytes(s.song_id.encode()[:8].ljust(8, b"\0"), "little") % (2**32)])
        edges = np.linspace(lo, hi, per_song + 1)
        out[s.song_id] = [float(rng.uniform(a, b)) for a, b in zip(edges[:-1], edges[1:])]
    return out


def editors_for(cfg: Config, policy: ActorCritic | None = None, reference: ActorCritic | None = None,
                champion: ActorCritic | None = None, seed: int = 0) -> dict[str, Any]:
    def policy_editor(p: ActorCritic):
        return lambda song, target: edit_song(p, song, target, cfg.env, crossfade_ms=cfg.render.crossfade_ms)

    eds: dict[str, Any] = {}
    if policy is not None:
        eds["candidate"] = policy_editor(policy)
    if champion is not None:
        eds["champion"] = policy_editor(champion)
    if reference is not None:
        eds["reference"] = policy_editor(reference)
    eds["heuristic"] = lambda song, target: edit_with("heuristic", song, target, None, cfg.env, cfg.render.crossfade_ms)
    # the radio fade: no splices, length within half a bar -- a strong baseline on duration and seams
    eds["fade"] = lambda song, target: edit_with("fade", song, target, None, cfg.env, cfg.render.crossfade_ms)
    rngs: dict[str, np.random.Generator] = {}

    def random_editor(song: SongAnalysis, target: float):
        rng = rngs.setdefault(song.song_id, np.random.default_rng([seed, len(rngs)]))
        return edit_with("random", song, target, rng, cfg.env, cfg.render.crossfade_ms)

    eds["random"] = random_editor
    return eds


def scorer(cfg: Config):
    """score(song, edit, target) -> listener (gold, on audio) and dense components, prefixed."""
    audio: dict[str, np.ndarray] = {}

    def score(song: SongAnalysis, edit: Any, target: float) -> dict[str, float]:
        if song.song_id not in audio:
            audio.clear()  # one song's audio at a time: evaluate_editors walks song by song
            audio[song.song_id] = load_mono(song.source_path, cfg.audio.analysis_sr)
        gold = score_edit(song, edit, target, audio=audio[song.song_id], sr=cfg.audio.analysis_sr, cfg=cfg.listener)
        dense = dense_reward(song, edit, target, cfg.dense_reward)
        row = {f"listener_{k}": float(v) for k, v in dict(gold).items() if isinstance(v, (int, float))}
        row.update({f"dense_{k}": float(v) for k, v in dense.items()})
        return row

    return score


def learned_scorer(reward_model: Any, normalizer: Any, batch_size: int = 64):
    from models.reward_model import score_batch

    def learned(items: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        return normalizer(score_batch(reward_model, items, "cpu", batch_size))

    return learned


def compare_editors(songs: Sequence[SongAnalysis], cfg: Config, policy: ActorCritic | None, reference: ActorCritic | None,
                    reward_model: Any = None, normalizer: Any = None, champion: ActorCritic | None = None,
                    seed: int = 0, n_boot: int = 2000, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Per-(song, editor) rows and the summary of the candidate against every other editor."""
    targets = song_targets(songs, cfg, seed, cfg.evaluate.targets_per_song)
    eds = editors_for(cfg, policy, reference, champion, seed)
    learned = learned_scorer(reward_model, normalizer) if reward_model is not None else None
    df = evaluate_editors(songs, targets, eds, scorer(cfg), learned, progress=progress)
    opponents = [name for name in eds if name != "candidate"]
    summary = summarise(df, "candidate", opponents, n_boot=n_boot, seed=seed) if policy is not None else {}
    return df, summary
