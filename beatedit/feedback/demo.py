"""A tiny render folder for trying the page and for tests: sine-tone "songs", two edits each,
written as ``X.wav`` + ``X.edl.json`` (the ``write_edit`` layout) plus ``pairs.json``.

``python -m beatedit.feedback demo DIR`` writes one; then ``feedback serve --renders DIR``.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from beatedit.editing.actions import N_ACTIONS
from beatedit.editing.edl import EDL, Segment

from .queue import pair_from_renders, write_pair_manifest


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    pcm = (np.clip(y, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def build_demo_renders(render_dir: str | Path, n_songs: int = 3, *, pairs_per_song: int = 2, seconds: float = 1.0, sr: int = 16_000,
                       n_beats: int = 8, seed: int = 0) -> list[dict]:
    """Write ``n_songs * pairs_per_song`` pairs (distinct pair ids, reward margins spread over
    [0, 1)) into ``render_dir``; returns the manifest records."""
    root = Path(render_dir).resolve()  # absolute: pair_from_renders resolves the wav paths against it
    rng = np.random.default_rng(seed)
    records = []
    for s in range(n_songs):
        song = f"song_{s:03d}"
        d = root / song
        d.mkdir(parents=True, exist_ok=True)
        src_n = int(sr * seconds * 2)
        for p in range(pairs_per_song):
            wavs = []
            for side, f0 in (("a", 330.0 + 40 * s), ("b", 440.0 + 40 * s)):
                n = int(sr * seconds)
                t = np.arange(n) / sr
                y = 0.3 * np.sin(2 * np.pi * (f0 + 10 * p) * t) * np.minimum(1.0, np.minimum(t, t[::-1]) * 50)
                wav = d / f"pair{p}_{side}.wav"
                _write_wav(wav, y.astype(np.float32), sr)
                start = 0 if side == "a" else src_n - n
                edl = EDL(source_path=f"data/audio/{song}.wav", source_sr=sr, source_channels=1, source_samples=src_n,
                          segments=[Segment(start, start + n, beat_start=0, beat_end=n_beats)], song_id=song, target_ratio=0.5,
                          meta={"demo": True})
                edl.validate().save(wav.with_suffix(".edl.json"))
                wavs.append(wav)
            acts = [rng.integers(0, N_ACTIONS, n_beats).tolist() for _ in range(2)]
            records.append(pair_from_renders(root, wavs[0], wavs[1], actions_a=acts[0], actions_b=acts[1], kind_a="champion", kind_b="challenger",
                                             model_a="models:/beatedit-policy@champion", model_b="models:/beatedit-policy@challenger",
                                             reward_margin=float(rng.random()), pair_id=f"{song}-p{p}"))
    write_pair_manifest(root, records)
    return records
