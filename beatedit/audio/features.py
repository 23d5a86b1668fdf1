"""The 125-dim beat-synchronous features (``beatedit.audio.schema``) of a song with a beat grid.

``extract_features`` assembles every column from one ``FrameAnalysis`` (``frames``), the
per-beat reductions of ``beat_aggregate`` and the grid (``grid_columns``). Per-beat
definitions on top of the frame-level ones in ``frames``:

* MFCC, log-mel, spectral shape and contrast, onset strength: means over the beat's frames.
* chroma: beat vectors max-normalised to 0..1; tonnetz: librosa's tonal-centroid
  projection of the beat's (L1-normalised) chroma.
* RMS: mean of the frame RMS; ``rms_sub`` is the exact RMS of the samples in each
  quarter of the beat.
* zero-crossing rate: exact sign changes per sample within the beat.
"""

from __future__ import annotations

import numpy as np

from beatedit.audio import schema
from beatedit.audio.beat_aggregate import (BeatFrames, amplitude_db, beat_bounds, beat_chroma, beat_mfcc, checkerboard_novelty,
                                           cosine_rows, ssm_features, structure_features, zscore)
from beatedit.audio.beats import BeatGrid
from beatedit.audio.frames import EPS, FrameAnalysis, analyse_frames
from beatedit.audio.stems import STEM_NAMES
from beatedit.config import Config, FeaturesConfig


