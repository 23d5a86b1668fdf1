"""``cues.json``: where the beats, bars, sections and seams of an edit fall, in OUTPUT time.

Written beside the EDL by ``beatedit edit`` (``edit.cues.json``) for a video editor or a DAW
to snap to. Every time is in seconds of the written WAV (after ``--exact``'s time-stretch,
whose factor is ``time_scale``: output seconds per unstretched second) and comes with the
source time it plays. Schema ``cues-v1`` (``CUES_VERSION``):

* ``beats``: every analysed beat that the edit plays, in output order: ``{time, source_time,
  source_beat}`` (a looped beat appears once per time it plays; a beat whose onset was cut
  away, i.e. not inside any segment, does not appear).
* ``bars`` / ``sections``: the same records for the beats that start a bar / a section
  (``SongAnalysis.bar_starts`` / ``section_starts``).
* ``seams``: every splice, i.e. every segment that does not continue its predecessor in the
  source (the renderer's definition): ``{time, sample, source_out, source_in, crossfade_seconds}``
  where ``sample`` is the splice's output sample before the stretch and ``time`` its output time.
* ``segments``: the mapping to source time, one per EDL segment: ``{output_start, output_end,
  source_start, source_end, gain_start, gain_end}``; within a segment ``source = source_start +
  (output - output_start) / time_scale``.
* ``duration`` (the WAV's length), ``source_duration``, ``sample_rate``, ``time_scale``, ``source``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from beatedit.audio.song import SongAnalysis
from beatedit.editing.edl import EDL

CUES_VERSION = "cues-v1"


def splice_samples(edl: EDL) -> list[int]:
    """Output sample (before any stretch) of every splice: a segment that does not continue its predecessor."""
    out, pos = [], 0
    for k, seg in enumerate(edl.segments):
        if k and seg.start_sample != edl.segments[k - 1].end_sample:
            out.append(pos)
        pos += seg.length
    return out


def time_scale(edl: EDL) -> float:
    """Output seconds per unstretched second: ``exact_samples / n_samples`` under ``--exact``, else 1."""
    n = edl.meta.get("exact_samples")
    return float(n) / edl.n_samples if n else 1.0


def cues_for(song: SongAnalysis, edl: EDL) -> dict:
    """The cues of ``edl`` (the EDL as written, ``meta["exact_samples"]`` included) of ``song``."""
    sr = edl.source_sr
    scale = time_scale(edl)
    beat_samples = np.round(np.asarray(song.beat_times, dtype=np.float64) * sr).astype(np.int64)
    bar_set = set(int(b) for b in song.bar_starts)
    section_set = set(int(b) for b in song.section_starts)
    beats, segments, seams = [], [], []
    pos = 0
    for k, seg in enumerate(edl.segments):
        o0 = pos * scale / sr
        o1 = (pos + seg.length) * scale / sr
        segments.append({"output_start": o0, "output_end": o1, "source_start": seg.start_sample / sr,
                         "source_end": seg.end_sample / sr, "gain_start": seg.gain_start, "gain_end": seg.gain_end})
        if k and seg.start_sample != edl.segments[k - 1].end_sample:
            seams.append({"time": o0, "sample": pos, "source_out": edl.segments[k - 1].end_sample / sr,
                          "source_in": seg.start_sample / sr, "crossfade_seconds": seg.crossfade_samples / sr})
        lo, hi = np.searchsorted(beat_samples, [seg.start_sample, seg.end_sample], side="left")
        for b in range(int(lo), int(hi)):
            beats.append({"time": (pos + int(beat_samples[b]) - seg.start_sample) * scale / sr,
                          "source_time": float(song.beat_times[b]), "source_beat": b})
        pos += seg.length
    return {
        "version": CUES_VERSION,
        "source": edl.source_path,
        "sample_rate": sr,
        "duration": pos * scale / sr,
        "source_duration": edl.source_samples / sr,
        "time_scale": scale,
        "beats": beats,
        "bars": [b for b in beats if b["source_beat"] in bar_set],
        "sections": [b for b in beats if b["source_beat"] in section_set],
        "seams": seams,
        "segments": segments,
    }


def cues_path_for(out_wav: str | Path) -> Path:
    """``edit.wav`` -> ``edit.cues.json`` (beside the EDL)."""
    p = Path(out_wav)
    return p.with_name(f"{p.stem}.cues.json")
