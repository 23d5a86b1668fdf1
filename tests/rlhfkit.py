"""Synthetic songs for the RLHF tests (policy, PPO, DPO): fast, no audio.

``rl_song`` builds a ``SongAnalysis`` with a consistent beat grid (bars of ``meter``
beats, phrases of 4 bars, sections of 2 phrases, slightly jittered beat lengths) and
random features whose loudness columns follow a per-phrase level (so the heuristic
editor, the dense reward and the listener have structure to work with).
"""

from __future__ import annotations

import numpy as np

from beatedit.audio.schema import N_FEATURES, col
from beatedit.audio.song import SongAnalysis


def rl_song(seed: int = 0, n_bars: int = 24, meter: int = 4, ibi: float = 0.5, phrase_bars: int = 4,
            song_id: str | None = None) -> SongAnalysis:
    rng = np.random.default_rng(seed)
    n = n_bars * meter
    ibis = ibi * (1.0 + rng.uniform(-0.02, 0.02, size=n))
    beat_times = 0.05 + np.concatenate([[0.0], np.cumsum(ibis[:-1])])
    duration = float(beat_times[-1] + ibis[-1] + 0.05)
    bar_starts = np.arange(0, n, meter, dtype=np.int64)
    phrase_starts = bar_starts[::phrase_bars]
    phrase_id = np.searchsorted(phrase_starts, np.arange(n), side="right") - 1
    level = rng.uniform(0.05, 0.6, size=phrase_id.max() + 1)
    feats = (0.5 * rng.standard_normal((n, N_FEATURES))).astype(np.float32)
    feats[:, col("rms")] = level[phrase_id]
    feats[:, col("rms_max")] = level[phrase_id] * 1.2
    feats[:, col("rms_db")] = 20 * np.log10(level[phrase_id])
    for k in range(4):
        feats[:, col(f"rms_sub_{k}")] = level[phrase_id]
    feats[:, col("local_tempo")] = 60.0 / ibis
    feats[:, col("beat_duration")] = ibis
    feats[:, col("meter")] = meter
    feats[:, col("beat_in_bar")] = np.arange(n) % meter
    feats[:, col("is_downbeat")] = (np.arange(n) % meter) == 0
    sid = song_id or f"rl_{seed}"
    song = SongAnalysis(song_id=sid, source_path=f"/nonexistent/{sid}.wav", source_hash="0" * 64, source_sr=22050,
                        source_channels=1, duration=duration, tempo=60.0 / ibi, meter=meter,
                        beat_times=beat_times.astype(np.float64), bar_starts=bar_starts,
                        beat_in_bar=(np.arange(n) % meter).astype(np.int64), phrase_starts=phrase_starts,
                        section_starts=phrase_starts[::2].copy(), features=feats)
    song.validate()
    return song
