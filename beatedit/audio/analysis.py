"""The per-song entry point of the front end: audio file -> ``SongAnalysis``.

Runs load (checked) -> stems (cached) -> frame analysis -> beat grid -> features, sharing
one ``FrameAnalysis`` between beat tracking and the features, and records per-step timings.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from beatedit.audio.beats import track_beats
from beatedit.audio.features import extract_features
from beatedit.audio.frames import analyse_frames
from beatedit.audio.io import AudioError, audio_info, file_sha256, load_mono
from beatedit.audio.song import SongAnalysis
from beatedit.audio.stems import StemCache
from beatedit.config import Config
from beatedit.progress import phase


def analyse_song(path: str | Path, cfg: Config, cache: StemCache) -> SongAnalysis:
    """Load (checked), stems (cached), frames, beat grid, features -> SongAnalysis.

    Raises ``AudioError`` (reason ``too_short`` when fewer than ``audio.min_beats`` beats are found).
    """
    path = Path(path)
    timings = {}
    t0 = time.perf_counter()
    phase("load")
    sr = cfg.audio.analysis_sr
    src_sr, channels, _ = audio_info(path)
    sha = file_sha256(path)
    y = load_mono(path, sr, max_seconds=cfg.audio.max_seconds, silence_dbfs=cfg.audio.silence_dbfs)
    timings["load"] = time.perf_counter() - t0
    duration = len(y) / sr
    min_seconds = 2.0
    if duration < min_seconds:
        raise AudioError(path, "too_short", f"{duration:.2f} s of audio is too short to track {cfg.audio.min_beats} beats")
    t = time.perf_counter()
    phase("stems")
    stems, hit = cache.get_or_compute(path, cfg.stems, sr, y=y, audio_sha256=sha, dtype=np.float16)  # float16: memory
    timings["stems"] = time.perf_counter() - t
    t = time.perf_counter()
    phase("frames")
    fa = analyse_frames(y, sr, stems, cfg.features)
    timings["frames"] = time.perf_counter() - t
    t = time.perf_counter()
    phase("beats")
    grid = track_beats(y, sr, stems, cfg.features, frames=fa)
    timings["beats"] = time.perf_counter() - t
    if len(grid.beat_times) < cfg.audio.min_beats:
        raise AudioError(path, "too_short", f"only {len(grid.beat_times)} beats found in {duration:.1f} s "
                                            f"(audio.min_beats = {cfg.audio.min_beats})")
    t = time.perf_counter()
    phase("features")
    feats = extract_features(y, sr, stems, grid, cfg.features, frames=fa)
    timings["features"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    song = SongAnalysis(
        song_id=path.stem, source_path=str(path), source_hash=sha, source_sr=int(src_sr), source_channels=int(channels),
        duration=float(duration), tempo=float(grid.tempo), meter=int(grid.meter),
        beat_times=np.asarray(grid.beat_times, dtype=np.float64), bar_starts=np.asarray(grid.bar_starts, dtype=np.int64),
        beat_in_bar=np.asarray(grid.beat_in_bar, dtype=np.int64), phrase_starts=np.asarray(grid.phrase_starts, dtype=np.int64),
        section_starts=np.asarray(grid.section_starts, dtype=np.int64), features=feats, stems_backend=cfg.stems.backend,
        extra={"analysis_sr": sr, "stems_cache_hit": bool(hit), "stems_key": cache.key(sha, cfg.stems, sr),
               "phrase_bars": int(grid.phrase_bars), "timings_s": {k: round(v, 4) for k, v in timings.items()},
               "beat_tracking": {k: v for k, v in grid.diagnostics.items() if k != "section_novelty_z"}},
    )
    song.validate(str(path))
    return song
