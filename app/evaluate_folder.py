"""``beatedit evaluate``: score a policy on any folder of audio, against the baselines, with both judges.

Every file is analysed by the front end (stems, beats, features); a file that cannot be analysed is
quarantined with its reason and the rest go on. Each song is edited to the requested length by the
policy (``candidate``) and by the search, fade, heuristic and random editors; every edit is scored by
the independent judge (audio only) and by the simulated listener, and the policy's win rates against
each baseline come with song-bootstrap CIs (``beatedit.judging.statistics``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from beatedit.atomic import atomic_write_text
from beatedit.audio.io import AUDIO_EXTENSIONS, AudioError
from beatedit.config import Config
from beatedit.editing.target import target_ratio_for

BASELINES = ("search", "fade", "heuristic", "random")


class EvaluateFolderError(ValueError):
    """The folder, the model or the length cannot be used; the message says which and why."""


def audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise EvaluateFolderError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise EvaluateFolderError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files


def evaluate_folder(policy: Any, folder: Path, cfg: Config, target: float | None = None, duration: float | None = None,
                    out: Path | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Report ``{"summary": {...}, "items": [...], "quarantined": [...]}``; written as JSON to ``out`` when given."""
    from app.edit import stem_cache
    from beatedit.audio.analysis import analyse_song
    from beatedit.judging.statistics import baseline_report, evaluate_editors, summarise
    from models.heldout import editors_for, scorer

    if (target is None) == (duration is None):
        raise EvaluateFolderError("give exactly one of --target (a ratio) or --duration (seconds)")
    songs, targets, quarantined = [], {}, []
    for path in audio_files(folder):
        try:
            song = analyse_song(path, cfg, stem_cache())
            ratio = target_ratio_for(duration, song.duration) if duration is not None else float(target)
        except (AudioError, ValueError) as exc:
            quarantined.append({"file": str(path), "reason": str(exc)})
            continue
        songs.append(song)
        targets[song.song_id] = [ratio]
    if not songs:
        raise EvaluateFolderError(f"{folder}: no file could be analysed: " + "; ".join(q["reason"] for q in quarantined))
    editors = {k: v for k, v in editors_for(cfg, policy, seed=seed).items() if k == "candidate" or k in BASELINES}
    df = evaluate_editors(songs, targets, editors, scorer(cfg, judge=True), None, progress=progress)
    summary = summarise(df, "candidate", list(BASELINES), n_boot=cfg.evaluate.n_bootstrap, seed=seed)
    summary.update(baseline_report(df, n_boot=cfg.evaluate.n_bootstrap, seed=seed))
    summary["n_files_quarantined"] = float(len(quarantined))
    items = df[["song_id", "editor", "target_ratio", "listener_total", "judge_total", "duration_error_seconds",
                "within_one_beat", "n_splices"]].to_dict(orient="records")
    report = {"folder": str(folder), "summary": summary, "items": items, "quarantined": quarantined}
    if out is not None:
        atomic_write_text(out, json.dumps(report, indent=1, default=float) + "\n")
    return report


#: what the CLI prints of the summary (the JSON report has everything)
HEADLINE = ("n_songs", "n_items", "n_files_quarantined", "win_rate_vs_search", "win_rate_vs_fade", "win_rate_vs_heuristic",
            "win_rate_vs_random", "judge_win_rate_vs_search", "judge_win_rate_vs_fade", "judge_win_rate_vs_heuristic",
            "judge_win_rate_vs_random", "listener_total", "judge_total", "within_one_beat_candidate",
            "duration_error_seconds_p95_candidate", "search_win_rate_vs_fade", "judge_listener_order_tau")
