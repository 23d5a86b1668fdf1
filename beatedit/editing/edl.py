"""Edit decision list: the one object the env builds and the renderer consumes.

An EDL is an ordered list of source segments. Output audio is the segments laid end
to end; at every splice between two segments an equal-power crossfade *centred on
the splice* blends them (the renderer reads ``crossfade/2`` samples of source
material beyond each side, clipped to the song). So the rendered length is exactly
``sum(end_sample - start_sample)`` and every splice lands exactly where the EDL says.

Gains are linear amplitude, interpolated linearly from ``gain_start`` to ``gain_end``
across a segment (fades). Segments may repeat source material (loops); what is
rejected is a segment outside the song, an empty or negative one, a crossfade longer
than either neighbour, or non-finite gains.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from beatedit.atomic import atomic_write_text

EDL_VERSION = "edl-v1"


class EDLError(ValueError):
    """An EDL that cannot be rendered as written."""


@dataclass(frozen=True)
class Segment:
    start_sample: int  # at the source's sample rate, inclusive
    end_sample: int  # exclusive
    gain_start: float = 1.0
    gain_end: float = 1.0
    crossfade_samples: int = 0  # crossfade into this segment from the previous one (0 for the first)
    beat_start: int = -1  # source beat index of the first beat, -1 if unknown
    beat_end: int = -1  # source beat index one past the last beat

    @property
    def length(self) -> int:
        return self.end_sample - self.start_sample


@dataclass
class EDL:
    source_path: str
    source_sr: int
    source_channels: int
    source_samples: int  # length of the source in samples
    segments: list[Segment]
    song_id: str = ""
    target_ratio: float | None = None
    meta: dict = field(default_factory=dict)
    version: str = EDL_VERSION

    # --- derived -------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return sum(s.length for s in self.segments)

    @property
    def duration(self) -> float:
        return self.n_samples / self.source_sr

    @property
    def source_duration(self) -> float:
        return self.source_samples / self.source_sr

    def splice_positions(self) -> list[int]:
        """Output sample index of every splice (a segment boundary that is not contiguous in the source)."""
        out, pos = [], 0
        for prev, seg in zip(self.segments, self.segments[1:]):
            pos += prev.length
            if seg.start_sample != prev.end_sample:
                out.append(pos)
        return out

    # --- checks ----------------------------------------------------------------
    def validate(self) -> "EDL":
        where = f"EDL for {self.song_id or self.source_path}"
        if self.version != EDL_VERSION:
            raise EDLError(f"{where}: version {self.version!r}, this code reads {EDL_VERSION!r}")
        if self.source_sr <= 0 or self.source_channels <= 0 or self.source_samples <= 0:
            raise EDLError(f"{where}: bad source description (sr={self.source_sr}, channels={self.source_channels}, samples={self.source_samples})")
        if not self.segments:
            raise EDLError(f"{where}: no segments")
        for k, s in enumerate(self.segments):
            if s.end_sample <= s.start_sample:
                raise EDLError(f"{where}: segment {k} has non-positive length ({s.start_sample}..{s.end_sample})")
            if s.start_sample < 0 or s.end_sample > self.source_samples:
                raise EDLError(f"{where}: segment {k} ({s.start_sample}..{s.end_sample}) lies outside the song (0..{self.source_samples})")
            if not (math.isfinite(s.gain_start) and math.isfinite(s.gain_end)) or s.gain_start < 0 or s.gain_end < 0:
                raise EDLError(f"{where}: segment {k} has invalid gains ({s.gain_start}, {s.gain_end})")
            if s.crossfade_samples < 0:
                raise EDLError(f"{where}: segment {k} has a negative crossfade")
            if k == 0 and s.crossfade_samples:
                raise EDLError(f"{where}: the first segment cannot crossfade from a previous one")
            if k > 0:
                prev = self.segments[k - 1]
                if s.crossfade_samples > min(prev.length, s.length):
                    raise EDLError(f"{where}: crossfade into segment {k} ({s.crossfade_samples} samples) overlaps beyond its neighbours")
        return self

    # --- io ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["segments"] = [asdict(s) for s in self.segments]
        d["duration_seconds"] = self.duration
        for s, sd in zip(self.segments, d["segments"]):
            sd["start_seconds"] = s.start_sample / self.source_sr
            sd["end_seconds"] = s.end_sample / self.source_sr
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "EDL":
        d = dict(d)
        d.pop("duration_seconds", None)
        try:
            segs = [Segment(**{k: v for k, v in s.items() if k not in ("start_seconds", "end_seconds")}) for s in d.pop("segments")]
            return cls(segments=segs, **d).validate()
        except (TypeError, KeyError) as exc:
            raise EDLError(f"malformed EDL: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "EDL":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EDLError(f"EDL is not valid JSON: {exc}") from exc

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> "EDL":
        try:
            return cls.from_json(Path(path).read_text())
        except EDLError as exc:
            raise EDLError(f"{path}: {exc}") from exc