# ----------------------------------------------------------------------------- grid-derived columns
def _segments(starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For increasing start indices: per beat (segment index (-1 before the first), segment start, segment end)."""
    starts = np.asarray(starts, dtype=np.int64)
    idx = np.searchsorted(starts, np.arange(n), side="right") - 1
    bounds = np.concatenate([starts, [n]])
    seg_start = np.where(idx >= 0, starts[np.maximum(idx, 0)], 0)
    first = starts[0] if len(starts) else n
    seg_end = np.where(idx >= 0, bounds[np.maximum(idx, 0) + 1], first)
    return idx, seg_start, seg_end


def grid_columns(grid: BeatGrid, duration: float, beat_rms: np.ndarray) -> dict[str, np.ndarray]:
    """The grid-derived columns (bar / phrase / section position, section energy rank, song position);
    ``beat_rms`` ranks the sections by loudness."""
    n = len(grid.beat_times)
    m = int(grid.meter)
    bib = np.asarray(grid.beat_in_bar, dtype=np.int64)
    cols: dict[str, np.ndarray] = {}
    cols["beat_in_bar"] = bib.astype(np.float64)
    cols["beat_in_bar_sin"] = np.sin(2 * np.pi * bib / m)
    cols["beat_in_bar_cos"] = np.cos(2 * np.pi * bib / m)
    cols["meter"] = np.full(n, float(m))
    bars = np.asarray(grid.bar_starts, dtype=np.int64)
    is_db = np.zeros(n)
    is_db[bars] = 1.0
    cols["is_downbeat"] = is_db
    bar_idx = np.searchsorted(bars, np.arange(n), side="right") - 1  # -1 for pickup beats
    phr = np.asarray(grid.phrase_starts, dtype=np.int64)
    p_idx, p_start, p_end = _segments(phr, n)
    start_bar = np.searchsorted(bars, p_start, side="right") - 1
    cols["bar_in_phrase"] = np.where(p_idx >= 0, bar_idx - start_bar, 0).astype(np.float64)
    span = np.maximum(p_end - p_start, 1)
    cols["phrase_position"] = (np.arange(n) - p_start) / span
    is_p = np.zeros(n)
    is_p[phr] = 1.0
    cols["is_phrase_start"] = is_p
    # bars in the phrase: downbeats in [start, end); the pre-phrase pickup counts its beats / meter
    bars_in = np.searchsorted(bars, p_end, side="left") - np.searchsorted(bars, p_start, side="left")
    cols["phrase_length_bars"] = np.where(p_idx >= 0, np.maximum(bars_in, 1), (p_end - p_start) / m).astype(np.float64)
    sec = np.asarray(grid.section_starts, dtype=np.int64)
    s_idx, s_start, s_end = _segments(sec, n)
    is_s = np.zeros(n)
    is_s[sec] = 1.0
    cols["is_section_start"] = is_s
    # beats before the first section start belong to the first section
    s_idx = np.maximum(s_idx, 0)
    if len(sec):
        s_start = sec[s_idx] if len(sec) else np.zeros(n, np.int64)
        s_start = np.where(np.arange(n) < sec[0], 0, s_start)
        s_end = np.concatenate([sec[1:], [n]])[s_idx]
    else:
        s_start, s_end = np.zeros(n, np.int64), np.full(n, n)
    cols["section_position"] = (np.arange(n) - s_start) / np.maximum(s_end - s_start, 1)
    n_sec = max(len(sec), 1)
    cols["section_index_norm"] = s_idx / n_sec
    sec_mean = np.array([beat_rms[s_idx == k].mean() if np.any(s_idx == k) else 0.0 for k in range(n_sec)])
    order = np.argsort(np.argsort(sec_mean, kind="stable"), kind="stable")
    rank = order / max(n_sec - 1, 1)
    cols["section_energy_rank"] = rank[s_idx]
    cols["song_position"] = np.asarray(grid.beat_times) / max(duration, EPS)
    return cols


# ----------------------------------------------------------------------------- the 125 columns
def extract_features(y: np.ndarray, sr: int, stems: dict[str, np.ndarray], grid: BeatGrid, cfg: FeaturesConfig | Config,
                     *, frames: FrameAnalysis | None = None) -> np.ndarray:
    """float32 [n_beats, 125] in ``schema.COLUMNS`` order (pass ``frames`` to reuse a FrameAnalysis)."""
    import librosa

    fcfg = cfg.features if isinstance(cfg, Config) else cfg
    y = np.asarray(y, dtype=np.float32)
    fa = frames if frames is not None else analyse_frames(y, sr, stems, fcfg)
    duration = len(y) / sr
    bt = np.asarray(grid.beat_times, dtype=np.float64)
    n = len(bt)
    if n < 2:
        raise ValueError(f"need at least 2 beats, got {n}")
    bounds = beat_bounds(bt, duration)
    bf = BeatFrames(bounds, sr, fa.hop, fa.n_frames)
    cols: dict[str, np.ndarray] = {}

    mfcc = beat_mfcc(fa, bf)
    for k in range(20):
        cols[f"mfcc_{k}"] = mfcc[:, k]
    lm = bf.mean(fa.logmel)
    for k in range(24):
        cols[f"logmel_{k}"] = lm[:, k]
    chroma = beat_chroma(fa, bf)
    for k, p in enumerate(schema._PITCH):
        cols[f"chroma_{p}"] = chroma[:, k]
    ton = librosa.feature.tonnetz(chroma=chroma.T.astype(np.float64) + 0.0, sr=sr).T if n else np.zeros((0, 6))
    ton = np.nan_to_num(ton, nan=0.0, posinf=0.0, neginf=0.0)  # all-zero chroma -> 0/0 in librosa's L1 norm
    for k in range(6):
        cols[f"tonnetz_{k}"] = ton[:, k]
    cols["spectral_centroid"] = bf.mean(fa.centroid) / 1000.0
    cols["spectral_bandwidth"] = bf.mean(fa.bandwidth) / 1000.0
    cols["spectral_rolloff"] = bf.mean(fa.rolloff) / 1000.0
    cols["spectral_flatness"] = bf.mean(fa.flatness)
    # zero-crossing rate: exact sign changes per sample inside the beat
    s0 = np.clip(np.rint(bounds[:-1] * sr).astype(np.int64), 0, len(y))
    s1 = np.clip(np.rint(bounds[1:] * sr).astype(np.int64), 0, len(y))
    zcr = np.zeros(n)
    for i, (a, b) in enumerate(zip(s0, s1)):  # per beat: no song-length temporaries (memory on long files)
        seg = y[a:b]
        if len(seg) > 1:
            sb = np.signbit(seg)
            zcr[i] = np.count_nonzero(sb[1:] != sb[:-1]) / len(seg)
    cols["zero_crossing_rate"] = zcr
    con = bf.mean(fa.contrast)
    for k in range(7):
        cols[f"spectral_contrast_{k}"] = con[:, k]
    rms = bf.mean(fa.rms)
    cols["rms"] = rms
    cols["rms_max"] = bf.max(fa.rms)
    rdb = amplitude_db(rms)
    cols["rms_db"] = rdb
    cols["rms_delta_db"] = np.concatenate([[0.0], np.diff(rdb)])
    cols["onset_strength"] = bf.mean(fa.onset)
    cols["onset_strength_max"] = bf.max(fa.onset)
    # quarters of each beat
    q_edges = bounds[:-1, None] + (bounds[1:] - bounds[:-1])[:, None] * np.arange(5)[None, :] / 4.0
    for k in range(4):
        qb = np.stack([q_edges[:, k], q_edges[:, k + 1]], axis=1)
        qf = BeatFrames.spans(qb[:, 0], qb[:, 1], sr, fa.hop, fa.n_frames)
        cols[f"onset_sub_{k}"] = qf.mean(fa.onset)
        a = np.clip(np.rint(qb[:, 0] * sr).astype(np.int64), 0, len(y))
        b = np.clip(np.rint(qb[:, 1] * sr).astype(np.int64), 0, len(y))
        b = np.maximum(b, np.minimum(a + 1, len(y)))
        cols[f"rms_sub_{k}"] = np.array([np.sqrt(np.dot(y[a_:b_], y[a_:b_]) / (b_ - a_)) if b_ > a_ else 0.0
                                         for a_, b_ in zip(a, b)], dtype=np.float64)
    # stems
    energies = {}
    for name in STEM_NAMES:
        r = bf.mean(fa.stem_rms[name])
        cols[f"{name}_rms"] = r
        cols[f"{name}_rms_db"] = amplitude_db(r)
        cols[f"{name}_onset"] = bf.mean(fa.stem_onset[name])
        cols[f"{name}_centroid"] = bf.mean(fa.stem_centroid[name]) / 1000.0
        energies[name] = bf.mean(fa.stem_rms[name] ** 2)
    tot = sum(energies.values())
    for name in STEM_NAMES:
        cols[f"{name}_share"] = np.where(tot > EPS, energies[name] / np.maximum(tot, EPS), 0.0)
    # grid
    cols.update(grid_columns(grid, duration, rms))
    ibi = np.diff(bt)
    ibi_full = np.concatenate([ibi, ibi[-1:]])
    cols["local_tempo"] = 60.0 / np.maximum(ibi_full, 1e-3)
    cols["tempo_deviation"] = cols["local_tempo"] - float(grid.tempo)
    cols["beat_duration"] = np.diff(bounds)
    # novelty
    zm = zscore(mfcc)
    nov_m = np.zeros(n)
    nov_m[1:] = 1.0 - cosine_rows(zm[1:], zm[:-1])
    cols["novelty_mfcc"] = nov_m
    nov_c = np.zeros(n)
    nov_c[1:] = 1.0 - cosine_rows(chroma[1:], chroma[:-1])
    cols["novelty_chroma"] = nov_c
    X = ssm_features(mfcc, chroma)
    S = structure_features(fa, bf, mfcc, chroma)
    cols["novelty_checkerboard"] = checkerboard_novelty(S, half=max(2, fcfg.novelty_half_bars * int(grid.meter)))
    m = int(grid.meter)
    cols["self_similarity_bar"] = _lag_similarity(X, np.full(n, m))
    phrase_len = np.maximum(np.rint(cols["phrase_length_bars"]).astype(np.int64), 1) * m
    cols["self_similarity_phrase"] = _lag_similarity(X, phrase_len)

    missing = [c for c in schema.COLUMN_NAMES if c not in cols]
    extra = [c for c in cols if c not in schema.COLUMN_INDEX]
    if missing or extra:
        raise AssertionError(f"feature columns missing {missing} / unknown {extra}")
    out = np.stack([np.asarray(cols[c], dtype=np.float64) for c in schema.COLUMN_NAMES], axis=1)
    if not np.all(np.isfinite(out)):
        bad = sorted({schema.COLUMN_NAMES[j] for j in np.nonzero(~np.isfinite(out))[1]})
        raise AssertionError(f"non-finite feature values in columns {bad}")
    return out.astype(np.float32)


def _lag_similarity(X: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i to row i - lag[i] (to i + lag[i] when there is no earlier row)."""
    n = len(X)
    lags = np.clip(lags, 1, max(n - 1, 1))
    i = np.arange(n)
    j = np.where(i - lags >= 0, i - lags, np.minimum(i + lags, n - 1))
    return np.clip(cosine_rows(X, X[j]), -1.0, 1.0)
