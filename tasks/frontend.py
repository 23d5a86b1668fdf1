"""Stems and features stage tasks: per-song work that quarantines bad songs instead of failing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_path
from beatedit.audio.io import AudioError, load_mono
from beatedit.config import Config
from beatedit.paths import StagePaths
from beatedit.quarantine import QuarantineEntry, summary_line, write_report
from beatedit.audio.song import SongAnalysis
from beatedit.audio.stems import StemCache
from beatedit.audio.truth import TRUTH_STEM_MAP
from tasks import tracking
from tasks.resilience import IO_RETRY, SongTimeout, song_deadline


def song_files(cfg: Config) -> list[Path]:
    """The songs the corpus stage listed (generated or the user's folder), in a stable order."""
    manifest = json.loads(StagePaths.from_config(cfg).corpus_manifest.read_text())
    return [Path(m["path"]) for m in manifest]


def truth_path(cfg: Config, song_id: str) -> Path | None:
    p = StagePaths.from_config(cfg).corpus_truth / f"{song_id}.json"
    return p if p.exists() else None


def _quarantine(path: Path, exc: Exception, stage: str) -> dict:
    reason = exc.reason if isinstance(exc, (AudioError, SongTimeout)) else "error"
    return {"song_id": path.stem, "path": str(path), "quarantine": QuarantineEntry(str(path), reason, str(exc), stage)}


@task(name="separate-stems")
def separate_song_task(path: Path, cfg: Config) -> dict:
    """Stems for one song from the content-addressed cache (computed on a miss) + SDR against truth."""
    start = time.perf_counter()
    try:
        with song_deadline(cfg):
            cache = StemCache(Path(cfg.stems.cache_dir))
            stems, hit = cache.get_or_compute(path, cfg.stems, cfg.audio.analysis_sr)
            out = {"song_id": path.stem, "path": str(path), "cache_hit": hit, "seconds": time.perf_counter() - start}
            truth = truth_path(cfg, path.stem)
            if truth is not None:
                from beatedit.audio.truth import corpus_stem_sdr

                out["sdr"] = corpus_stem_sdr(stems, StagePaths.from_config(cfg).corpus_stems / path.stem, cfg.audio.analysis_sr)
            out["audio_seconds"] = len(next(iter(stems.values()))) / cfg.audio.analysis_sr
            return out
    except Exception as exc:  # one bad song never stops the others
        get_run_logger().warning("quarantined %s: %s", path, exc)
        return _quarantine(path, exc, "stems")


@task(name="analyse-song")
def analyse_song_task(path: Path, cfg: Config) -> dict:
    """Beats, downbeats, phrases, sections and the 125-dim features of one song -> features.out_dir/<id>.npz."""
    from beatedit.audio.analysis import analyse_song

    start = time.perf_counter()
    try:
        with song_deadline(cfg):
            song = analyse_song(path, cfg, StemCache(Path(cfg.stems.cache_dir)))
            song.save(StagePaths.from_config(cfg).feature_file(song.song_id))
            row = {"song_id": song.song_id, "path": str(path), "n_beats": song.n_beats, "tempo": song.tempo, "meter": song.meter,
                   "duration": song.duration, "n_bars": len(song.bar_starts), "n_phrases": len(song.phrase_starts),
                   "n_sections": len(song.section_starts), "source_hash": song.source_hash, "schema_version": song.schema_version,
                   "stems_backend": song.stems_backend, "seconds": time.perf_counter() - start}
            truth = truth_path(cfg, song.song_id)
            if truth is not None:
                from beatedit.audio.truth import song_beat_metrics

                row.update(song_beat_metrics(song, json.loads(truth.read_text())))
            return row
    except Exception as exc:
        get_run_logger().warning("quarantined %s: %s", path, exc)
        return _quarantine(path, exc, "features")


def split_results(results: list[dict]) -> tuple[list[dict], list[QuarantineEntry]]:
    ok = [r for r in results if "quarantine" not in r]
    bad = [r["quarantine"] for r in results if "quarantine" in r]
    return ok, bad


@task(name="stems-report", **IO_RETRY)
def stems_report_task(results: list[dict], cfg: Config) -> dict:
    ok, bad = split_results(results)
    paths = StagePaths.from_config(cfg)
    report = write_report(paths.quarantine_report(paths.stems_dir), "stems", bad, len(results))
    get_run_logger().info(summary_line(report))
    metrics: dict = {"songs": len(ok), "quarantined": len(bad), "backend": cfg.stems.backend,
                     "cache_hits": sum(r["cache_hit"] for r in ok),
                     "audio_seconds": round(sum(r["audio_seconds"] for r in ok), 2),
                     "seconds": round(sum(r["seconds"] for r in ok), 2)}
    sdrs = [r["sdr"] for r in ok if "sdr" in r]
    if sdrs:
        for stem in TRUTH_STEM_MAP:  # over the songs where the stem is not silent (no_drums songs have no drums SDR)
            vals = [s[stem] for s in sdrs if stem in s]
            if vals:
                metrics[f"sdr_{stem}"] = round(float(np.mean(vals)), 3)
    tracking.write_metrics(paths.metrics("stems"), metrics)
    tracking.log_json(report, "quarantine/stems.json")
    return metrics


REALMUSIC_COLUMNS = ["piece", "group", "meter", "est_meter", "bpm", "est_tempo", "beat_f_measure", "downbeat_f_measure", "meter_accuracy",
                     "amlt", "librosa_beat_f_measure", "librosa_amlt"]  # the per-piece rows of beatedit.corpus.realmusic.evaluate_validation


def write_realmusic_placeholder(paths: StagePaths, reason: str) -> None:
    """The real-music plot files are declared outputs of the features stage: when the check does not run
    (``features.realmusic_check: false``, or no synthesiser) they still exist, empty, saying why."""
    import matplotlib.pyplot as plt

    plot_dir = paths.plots("features")
    plot_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(plot_dir / "realmusic.csv") as tmp:
        pd.DataFrame(columns=REALMUSIC_COLUMNS).to_csv(tmp, index=False)
    fig, ax = plt.subplots(figsize=(6.0, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, f"real-music check not run: {reason}", ha="center", va="center", wrap=True)
    with atomic_path(plot_dir / "realmusic_beat_f.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def realmusic_check(cfg: Config, paths: StagePaths) -> dict:
    """Render (cached) + track the real-music validation set; realmusic_* metrics, per-piece rows + scatter plot."""
    import mlflow

    from beatedit.corpus.realmusic import (VALIDATION_PIECES, RealMusicUnavailable, build_real_music, evaluate_validation,
                                           summarise_validation)
    from beatedit.plots import realmusic_scatter_figure

    log = get_run_logger()
    failures: list = []
    try:
        songs = build_real_music(paths.realmusic_dir, VALIDATION_PIECES, sr=cfg.audio.analysis_sr, failures=failures)
    except RealMusicUnavailable as exc:
        log.warning(f"real-music check skipped: {exc}")
        write_realmusic_placeholder(paths, str(exc))
        return {"realmusic_pieces": 0}
    for f in failures:
        log.warning(f"real-music piece {f.piece} not rendered: {f.error}")
    groups = {p.name: p.group for p in VALIDATION_PIECES}
    rows, tim = evaluate_validation(songs, groups, cfg, paths.realmusic_dir / "stems",
                                    progress=lambda i, n, r: log.info(f"real music {i}/{n} {r['piece']}: beat F {r['beat_f_measure']}"
                                                                      f" (librosa {r['librosa_beat_f_measure']})"))
    out = summarise_validation(rows)
    out["realmusic_render_failures"] = len(failures)
    out["realmusic_x_realtime"] = round(tim["audio_s"] / max(tim["ours_s"], 1e-9), 1)
    out["realmusic_librosa_x_realtime"] = round(tim["audio_s"] / max(tim["librosa_s"], 1e-9), 1)
    plot_dir = paths.plots("features")
    plot_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(plot_dir / "realmusic.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    fig = realmusic_scatter_figure(rows)
    fig.savefig(plot_dir / "realmusic_beat_f.png", dpi=110)
    tracking.log_figure(fig, "plots/realmusic_beat_f.png")
    tracking.log_file(plot_dir / "realmusic.csv")
    mlflow.log_metrics({k: float(v) for k, v in out.items() if isinstance(v, (int, float))})
    return out


@task(name="features-report", **IO_RETRY)
def features_report_task(results: list[dict], cfg: Config) -> dict:
    import mlflow

    from beatedit.plots import beat_grid_figure

    ok, bad = split_results(results)
    paths = StagePaths.from_config(cfg)
    report = write_report(paths.quarantine_report(paths.features_dir), "features", bad, len(results))
    get_run_logger().info(summary_line(report))
    index = pd.DataFrame(ok).sort_values("song_id").reset_index(drop=True) if ok else pd.DataFrame(columns=["song_id"])
    with atomic_path(paths.features_index) as tmp:
        index.drop(columns=["seconds"], errors="ignore").to_parquet(tmp, index=False)
    metrics: dict = {"songs": len(ok), "quarantined": len(bad), "beats": int(index["n_beats"].sum()) if ok else 0,
                     "seconds": round(float(index["seconds"].sum()), 2) if ok else 0.0}
    for key in ("beat_f_measure", "downbeat_f_measure", "phrase_f_measure", "section_f_measure", "meter_accuracy", "tempo_accuracy"):
        if ok and key in index:
            metrics[key] = round(float(index[key].mean()), 4)
            metrics[f"{key}_min"] = round(float(index[key].min()), 4)
    if cfg.features.realmusic_check:
        metrics.update(realmusic_check(cfg, paths))
    else:
        write_realmusic_placeholder(paths, "features.realmusic_check is false")
    tracking.write_metrics(paths.metrics("features"), metrics)
    tracking.log_json(report, "quarantine/features.json")
    tracking.log_file(paths.features_index)
    if ok:
        feats = np.concatenate([SongAnalysis.load(paths.feature_file(sid)).features for sid in index["song_id"]])
        from beatedit.audio.schema import COLUMN_NAMES

        stats = {name: {"mean": float(m), "std": float(s), "min": float(lo), "max": float(hi)}
                 for name, m, s, lo, hi in zip(COLUMN_NAMES, feats.mean(0), feats.std(0), feats.min(0), feats.max(0))}
        tracking.log_json(stats, "feature_stats.json")
        mlflow.log_metrics({"constant_feature_columns": float(sum(v["std"] == 0 for v in stats.values()))})
        first = SongAnalysis.load(paths.feature_file(index["song_id"][0]))
        y = load_mono(first.source_path, cfg.audio.analysis_sr)
        fig = beat_grid_figure(y, cfg.audio.analysis_sr, first)
        tracking.log_figure(fig, f"plots/beat_grid_{first.song_id}.png")
        paths.plots("features").mkdir(parents=True, exist_ok=True)
        fig.savefig(paths.plots("features") / "beat_grid.png", dpi=110)
    return metrics
