"""Held-out comparison of editors: the trained policy against the baselines, judged by the listener.

Binds the domain's ``evaluate_editors`` to concrete editors (policy, BC reference, search,
heuristic, fade, random, optionally the registry's champion), the listener with the songs'
audio (seams are measured on rendered audio), the dense reward, the learned reward and, for
the evaluate stage's final report only, the independent judge (``beatedit.judge``).
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
from beatedit.judging.statistics import baseline_report, evaluate_editors, summarise
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
    # the strong classical baseline: beat-level search, the song's start and real ending, within one beat
    eds["search"] = lambda song, target: edit_with("search", song, target, None, cfg.env, cfg.render.crossfade_ms)
    # the radio fade: no splices, length within half a beat -- strong on duration and seams, no real ending
    eds["fade"] = lambda song, target: edit_with("fade", song, target, None, cfg.env, cfg.render.crossfade_ms)
    rngs: dict[str, np.random.Generator] = {}

    def random_editor(song: SongAnalysis, target: float):
        rng = rngs.setdefault(song.song_id, np.random.default_rng([seed, len(rngs)]))
        return edit_with("random", song, target, rng, cfg.env, cfg.render.crossfade_ms)

    eds["random"] = random_editor
    return eds


def scorer(cfg: Config, judge: bool = False):
    """score(song, edit, target) -> listener (gold, on audio) and dense components, prefixed; with ``judge``
    also the independent judge's verdict on the rendered edit (``judge_*``: final reports only, never
    training or checkpoint selection)."""
    audio: dict[str, np.ndarray] = {}
    judged: dict[str, tuple] = {}

    def score(song: SongAnalysis, edit: Any, target: float) -> dict[str, float]:
        if song.song_id not in audio:
            audio.clear()  # one song's audio at a time: evaluate_editors walks song by song
            audio[song.song_id] = load_mono(song.source_path, cfg.audio.analysis_sr)
        gold = score_edit(song, edit, target, audio=audio[song.song_id], sr=cfg.audio.analysis_sr, cfg=cfg.listener)
        dense = dense_reward(song, edit, target, cfg.dense_reward)
        row = {f"listener_{k}": float(v) for k, v in dict(gold).items() if isinstance(v, (int, float))}
        row.update({f"dense_{k}": float(v) for k, v in dense.items()})
        if judge:
            row.update(judge_row(song, edit, target, judged))
        return row

    return score


def judge_row(song: SongAnalysis, edit: Any, target: float, cache: dict[str, tuple]) -> dict[str, float]:
    """The independent judge on ``edit`` rendered by the project renderer from the source file."""
    from beatedit.audio.io import load_audio
    from beatedit.editing.render import render
    from beatedit.judge import judge_edit, source_profile

    if song.song_id not in cache:
        cache.clear()
        source, sr = load_audio(song.source_path)
        cache[song.song_id] = (source, sr, source_profile(source, sr))
    source, sr, prof = cache[song.song_id]
    verdict = judge_edit(render(edit.edl, source), prof, sr, target * song.duration)
    return {"judge_total": verdict.total, **{f"judge_{k}": v for k, v in verdict.components().items()},
            "judge_n_seams": float(verdict.n_seams)}


def learned_scorer(reward_model: Any, normalizer: Any, batch_size: int = 64):
    from models.reward_model import score_batch

    def learned(items: list[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
        """Normalised learned reward of (features, beat actions, target) items: the target is part of what
        PPO's terminal reward scores (``models.ppo_monitor.score_learned``), so it is part of this too."""
        return normalizer(score_batch(reward_model, items, "cpu", batch_size))

    return learned


def compare_editors(songs: Sequence[SongAnalysis], cfg: Config, policy: ActorCritic | None, reference: ActorCritic | None,
                    reward_model: Any = None, normalizer: Any = None, champion: ActorCritic | None = None,
                    seed: int = 0, n_boot: int = 2000, progress: bool = True, judge: bool = False) -> tuple[pd.DataFrame, dict]:
    """Per-(song, editor) rows and the summary of the candidate against every other editor (and, with
    ``judge``, the independent judge's figures and how the baselines stand under both judges)."""
    targets = song_targets(songs, cfg, seed, cfg.evaluate.targets_per_song)
    eds = editors_for(cfg, policy, reference, champion, seed)
    learned = learned_scorer(reward_model, normalizer) if reward_model is not None else None
    df = evaluate_editors(songs, targets, eds, scorer(cfg, judge), learned, progress=progress)
    opponents = [name for name in eds if name != "candidate"]
    summary = summarise(df, "candidate", opponents, n_boot=n_boot, seed=seed) if policy is not None else {}
    summary.update(baseline_report(df, n_boot=n_boot, seed=seed))
    return df, summary


def exact_length_report(df: pd.DataFrame, songs: Sequence[SongAnalysis], editor: str = "candidate") -> dict[str, float]:
    """``--exact`` on the held-out edits of ``editor``: each EDL rendered with ``meta["exact_samples"]`` set to
    its target, as ``beatedit edit --exact`` does; reports the share landing within 1 ms and the stretch factors."""
    import dataclasses

    from beatedit.audio.io import load_audio
    from beatedit.editing.edl import EDL
    from beatedit.editing.render import render
    from beatedit.editing.stretch import StretchError

    by_id = {s.song_id: s for s in songs}
    rows = df[df.editor == editor]
    errors_ms, factors, refused = [], [], 0
    for song_id, group in rows.groupby("song_id"):
        source, sr = load_audio(by_id[song_id].source_path)
        for row in group.itertuples(index=False):
            edl = EDL.from_json(row.edl)
            n_target = int(round(row.target_ratio * by_id[song_id].duration * sr))
            try:
                out = render(dataclasses.replace(edl, meta={**edl.meta, "exact_samples": n_target}), source)
            except StretchError:
                refused += 1
                continue
            errors_ms.append(abs(out.shape[1] - row.target_ratio * by_id[song_id].duration * sr) / sr * 1000.0)
            factors.append(edl.n_samples / n_target)
    n = len(errors_ms) + refused
    return {"exact_within_1ms": float(np.sum(np.asarray(errors_ms) <= 1.0) / n) if n else float("nan"),
            "exact_refused": float(refused), "exact_stretch_max_change": float(np.max(np.abs(np.asarray(factors) - 1.0)))
            if factors else float("nan")}
