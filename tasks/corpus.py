"""Corpus stage tasks: generate the default corpus, or index a user's own folder."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger, task

from beatedit.atomic import atomic_write_text
from beatedit.audio.io import AUDIO_EXTENSIONS
from beatedit.config import Config, ConfigError
from beatedit.corpus.generator import HARD_TRAITS, generate_corpus
from beatedit.paths import StagePaths
from tasks import tracking


@task(name="generate-corpus")
def generate_corpus_task(cfg: Config) -> list[dict]:
    out = StagePaths.from_config(cfg).corpus_dir
    manifest = generate_corpus(cfg.data.corpus, out)
    get_run_logger().info("generated %d songs (%.0f s of audio) into %s", len(manifest), sum(m["duration"] for m in manifest), out)
    return manifest


@task(name="index-user-folder")
def index_user_folder_task(cfg: Config) -> list[dict]:
    """A user's folder: list every file (the stems stage quarantines what it cannot decode)."""
    folder = Path(cfg.data.audio_dir)
    if not folder.is_dir():
        raise ConfigError(f"params.yaml: data.audio_dir {str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"params.yaml: data.audio_dir {str(folder)!r} holds no files")
    manifest = [{"song_id": p.stem, "path": str(p), "audio_extension": p.suffix.lower() in AUDIO_EXTENSIONS, "has_truth": False} for p in files]
    paths = StagePaths.from_config(cfg)
    paths.corpus_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths.corpus_manifest, json.dumps(manifest, indent=1))
    get_run_logger().info("indexed %d files in %s (no ground truth: beat metrics will be skipped)", len(files), folder)
    return manifest


@task(name="corpus-metrics")
def corpus_metrics_task(cfg: Config, manifest: list[dict], generated: bool) -> dict:
    metrics = {"songs": len(manifest), "generated": generated}
    if generated:
        metrics.update(
            total_seconds=round(sum(m["duration"] for m in manifest), 3),
            min_seconds=round(min(m["duration"] for m in manifest), 3),
            max_seconds=round(max(m["duration"] for m in manifest), 3),
            min_tempo=min(m["tempo"] for m in manifest),
            max_tempo=max(m["tempo"] for m in manifest),
            songs_in_3_4=sum(1 for m in manifest if m["time_signature"] == "3/4"),
            hard_songs=sum(1 for m in manifest if m["traits"]),  # hard_<trait>: hard songs with that trait
            **{f"hard_{t}": sum(1 for m in manifest if t in m["traits"]) for t in HARD_TRAITS},
        )
    paths = StagePaths.from_config(cfg)
    tracking.write_metrics(paths.metrics("corpus"), metrics)
    tracking.log_file(paths.corpus_manifest)
    return metrics
