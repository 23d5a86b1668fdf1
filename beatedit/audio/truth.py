"""Metrics against ground truth (the generated corpus, or any annotated audio).

Truth JSON (``data/corpus/truth/<song_id>.json``): ``beats`` and ``downbeats`` (seconds),
``meter``, ``tempo``, ``phrase_starts`` (beat indices) / ``phrase_start_times`` (s),
``section_starts`` / ``section_start_times``. Missing time lists are derived from the
beat-index lists.

* ``beat_f_measure`` / ``downbeat_f_measure``: ``mir_eval.beat.f_measure`` (+-70 ms) on
  the full song (no 5-second trim: the first beats count too).
* ``phrase_f_measure`` / ``section_f_measure``: boundary F-measure (mir_eval's event
  matching) with a tolerance of one beat, in seconds from the reference's median
  inter-beat interval.
* ``stem_sdr``: plain signal-to-distortion ratio ``10 log10(|s|^2 / |s - s_hat|^2)``
  (the MDX/"new SDR" definition, eps-guarded), in dB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BEAT_WINDOW_S = 0.07
_SDR_EPS = 1e-7

# ground-truth stem files -> our stem names
TRUTH_STEM_MAP: dict[str, tuple[str, ...]] = {"drums": ("drums",), "bass": ("bass",), "other": ("harmony", "lead")}


def _f_measure(ref: np.ndarray, est: np.ndarray, window: float) -> float:
    import mir_eval

    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    if len(ref) == 0 and len(est) == 0:
        return 1.0
    if len(ref) == 0 or len(est) == 0:
        return 0.0
    matched = len(mir_eval.util.match_events(ref, est, window))
    p, r = matched / len(est), matched / len(ref)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def beat_f_measure(estimated: np.ndarray, reference: np.ndarray, window: float = BEAT_WINDOW_S) -> float:
    """mir_eval beat F-measure (+-70 ms), untrimmed."""
    import mir_eval

    est = np.sort(np.asarray(estimated, dtype=np.float64))
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    if len(ref) == 0 or len(est) == 0:
        return float(len(ref) == len(est))
    return float(mir_eval.beat.f_measure(ref, est, f_measure_threshold=window))


def downbeat_f_measure(estimated: np.ndarray, reference: np.ndarray, window: float = BEAT_WINDOW_S) -> float:
    """The beat F-measure applied to downbeat times."""
    return beat_f_measure(estimated, reference, window)


def phrase_f_measure(estimated_times: np.ndarray, reference_times: np.ndarray, beat_period: float) -> float:
    """Boundary F-measure with a +-1 beat tolerance (``beat_period`` seconds)."""
    return float(_f_measure(np.sort(reference_times), np.sort(estimated_times), float(beat_period) + 1e-6))


def stem_sdr(estimated: np.ndarray, reference: np.ndarray) -> float:
    """Plain SDR in dB (signals trimmed to the shorter length)."""
    n = min(len(estimated), len(reference))
    s = np.asarray(reference[:n], dtype=np.float64)
    e = np.asarray(estimated[:n], dtype=np.float64)
    return float(10.0 * np.log10((np.sum(s * s) + _SDR_EPS) / (np.sum((s - e) ** 2) + _SDR_EPS)))


def _times(truth: dict, key: str) -> np.ndarray:
    """``<key>_times`` if present, else the beat-index list ``<key>`` mapped through ``beats``."""
    if f"{key}_times" in truth:
        return np.asarray(truth[f"{key}_times"], dtype=np.float64)
    beats = np.asarray(truth["beats"], dtype=np.float64)
    idx = np.asarray(truth.get(key, []), dtype=np.int64)
    return beats[idx] if len(idx) else np.zeros(0)


def grid_metrics(beat_times: np.ndarray, downbeat_times: np.ndarray, phrase_times: np.ndarray, section_times: np.ndarray,
                 tempo: float, meter: int, truth: dict) -> dict[str, float]:
    ref_beats = np.asarray(truth["beats"], dtype=np.float64)
    period = float(np.median(np.diff(ref_beats))) if len(ref_beats) > 1 else 60.0 / float(truth.get("tempo", 120.0))
    out = {
        "beat_f_measure": beat_f_measure(beat_times, ref_beats),
        "downbeat_f_measure": downbeat_f_measure(downbeat_times, truth["downbeats"]),
        "phrase_f_measure": phrase_f_measure(phrase_times, _times(truth, "phrase_start"), period)
        if ("phrase_start_times" in truth or "phrase_starts" in truth) else float("nan"),
        "section_f_measure": phrase_f_measure(section_times, _times(truth, "section_start"), period)
        if ("section_start_times" in truth or "section_starts" in truth) else float("nan"),
    }
    if "meter" in truth:
        out["meter_accuracy"] = float(int(meter) == int(truth["meter"]))
    ref_tempo = float(truth["tempo"]) if "tempo" in truth else 60.0 / period
    out["tempo_accuracy"] = float(abs(tempo - ref_tempo) <= 0.04 * ref_tempo)  # MIREX Acc1 (4 %)
    return {k: float(v) for k, v in out.items() if not (isinstance(v, float) and np.isnan(v))}


def song_beat_metrics(song, truth: dict) -> dict[str, float]:
    """Beat / downbeat / phrase / section F-measures, meter and tempo accuracy of a SongAnalysis (or BeatGrid)."""
    bt = np.asarray(song.beat_times, dtype=np.float64)
    return grid_metrics(bt, bt[np.asarray(song.bar_starts, dtype=np.int64)], bt[np.asarray(song.phrase_starts, dtype=np.int64)],
                        bt[np.asarray(song.section_starts, dtype=np.int64)], float(song.tempo), int(song.meter), truth)


def load_truth_stems(stems_dir: str | Path, sr: int) -> dict[str, np.ndarray]:
    """Ground-truth stems at the analysis rate, mapped to our names (harmony + lead -> other)."""
    from beatedit.audio.io import load_mono

    stems_dir = Path(stems_dir)
    out: dict[str, np.ndarray] = {}
    for ours, theirs in TRUTH_STEM_MAP.items():
        files = [f for t in theirs for f in (stems_dir / f"{t}.flac", stems_dir / f"{t}.wav") if f.exists()]
        parts = [load_mono(f, sr, silence_dbfs=None) for f in files]
        if not parts:
            raise FileNotFoundError(f"{stems_dir}: no ground-truth stem file for {ours!r} (looked for {list(theirs)} .flac/.wav)")
        n = max(len(p) for p in parts)
        acc = np.zeros(n, dtype=np.float64)
        for p in parts:
            acc[: len(p)] += p
        out[ours] = acc.astype(np.float32)
    return out


def corpus_stem_sdr(stems: dict[str, np.ndarray], stems_dir: str | Path, sr: int) -> dict[str, float]:
    """SDR (dB) of each estimated stem against the corpus's ground-truth stems. A stem whose reference is silent (the
    drums of a ``no_drums`` hard song) has no SDR (it would be about -100 dB whatever the separator did) and is left out."""
    ref = load_truth_stems(stems_dir, sr)
    return {name: stem_sdr(stems[name], ref[name]) for name in TRUTH_STEM_MAP if np.any(ref[name])}
