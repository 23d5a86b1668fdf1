"""Synthetic songs for reward/listener tests: real audio + a SongAnalysis whose
loudness, timbre and harmony columns are measured from that audio (librosa), and
helpers to hand-build edits as ``output_beats`` the way ``beatedit.editing.program`` does.

Layout (default): 120 BPM, 4/4, phrases of 4 bars (16 beats), one phrase per
section: intro, verse, chorus, break (silent), verse, chorus, outro.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import librosa
import numpy as np

from beatedit.audio.schema import N_FEATURES, col
from beatedit.audio.song import SongAnalysis

SR = 22050
SECTIONS = (  # label, amplitude, chord root (MIDI), harmonics
    ("intro", 0.08, 57, 2),
    ("verse", 0.25, 60, 3),
    ("chorus", 0.6, 65, 6),
    ("break", 0.0, 60, 1),
    ("verse", 0.25, 60, 3),
    ("chorus", 0.6, 65, 6),
    ("outro", 0.12, 57, 2),
)


def synth_audio(bpm: float = 120.0, beats_per_section: int = 16, meter: int = 4, sections=SECTIONS, sr: int = SR,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Mono float32 audio, beat times (s), section start beats."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    n_beats = beats_per_section * len(sections)
    n = int(round(n_beats * beat * sr))
    t = np.arange(n) / sr
    y = np.zeros(n, dtype=np.float64)
    starts = []
    for k, (_label, amp, root, harm) in enumerate(sections):
        b0 = k * beats_per_section
        starts.append(b0)
        a, b = int(round(b0 * beat * sr)), int(round((b0 + beats_per_section) * beat * sr))
        if amp == 0:
            continue
        seg_t = t[a:b]
        tone = np.zeros(b - a)
        for interval in (0, 4, 7):  # major triad
            f0 = 440.0 * 2 ** ((root + interval - 69) / 12)
            for h in range(1, harm + 1):
                tone += np.sin(2 * np.pi * f0 * h * seg_t) / h
        tone /= np.max(np.abs(tone)) + 1e-9
        y[a:b] += amp * 0.6 * tone
        # a percussive hit on every beat, louder on downbeats
        hit_len = int(0.08 * sr)
        env = np.exp(-np.arange(hit_len) / (0.015 * sr))
        for i in range(beats_per_section):
            p = int(round((b0 + i) * beat * sr))
            g = amp * (1.0 if (b0 + i) % meter == 0 else 0.5)
            y[p:p + hit_len] += g * env * rng.standard_normal(hit_len)[: len(y[p:p + hit_len])]
    beat_times = np.arange(n_beats) * beat
    return y.astype(np.float32), beat_times, starts


def beat_features(y: np.ndarray, sr: int, beat_times: np.ndarray, meter: int) -> np.ndarray:
    """Measured loudness/timbre/harmony columns per beat (the rest stays 0 or grid-derived)."""
    n = len(beat_times)
    bounds = np.concatenate([beat_times, [beat_times[-1] + np.median(np.diff(beat_times))]])
    bs = np.minimum((bounds * sr).round().astype(int), len(y))
    f = np.zeros((n, N_FEATURES), dtype=np.float64)
    hop, n_fft = 512, 2048
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop)) ** 2  # one power spectrogram for everything
    mel128 = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=128) @ S
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel128), n_mfcc=20)
    mel = 10 * np.log10(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=24, fmin=30, fmax=8000) @ S + 1e-10)
    chroma = librosa.filters.chroma(sr=sr, n_fft=n_fft) @ S
    chroma = chroma / np.maximum(chroma.max(axis=0, keepdims=True), 1e-10)
    frames = np.minimum((bounds * sr / hop).round().astype(int), mfcc.shape[1])
    for i in range(n):
        a, b = bs[i], max(bs[i + 1], bs[i] + 1)
        seg = y[a:b].astype(np.float64)
        rms = float(np.sqrt(np.mean(seg ** 2)))
        fa, fb = frames[i], max(frames[i + 1], frames[i] + 1)
        f[i, col("mfcc_0"):col("mfcc_0") + 20] = mfcc[:, fa:fb].mean(axis=1)
        f[i, col("logmel_0"):col("logmel_0") + 24] = mel[:, fa:fb].mean(axis=1)
        f[i, col("chroma_C"):col("chroma_C") + 12] = chroma[:, fa:fb].mean(axis=1)
        f[i, col("rms")] = rms
        f[i, col("rms_db")] = max(20 * np.log10(rms + 1e-12), -80.0)
        q = np.array_split(seg, 4)
        for k in range(4):
            f[i, col(f"rms_sub_{k}")] = float(np.sqrt(np.mean(q[k] ** 2)))
        f[i, col("beat_in_bar")] = i % meter
    f[:, col("rms_delta_db")] = np.diff(f[:, col("rms_db")], prepend=f[0, col("rms_db")])
    ibi = np.diff(bounds)
    f[:, col("local_tempo")] = 60.0 / ibi
    f[:, col("beat_duration")] = ibi
    f[:, col("meter")] = meter
    return f.astype(np.float32)


@functools.lru_cache(maxsize=32)
def make_song(bpm: float = 120.0, beats_per_section: int = 16, meter: int = 4, sections=SECTIONS, sr: int = SR,
              seed: int = 0, phrases: bool = True, song_id: str = "synth") -> tuple[SongAnalysis, np.ndarray]:
    """(SongAnalysis, mono audio at ``sr``): phrases == sections (one phrase each), bars every ``meter`` beats.

    Cached: callers share the returned objects and must not modify them in place (``with_columns`` copies)."""
    y, beat_times, starts = synth_audio(bpm, beats_per_section, meter, sections, sr, seed)
    n = len(beat_times)
    feats = beat_features(y, sr, beat_times, meter)
    song = SongAnalysis(
        song_id=song_id, source_path=f"/nonexistent/{song_id}.wav", source_hash="0" * 64, source_sr=sr, source_channels=1,
        duration=len(y) / sr, tempo=bpm, meter=meter, beat_times=beat_times.astype(np.float64),
        bar_starts=np.arange(0, n, meter, dtype=np.int64), beat_in_bar=(np.arange(n) % meter).astype(np.int64),
        phrase_starts=np.array(starts if phrases else [], dtype=np.int64),
        section_starts=np.array(starts if phrases else [], dtype=np.int64), features=feats,
    )
    song.validate()
    return song, y


def with_columns(song: SongAnalysis, **columns) -> SongAnalysis:
    """A copy of ``song`` with feature columns replaced: ``with_columns(s, local_tempo=array)``."""
    f = song.features.copy()
    for name, values in columns.items():
        f[:, col(name)] = values
    return replace(song, features=f)


def runs(*spans: tuple[int, int], fade_out_last: int = 0) -> list[tuple[int, float, float]]:
    """output_beats for source spans [a, b) laid end to end (gain 1); the last ``fade_out_last`` beats ramp to 0."""
    out = [(i, 1.0, 1.0) for a, b in spans for i in range(a, b)]
    if fade_out_last:
        k = len(out) - fade_out_last
        g = np.linspace(1.0, 0.0, fade_out_last + 1)
        out[k:] = [(s, float(g[j]), float(g[j + 1])) for j, (s, _, _) in enumerate(out[k:])]
    return out


def write_outside_song(path, seed: int):
    """A 25-35 s stereo 44.1 kHz generated song with a seed the corpus does not use (a song "outside the corpus")."""
    import soundfile as sf

    from beatedit.config import CorpusConfig
    from beatedit.corpus.generator import generate_song

    g = generate_song(0, CorpusConfig(n_songs=1, min_seconds=25.0, max_seconds=35.0, sample_rate=44100, seed=seed))
    mono = g.mix.astype(np.float32) / 32768.0
    sf.write(path, np.stack([mono, 0.8 * mono], axis=1), g.sample_rate)
    return path
