"""Preferences stage tasks: candidate edits per song, listener-labelled pairs, merged with human votes."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_path
from beatedit.audio.io import load_mono
from beatedit.config import Config
from beatedit.paths import StagePaths
from beatedit.quarantine import QuarantineEntry, summary_line, write_report
from beatedit.audio.song import SongAnalysis
from tasks import tracking
from tasks.resilience import IO_RETRY, SONG_PAIRS_CACHE, song_deadline


def feature_files(cfg: Config) -> list[Path]:
    """The features stage's song files, in song-id order."""
    paths = StagePaths.from_config(cfg)
    index = pd.read_parquet(paths.features_index)
    return [paths.feature_file(sid) for sid in sorted(index["song_id"])]


@task(name="song-pairs", **SONG_PAIRS_CACHE)
def song_pairs_task(path: Path, cfg: Config) -> dict:
    """Candidate edits of one song and their labelled pairs (the listener renders each edit to judge seams)."""
    from beatedit.preferences.pairs import song_pairs

    start = time.perf_counter()
    try:
        with song_deadline(cfg):
            song = SongAnalysis.load(path)
            audio = load_mono(song.source_path, cfg.audio.analysis_sr)
            rows = song_pairs(song, audio, cfg.audio.analysis_sr, cfg)
            return {"song_id": song.song_id, "rows": rows, "seconds": time.perf_counter() - start}
    except Exception as exc:  # one bad song never stops the others
        get_run_logger().warning("quarantined %s: %s", path, exc)
        return {"song_id": path.stem, "quarantine": QuarantineEntry(str(path), getattr(exc, "reason", "error"), str(exc), "preferences")}


@task(name="merge-pairs", **IO_RETRY)
def merge_pairs_task(results: list[dict], cfg: Config) -> dict:
    from beatedit.preferences.pairs import drop_human_rows_without_features, merge_pairs, preference_metrics

    ok = [r for r in results if "quarantine" not in r]
    bad = [r["quarantine"] for r in results if "quarantine" in r]
    paths = StagePaths.from_config(cfg)
    out = paths.pairs_table
    report = write_report(paths.quarantine_report(paths.preferences_dir), "preferences", bad, len(results))
    get_run_logger().info(summary_line(report))
    human = cfg.preferences.human_votes_path
    df = merge_pairs([r["rows"] for r in ok], human, cfg)
    df, unusable = drop_human_rows_without_features(df, lambda song_id: paths.song_file(song_id).exists())
    if unusable:
        get_run_logger().warning("%d human pair(s) left out: their song has no beat features (neither a features-stage song "
                                 "nor an upload analysis in %s; re-export the votes with `beatedit feedback export`)",
                                 unusable, paths.human_analyses)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
    own = df[df["source"] != "human"]  # the pipeline's songs: uploads and human splits never move a song's split
    splits = own.drop_duplicates("song_id")[["song_id", "split"]].sort_values("song_id")
    with atomic_path(paths.splits_table) as tmp:
        splits.to_csv(tmp, index=False)
    metrics = {**preference_metrics(df), "quarantined": len(bad), "human_votes_file": bool(human and Path(human).exists()),
               "human_pairs_without_features": unusable,
               "seconds": round(sum(r["seconds"] for r in ok), 2)}
    tracking.write_metrics(paths.metrics("preferences"), metrics)
    tracking.log_file(paths.splits_table)
    get_run_logger().info("%d pairs over %d songs -> %s", len(df), df["song_id"].nunique(), out)
    return metrics
