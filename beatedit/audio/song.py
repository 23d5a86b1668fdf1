"""One song's analysis: the beat grid, structure and beat features, as stored on disk.

This is the contract between the features stage and everything downstream (env,
rewards, listener, reward model, policy). One ``.npz`` file per song; the schema
version is stored in it and checked on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from beatedit.atomic import atomic_path
from beatedit.audio.schema import N_FEATURES, SCHEMA_VERSION, check_schema

_ARRAYS = ("beat_times", "bar_starts", "beat_in_bar", "phrase_starts", "section_starts", "features")


class SongFileError(ValueError):
    """A feature file is missing, unreadable or inconsistent."""


#: ``extra`` keys that differ between two runs on the same input (wall-clock timings): kept in memory for benches and
#: reports, never written, so a features file is byte-identical across re-runs and DVC does not see a change.
VOLATILE_EXTRA: frozenset[str] = frozenset({"timings_s"})


@dataclass
class SongAnalysis:
    song_id: str
    source_path: str  # the original audio file: the reference for rendering
    source_hash: str  # sha256 of the source file's bytes
    source_sr: int
    source_channels: int
    duration: float  # seconds
    tempo: float  # global tempo, BPM
    meter: int  # beats per bar
    beat_times: np.ndarray  # float64 [n_beats], seconds, strictly increasing
    bar_starts: np.ndarray  # int64, beat indices of downbeats, increasing
    beat_in_bar: np.ndarray  # int64 [n_beats], 0..meter-1
    phrase_starts: np.ndarray  # int64, beat indices where phrases start (subset of bar_starts)
    section_starts: np.ndarray  # int64, beat indices where sections start (subset of phrase_starts)
    features: np.ndarray  # float32 [n_beats, N_FEATURES]
    schema_version: str = SCHEMA_VERSION
    stems_backend: str = "hpss"
    extra: dict = field(default_factory=dict)  # JSON-serialisable provenance

    @property
    def n_beats(self) -> int:
        return int(len(self.beat_times))

    @property
    def beat_bounds(self) -> np.ndarray:
        """float64 [n_beats + 1]: beat i spans [bounds[i], bounds[i+1]) seconds.

        The first beat starts at 0 and the last one ends at the end of the file: an edit that
        keeps the song's start keeps any pickup or sound before the first detected beat, and one
        that keeps its ending keeps the natural decay after the last beat (the real start and
        ending are what editors keep; arXiv 2305.07347, fitting tools' "keep the real ending")."""
        bt = self.beat_times
        return np.concatenate([[0.0], bt[1:], [max(float(self.duration), float(bt[-1]) + 1e-3)]])

    def validate(self, where: str = "<memory>") -> None:
        check_schema(self.schema_version, where)
        n = self.n_beats
        if n < 2:
            raise SongFileError(f"{where}: only {n} beats")
        if self.features.shape != (n, N_FEATURES) or self.features.dtype != np.float32:
            raise SongFileError(f"{where}: features have shape {self.features.shape} {self.features.dtype}, expected ({n}, {N_FEATURES}) float32")
        if not np.all(np.isfinite(self.features)):
            raise SongFileError(f"{where}: features hold NaN or inf")
        if np.any(np.diff(self.beat_times) <= 0):
            raise SongFileError(f"{where}: beat times are not strictly increasing")
        for name in ("bar_starts", "phrase_starts", "section_starts"):
            idx = getattr(self, name)
            if len(idx) and (idx.min() < 0 or idx.max() >= n or np.any(np.diff(idx) <= 0)):
                raise SongFileError(f"{where}: {name} are not increasing beat indices in [0, {n})")
        if self.beat_in_bar.shape != (n,):
            raise SongFileError(f"{where}: beat_in_bar has shape {self.beat_in_bar.shape}, expected ({n},)")

    def save(self, path: str | Path) -> None:
        self.validate(str(path))
        meta = {k: getattr(self, k) for k in ("song_id", "source_path", "source_hash", "source_sr", "source_channels",
                                              "duration", "tempo", "meter", "schema_version", "stems_backend")}
        meta["extra"] = {k: v for k, v in self.extra.items() if k not in VOLATILE_EXTRA}
        with atomic_path(path) as tmp:  # the temporary keeps the .npz suffix, so savez writes exactly there
            np.savez_compressed(tmp, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8),
                                **{k: getattr(self, k) for k in _ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> "SongAnalysis":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arrays = {k: z[k] for k in _ARRAYS}
        except FileNotFoundError:
            raise SongFileError(f"{path}: feature file not found") from None
        except Exception as exc:  # corrupt zip, missing key, bad JSON
            raise SongFileError(f"{path}: unreadable feature file ({exc})") from exc
        check_schema(meta.get("schema_version", "<none>"), str(path))
        song = cls(**meta, **arrays)
        song.validate(str(path))
        return song
