"""Synthetic songs for the editing-world tests (editing, env, render).

``make_world_song`` returns a ``SongAnalysis`` with a consistent beat grid (optional
pickup beats, jittered beat lengths, bars of ``meter`` beats, phrases of 4 bars,
sections of 2 phrases) and random features (with a per-phrase ``rms`` level), plus a
matching source WAV written to disk: beat ``i`` is a sine at ``beat_freq(i)`` with a
click at its onset, so a chunk of rendered output can be traced to its source beat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from beatedit.editing.program import beat_sample_bounds
from beatedit.audio.schema import N_FEATURES, col
from beatedit.audio.song import SongAnalysis


def beat_freq(i: int) -> float:
    return 300.0 + 40.0 * i


def make_world_song(tmp_path: Path, meter: int = 4, n_bars: int = 16, pickup: int = 0, sr: int = 44100,
                    channels: int = 2, ibi: float = 0.25, seed: int = 0, phrase_bars: int = 4,
                    song_id: str | None = None, phrases: bool = True) -> tuple[SongAnalysis, np.ndarray]:
    """(song, source audio float32 [channels, n]); the WAV is at ``song.source_path``."""
    rng = np.random.default_rng(seed)
    n = pickup + n_bars * meter
    lead_in = 0.1
    ibis = ibi * (1.0 + rng.uniform(-0.04, 0.04, size=n))
    beat_times = lead_in + np.concatenate([[0.0], np.cumsum(ibis[:-1])])
    duration = float(beat_times[-1] + ibis[-1] + 0.15)
    bar_starts = np.arange(pickup, n, meter, dtype=np.int64)
    beat_in_bar = (np.arange(n) - pickup) % meter  # pickup beats count as the end of a bar
    phrase_starts = bar_starts[::phrase_bars] if phrases else np.zeros(0, dtype=np.int64)
    section_starts = phrase_starts[::2]
    feats = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    # loudness per phrase: distinct levels so energy-based editors have something to rank
    phrase_id = np.searchsorted(bar_starts[::phrase_bars], np.arange(n), side="right")
    level = rng.uniform(0.05, 0.6, size=phrase_id.max() + 1)
    feats[:, col("rms")] = level[phrase_id]
    feats[:, col("rms_db")] = 20 * np.log10(level[phrase_id])
    feats[:, col("local_tempo")] = 60.0 / ibis
    feats[:, col("meter")] = meter
    sid = song_id or f"world_{meter}_{channels}ch_{sr}"
    path = Path(tmp_path) / f"{sid}.wav"
    song = SongAnalysis(song_id=sid, source_path=str(path), source_hash="0" * 64, source_sr=sr, source_channels=channels,
                        duration=duration, tempo=60.0 / ibi, meter=meter, beat_times=beat_times,
                        bar_starts=bar_starts, beat_in_bar=beat_in_bar.astype(np.int64), phrase_starts=phrase_starts,
                        section_starts=section_starts, features=feats)
    song.validate()
    total = int(round(duration * sr))
    B = beat_sample_bounds(song)
    y = np.zeros((channels, total), dtype=np.float32)
    y[:, :B[0]] = 0.05 * rng.standard_normal((channels, B[0]))  # lead-in noise (never output)
    for i in range(n):
        a, b = B[i], B[i + 1]
        t = np.arange(b - a) / sr
        tone = 0.4 * np.sin(2 * np.pi * beat_freq(i) * t)
        tone[: int(0.004 * sr)] += 0.5  # click at the onset
        for c in range(channels):
            y[c, a:b] = tone * (1.0 - 0.3 * c)
    y[:, B[-1]:] = 0.05 * rng.standard_normal((channels, total - B[-1]))
    sf.write(str(path), y.T, sr, subtype="FLOAT")
    return song, y


def dominant_beat(chunk: np.ndarray, sr: int, n_beats: int) -> int:
    """The source beat whose pitch dominates a mono chunk."""
    w = chunk * np.hanning(len(chunk))
    spec = np.abs(np.fft.rfft(w))
    freqs = np.fft.rfftfreq(len(chunk), 1.0 / sr)
    f = freqs[np.argmax(spec[1:]) + 1]
    return int(np.argmin([abs(f - beat_freq(i)) for i in range(n_beats)]))
