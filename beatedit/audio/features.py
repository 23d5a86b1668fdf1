"""The 125-dim beat-synchronous features (``beatedit.audio.schema``) and the per-song analysis.

Speed: one block-wise pass over the song computes every frame-level quantity from one
STFT of the mix and one STFT per stem (``analyse_frames``); beat tracking and the
features both read that ``FrameAnalysis``. Blocks bound memory on long files and give
exactly the whole-signal result (each frame depends only on its own window).

Frame-level definitions (hop ``features.hop_length``, window ``features.n_fft``, Hann,
centred frames with zero padding -- ``librosa.stft(center=True, pad_mode="constant")``):

* MFCC: 20 coefficients (DCT-II, ortho) of the 128-band mel power spectrum in dB
  (``librosa.feature.mfcc`` defaults, top_db 80 relative to the song's loudest bin).
* log-mel: 24 bands 30 Hz - 8 kHz, dB (floor -100 dB).
* chroma: librosa's STFT chroma filterbank (A440) on the power spectrum of the
  harmonic stems (bass + other); beat vectors are max-normalised to 0..1.
* tonnetz: librosa's tonal-centroid projection of the beat's (L1-normalised) chroma.
* spectral centroid / bandwidth / 85% roll-off (kHz), flatness (power), per librosa.
* spectral contrast: 7 octave bands from 200 Hz (librosa's band layout, quantile 0.02),
  ``20 log10(peak / valley)`` of magnitudes.
* RMS: time-domain, over each ``n_fft``-sample centred frame; ``rms_sub`` is the exact
  RMS of the samples in each quarter of the beat.
* onset strength: ``librosa.onset.onset_strength`` on the mel dB spectrum (mix); on a
  64-band mel dB spectrum for each stem.
* zero-crossing rate: exact sign changes per sample within the beat.

Beat aggregation: frame ``t`` (centre ``t * hop / sr``) belongs to beat ``i`` when its
centre lies in ``[bounds[i], bounds[i+1])``; a beat shorter than a hop uses the frame
nearest its middle. Every division is guarded; the output is always finite.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from beatedit.audio import schema
from beatedit.audio.io import AudioError, audio_info, file_sha256, load_mono
from beatedit.audio.beats import BeatGrid, track_beats
from beatedit.config import Config, FeaturesConfig
from beatedit.audio.song import SongAnalysis
from beatedit.audio.stems import STEM_NAMES, StemCache, frame_stft, hann, n_frames, padded_segment

_BLOCK_FRAMES = 1024  # frames per block in analyse_frames (~24 s at 22.05 kHz / 512): bounds working memory
_EPS = 1e-10


# ----------------------------------------------------------------------------- filterbanks (cached per sr/n_fft)
_FB_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def _filterbanks(sr: int, n_fft: int) -> dict[str, np.ndarray]:
    key = (sr, n_fft)
    if key not in _FB_CACHE:
        import librosa

        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        mel64 = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=64).astype(np.float32)
        mel64_f = librosa.mel_frequencies(n_mels=64 + 2, fmin=0.0, fmax=sr / 2.0)[1:-1]
        _FB_CACHE[key] = {
            "freqs": freqs.astype(np.float64),
            "mel128": librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=128).astype(np.float32),
            "mel24": librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=24, fmin=30.0, fmax=min(8000.0, sr / 2.0)).astype(np.float32),
            "mel64": mel64,
            "mel64_low": (mel64_f < 150.0),  # kick band of the drums stem
            "mel64_mid": (mel64_f >= 150.0) & (mel64_f < 4000.0),  # snare / body band
            "chroma": librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0).astype(np.float32),
            "dct20": librosa.filters.dct(20, 128).astype(np.float32) if hasattr(librosa.filters, "dct") else _dct_matrix(20, 128),
            "contrast_bands": _contrast_bands(freqs, sr),
        }
    return _FB_CACHE[key]


def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """DCT-II, orthonormal (scipy.fftpack.dct(type=2, norm='ortho') as a matrix) -- what librosa's mfcc uses."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _contrast_bands(freqs: np.ndarray, sr: int, n_bands: int = 6, fmin: float = 200.0, quantile: float = 0.02) -> list[tuple[np.ndarray, int]]:
    """librosa.feature.spectral_contrast's band layout: [(bin indices, k)] for 7 bands."""
    octa = np.zeros(n_bands + 2)
    octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
    bands = []
    for k, (lo, hi) in enumerate(zip(octa[:-1], octa[1:])):
        cur = (freqs >= lo) & (freqs <= hi)
        idx = np.flatnonzero(cur)
        if k > 0 and len(idx):
            cur[idx[0] - 1] = True
        if k == n_bands and len(idx):
            cur[idx[-1] + 1:] = True
        sel = np.flatnonzero(cur)
        if k < n_bands:
            sel = sel[:-1]
        q = max(1, int(np.rint(quantile * np.sum(cur))))
        bands.append((sel, q))
    return bands


# ----------------------------------------------------------------------------- frame analysis
@dataclass
class FrameAnalysis:
    """Frame-level quantities shared by beat tracking and feature extraction ([.., n_frames] arrays)."""

    sr: int
    hop: int
    n_fft: int
    n_samples: int
    mel_db: np.ndarray  # [128, T] mel power in dB (librosa.power_to_db, top_db 80)
    logmel: np.ndarray  # [24, T] dB
    chroma: np.ndarray  # [12, T] raw chroma energy of the harmonic stems (not normalised)
    centroid: np.ndarray  # [T] Hz
    bandwidth: np.ndarray  # [T] Hz
    rolloff: np.ndarray  # [T] Hz
    flatness: np.ndarray  # [T]
    contrast: np.ndarray  # [7, T] dB
    rms: np.ndarray  # [T] linear
    onset: np.ndarray  # [T] mix onset strength
    stem_rms: dict[str, np.ndarray] = field(default_factory=dict)
    stem_onset: dict[str, np.ndarray] = field(default_factory=dict)
    stem_centroid: dict[str, np.ndarray] = field(default_factory=dict)  # Hz
    kick_onset: np.ndarray | None = None  # drums stem, bands < 150 Hz
    snare_onset: np.ndarray | None = None  # drums stem, 150 Hz - 4 kHz
    seconds: float = 0.0  # compute time

    @property
    def n_frames(self) -> int:
        return int(self.rms.shape[0])

    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_frames) * self.hop / self.sr


def _frame_rms(seg: np.ndarray, nf: int, n_fft: int, hop: int) -> np.ndarray:
    c = np.concatenate([[0.0], np.cumsum(seg.astype(np.float64) ** 2)])
    starts = np.arange(nf) * hop
    return np.sqrt(np.maximum(c[starts + n_fft] - c[starts], 0.0) / n_fft).astype(np.float32)


def _centroid(S: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    tot = S.sum(axis=0)
    return np.where(tot > _EPS, (freqs[:, None] * S).sum(axis=0) / np.maximum(tot, _EPS), 0.0).astype(np.float32)


def _onset_from_db(S_db: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.onset.onset_strength on a dB spectrogram (lag 1, mean over bands, centred)."""
    import librosa

    if S_db.shape[0] == 0:
        return np.zeros(S_db.shape[1], dtype=np.float32)
    return librosa.onset.onset_strength(S=S_db, n_fft=n_fft, hop_length=hop, lag=1, max_size=1, center=False).astype(np.float32)


def _power_to_db(P: np.ndarray, top_db: float | None = 80.0) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(P, _EPS))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db.astype(np.float32)


def analyse_frames(y: np.ndarray, sr: int, stems: dict[str, np.ndarray], cfg: FeaturesConfig) -> FrameAnalysis:
    """One block-wise pass: STFT of the mix and of each stem -> every frame-level quantity."""
    start = time.perf_counter()
    n_fft, hop = cfg.n_fft, cfg.hop_length
    y = np.asarray(y, dtype=np.float32)
    fb = _filterbanks(sr, n_fft)
    freqs = fb["freqs"]
    window = hann(n_fft)
    total = n_frames(len(y), hop)
    mel128 = np.empty((128, total), np.float32)
    logmel = np.empty((24, total), np.float32)
    chroma = np.empty((12, total), np.float32)
    centroid = np.empty(total, np.float32)
    bandwidth = np.empty(total, np.float32)
    rolloff = np.empty(total, np.float32)
    flatness = np.empty(total, np.float32)
    contrast = np.empty((7, total), np.float32)
    rms = np.empty(total, np.float32)
    stem_mel = {k: np.empty((64, total), np.float32) for k in STEM_NAMES}
    stem_rms = {k: np.empty(total, np.float32) for k in STEM_NAMES}
    stem_centroid = {k: np.empty(total, np.float32) for k in STEM_NAMES}
    for b0 in range(0, total, _BLOCK_FRAMES):
        b1 = min(total, b0 + _BLOCK_FRAMES)
        nf = b1 - b0
        seg = padded_segment(y, b0, b1, n_fft, hop)
        D = frame_stft(seg, n_fft, hop, 0, nf, window)
        S = np.abs(D)
        P = S * S
        mel128[:, b0:b1] = fb["mel128"] @ P
        logmel[:, b0:b1] = 10.0 * np.log10(np.maximum(fb["mel24"] @ P, _EPS))
        rms[b0:b1] = _frame_rms(seg, nf, n_fft, hop)
        # spectral shape (librosa definitions)
        tot = S.sum(axis=0)
        cen = np.where(tot > _EPS, (freqs[:, None] * S).sum(axis=0) / np.maximum(tot, _EPS), 0.0)
        centroid[b0:b1] = cen
        Sn = S / np.maximum(tot, _EPS)
        bandwidth[b0:b1] = np.sqrt(np.maximum((Sn * (freqs[:, None] - cen[None, :]) ** 2).sum(axis=0), 0.0))
        cums = np.cumsum(S, axis=0)
        thr = 0.85 * cums[-1]
        idx = np.argmax(cums >= thr[None, :], axis=0)
        rolloff[b0:b1] = np.where(tot > _EPS, freqs[idx], 0.0)
        Pt = np.maximum(P, _EPS)
        flatness[b0:b1] = np.exp(np.mean(np.log(Pt), axis=0)) / np.mean(Pt, axis=0)
        for k, (sel, q) in enumerate(fb["contrast_bands"]):
            sub = np.sort(S[sel], axis=0)
            valley = sub[:q].mean(axis=0)
            peak = sub[-q:].mean(axis=0)
            contrast[k, b0:b1] = 20.0 * np.log10(np.maximum(peak, _EPS) / np.maximum(valley, _EPS))
        # stems
        harm = None
        for name in STEM_NAMES:
            sseg = padded_segment(stems[name], b0, b1, n_fft, hop)
            Ds = frame_stft(sseg, n_fft, hop, 0, nf, window)
            Ss = np.abs(Ds)
            stem_mel[name][:, b0:b1] = fb["mel64"] @ (Ss * Ss)
            stem_rms[name][b0:b1] = _frame_rms(sseg, nf, n_fft, hop)
            stem_centroid[name][b0:b1] = _centroid(Ss, freqs)
            if name in ("bass", "other"):
                harm = Ds if harm is None else harm + Ds
        Ph = np.abs(harm) ** 2
        chroma[:, b0:b1] = fb["chroma"] @ Ph
    mel_db = _power_to_db(mel128)
    # MFCC is taken per beat from the mean mel dB (see extract_features) -- here only the onset envelope
    onset = _onset_from_db(mel_db, n_fft, hop)
    stem_onset = {}
    kick = snare = None
    for name in STEM_NAMES:
        db = _power_to_db(stem_mel[name])
        stem_onset[name] = _onset_from_db(db, n_fft, hop)
        if name == "drums":
            kick = _onset_from_db(db[fb["mel64_low"]], n_fft, hop)
            snare = _onset_from_db(db[fb["mel64_mid"]], n_fft, hop)
    return FrameAnalysis(sr=sr, hop=hop, n_fft=n_fft, n_samples=len(y), mel_db=mel_db, logmel=np.maximum(logmel, -100.0),
                         chroma=chroma, centroid=centroid, bandwidth=bandwidth, rolloff=rolloff, flatness=flatness,
                         contrast=contrast, rms=rms, onset=onset, stem_rms=stem_rms, stem_onset=stem_onset,
                         stem_centroid=stem_centroid, kick_onset=kick, snare_onset=snare,
                         seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------- beat aggregation
def beat_bounds(beat_times: np.ndarray, duration: float) -> np.ndarray:
    """float64 [n + 1]: beat i spans [b[i], b[i+1]); the last beat ends at min(duration, last + median IBI)."""
    bt = np.asarray(beat_times, dtype=np.float64)
    ibi = float(np.median(np.diff(bt))) if len(bt) > 1 else 0.5
    last_end = min(duration, bt[-1] + ibi)
    return np.concatenate([bt, [max(last_end, bt[-1] + 1e-3)]])


class _BeatFrames:
    """Frame ranges per beat (or any list of time spans) and fast reductions over frame-level arrays."""

    def __init__(self, bounds: np.ndarray, sr: int, hop: int, n_frames_total: int):
        fr = np.asarray(bounds, dtype=np.float64) * sr / hop
        self._init(fr[:-1], fr[1:], n_frames_total)

    @classmethod
    def spans(cls, t0: np.ndarray, t1: np.ndarray, sr: int, hop: int, n_frames_total: int) -> "_BeatFrames":
        obj = cls.__new__(cls)
        obj._init(np.asarray(t0) * sr / hop, np.asarray(t1) * sr / hop, n_frames_total)
        return obj

    def _init(self, fr0: np.ndarray, fr1: np.ndarray, T: int) -> None:
        # frames whose centre lies in [fr0, fr1); a span shorter than a hop uses the frame nearest its middle
        start = np.clip(np.ceil(fr0 - 1e-9).astype(np.int64), 0, T - 1)
        end = np.clip(np.ceil(fr1 - 1e-9).astype(np.int64), 0, T)
        near = np.clip(np.rint(0.5 * (fr0 + fr1)).astype(np.int64), 0, T - 1)
        start = np.where(end <= start, near, start)
        end = np.where(end <= start, start + 1, end)
        self.start, self.end = start, end
        self.count = (end - start).astype(np.float64)

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Mean over each beat's frames; ``x`` is [T] or [d, T] -> [n] or [n, d]."""
        x2 = x[None, :] if x.ndim == 1 else x
        c = np.concatenate([np.zeros((x2.shape[0], 1)), np.cumsum(x2, axis=1, dtype=np.float64)], axis=1)
        m = (c[:, self.end] - c[:, self.start]) / self.count
        return m[0] if x.ndim == 1 else m.T

    def max(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(self.start), dtype=np.float64)
        for i, (a, b) in enumerate(zip(self.start, self.end)):  # reduceat cannot express overlapping/short ranges safely
            out[i] = x[a:b].max()
        return out


def _cosine_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    num = (A * B).sum(axis=1)
    den = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    return np.where(den > _EPS, num / np.maximum(den, _EPS), 0.0)


def _zscore(X: np.ndarray) -> np.ndarray:
    mu = X.mean(axis=0, keepdims=True)
    sd = X.std(axis=0, keepdims=True)
    return (X - mu) / np.where(sd > 1e-8, sd, 1.0)


def _db(x: np.ndarray) -> np.ndarray:
    return np.maximum(20.0 * np.log10(np.maximum(x, 1e-12)), -80.0)


def beat_chroma(fa: FrameAnalysis, bf: _BeatFrames) -> np.ndarray:
    """[n, 12] chroma per beat, max-normalised (0..1); an all-silent beat is all zeros."""
    c = bf.mean(fa.chroma)
    mx = c.max(axis=1, keepdims=True)
    return np.where(mx > _EPS, c / np.maximum(mx, _EPS), 0.0)


def beat_mfcc(fa: FrameAnalysis, bf: _BeatFrames) -> np.ndarray:
    """[n, 20] mean MFCC per beat (the DCT is linear, so mean of frame MFCCs = DCT of the mean mel dB)."""
    dct = _filterbanks(fa.sr, fa.n_fft)["dct20"]
    return bf.mean(fa.mel_db) @ dct.T


def ssm_features(mfcc: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """[n, 32] per-beat vectors for self-similarity: z-scored MFCC (timbre) + centred chroma (harmony)."""
    return np.concatenate([_zscore(mfcc) / np.sqrt(20.0), (chroma - chroma.mean(axis=1, keepdims=True)) / np.sqrt(12.0) * 2.0], axis=1)


def structure_features(fa: "FrameAnalysis", bf: "_BeatFrames", mfcc: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """[n, 38] per-beat vectors for structure: z-scored MFCC (20), chroma (12, centred), loudness, per-stem
    loudness (3), onset strength and spectral centroid -- everything that changes between sections."""
    extra = np.stack([_db(bf.mean(fa.rms))] + [_db(bf.mean(fa.stem_rms[k])) for k in STEM_NAMES]
                     + [bf.mean(fa.onset), bf.mean(fa.centroid)], axis=1)
    chroma_c = chroma - chroma.mean(axis=1, keepdims=True)
    return np.concatenate([_zscore(mfcc), _zscore(chroma_c), _zscore(extra)], axis=1)


def checkerboard_novelty(X: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty: Gaussian-tapered checkerboard kernel of half-width ``half`` beats along the
    diagonal of the cosine self-similarity matrix of rows ``X``. Normalised by the kernel's
    absolute sum, so values lie in [-1, 1]; edges are handled by mirroring."""
    n = len(X)
    if n < 2:
        return np.zeros(n)
    half = int(max(1, min(half, n // 2)))
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), _EPS)
    Xp = np.concatenate([Xn[1:half + 1][::-1], Xn, Xn[-half - 1:-1][::-1]], axis=0) if n > half + 1 else np.pad(Xn, ((half, half), (0, 0)), mode="edge")
    g = np.exp(-0.5 * ((np.arange(-half, half) + 0.5) / (0.5 * half)) ** 2)
    sign = np.where(np.arange(-half, half) < 0, -1.0, 1.0)
    K = np.outer(g * sign, g * sign)  # + on the two same-side blocks, - on the cross blocks
    K /= np.abs(K).sum()
    out = np.empty(n)
    for i in range(n):
        W = Xp[i: i + 2 * half]  # beats i-half .. i+half-1 (the boundary lies before beat i)
        out[i] = float(np.sum(K * (W @ W.T)))
    return out


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
    cols["song_position"] = np.asarray(grid.beat_times) / max(duration, _EPS)
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
    bf = _BeatFrames(bounds, sr, fa.hop, fa.n_frames)
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
    rdb = _db(rms)
    cols["rms_db"] = rdb
    cols["rms_delta_db"] = np.concatenate([[0.0], np.diff(rdb)])
    cols["onset_strength"] = bf.mean(fa.onset)
    cols["onset_strength_max"] = bf.max(fa.onset)
    # quarters of each beat
    q_edges = bounds[:-1, None] + (bounds[1:] - bounds[:-1])[:, None] * np.arange(5)[None, :] / 4.0
    for k in range(4):
        qb = np.stack([q_edges[:, k], q_edges[:, k + 1]], axis=1)
        qf = _BeatFrames.spans(qb[:, 0], qb[:, 1], sr, fa.hop, fa.n_frames)
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
        cols[f"{name}_rms_db"] = _db(r)
        cols[f"{name}_onset"] = bf.mean(fa.stem_onset[name])
        cols[f"{name}_centroid"] = bf.mean(fa.stem_centroid[name]) / 1000.0
        energies[name] = bf.mean(fa.stem_rms[name] ** 2)
    tot = sum(energies.values())
    for name in STEM_NAMES:
        cols[f"{name}_share"] = np.where(tot > _EPS, energies[name] / np.maximum(tot, _EPS), 0.0)
    # grid
    cols.update(grid_columns(grid, duration, rms))
    ibi = np.diff(bt)
    ibi_full = np.concatenate([ibi, ibi[-1:]])
    cols["local_tempo"] = 60.0 / np.maximum(ibi_full, 1e-3)
    cols["tempo_deviation"] = cols["local_tempo"] - float(grid.tempo)
    cols["beat_duration"] = np.diff(bounds)
    # novelty
    zm = _zscore(mfcc)
    nov_m = np.zeros(n)
    nov_m[1:] = 1.0 - _cosine_rows(zm[1:], zm[:-1])
    cols["novelty_mfcc"] = nov_m
    nov_c = np.zeros(n)
    nov_c[1:] = 1.0 - _cosine_rows(chroma[1:], chroma[:-1])
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
    return np.clip(_cosine_rows(X, X[j]), -1.0, 1.0)


# ----------------------------------------------------------------------------- per song
def analyse_song(path: str | Path, cfg: Config, cache: StemCache) -> SongAnalysis:
    """Load (checked), stems (cached), frames, beat grid, features -> SongAnalysis.

    Raises ``AudioError`` (reason ``too_short`` when fewer than ``audio.min_beats`` beats are found).
    """
    path = Path(path)
    timings = {}
    t0 = time.perf_counter()
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
    stems, hit = cache.get_or_compute(path, cfg.stems, sr, y=y, audio_sha256=sha, dtype=np.float16)  # float16: memory
    timings["stems"] = time.perf_counter() - t
    t = time.perf_counter()
    fa = analyse_frames(y, sr, stems, cfg.features)
    timings["frames"] = time.perf_counter() - t
    t = time.perf_counter()
    grid = track_beats(y, sr, stems, cfg.features, frames=fa)
    timings["beats"] = time.perf_counter() - t
    if len(grid.beat_times) < cfg.audio.min_beats:
        raise AudioError(path, "too_short", f"only {len(grid.beat_times)} beats found in {duration:.1f} s "
                                            f"(audio.min_beats = {cfg.audio.min_beats})")
    t = time.perf_counter()
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
