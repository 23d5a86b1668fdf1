"""Frame-level quantities gathered per beat (or per any time span), and the per-beat
vectors that beat tracking and the features share: chroma, MFCC, the self-similarity
and structure vectors, and Foote's checkerboard novelty.

Frame ``t`` (centre ``t * hop / sr``) belongs to beat ``i`` when its centre lies in
``[bounds[i], bounds[i+1])``; a beat shorter than a hop uses the frame nearest its
middle. Every division is guarded; the output is always finite.
"""

from __future__ import annotations

import numpy as np

from beatedit.audio.frames import EPS, FrameAnalysis, filterbanks
from beatedit.audio.stems import STEM_NAMES


# ----------------------------------------------------------------------------- beat aggregation
def beat_bounds(beat_times: np.ndarray, duration: float) -> np.ndarray:
    """float64 [n + 1]: beat i spans [b[i], b[i+1]); the last beat ends at min(duration, last + median IBI)."""
    bt = np.asarray(beat_times, dtype=np.float64)
    ibi = float(np.median(np.diff(bt))) if len(bt) > 1 else 0.5
    last_end = min(duration, bt[-1] + ibi)
    return np.concatenate([bt, [max(last_end, bt[-1] + 1e-3)]])


class BeatFrames:
    """Frame ranges per beat (or any list of time spans) and fast reductions over frame-level arrays."""

    def __init__(self, bounds: np.ndarray, sr: int, hop: int, n_frames_total: int):
        fr = np.asarray(bounds, dtype=np.float64) * sr / hop
        self._init(fr[:-1], fr[1:], n_frames_total)

    @classmethod
    def spans(cls, t0: np.ndarray, t1: np.ndarray, sr: int, hop: int, n_frames_total: int) -> BeatFrames:
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


def cosine_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Cosine similarity of row i of A with row i of B (0 where either row is all zeros)."""
    num = (A * B).sum(axis=1)
    den = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    return np.where(den > EPS, num / np.maximum(den, EPS), 0.0)


def zscore(X: np.ndarray) -> np.ndarray:
    """Columns to zero mean, unit variance (a constant column is only centred)."""
    mu = X.mean(axis=0, keepdims=True)
    sd = X.std(axis=0, keepdims=True)
    return (X - mu) / np.where(sd > 1e-8, sd, 1.0)


def amplitude_db(x: np.ndarray) -> np.ndarray:
    """20 log10 of an amplitude, floored at -80 dB."""
    return np.maximum(20.0 * np.log10(np.maximum(x, 1e-12)), -80.0)


def beat_chroma(fa: FrameAnalysis, bf: BeatFrames) -> np.ndarray:
    """[n, 12] chroma per beat, max-normalised (0..1); an all-silent beat is all zeros."""
    c = bf.mean(fa.chroma)
    mx = c.max(axis=1, keepdims=True)
    return np.where(mx > EPS, c / np.maximum(mx, EPS), 0.0)


def beat_mfcc(fa: FrameAnalysis, bf: BeatFrames) -> np.ndarray:
    """[n, 20] mean MFCC per beat (the DCT is linear, so mean of frame MFCCs = DCT of the mean mel dB)."""
    dct = filterbanks(fa.sr, fa.n_fft)["dct20"]
    return bf.mean(fa.mel_db) @ dct.T


def ssm_features(mfcc: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """[n, 32] per-beat vectors for self-similarity: z-scored MFCC (timbre) + centred chroma (harmony)."""
    return np.concatenate([zscore(mfcc) / np.sqrt(20.0), (chroma - chroma.mean(axis=1, keepdims=True)) / np.sqrt(12.0) * 2.0], axis=1)


def structure_features(fa: FrameAnalysis, bf: BeatFrames, mfcc: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """[n, 38] per-beat vectors for structure: z-scored MFCC (20), chroma (12, centred), loudness, per-stem
    loudness (3), onset strength and spectral centroid -- everything that changes between sections."""
    extra = np.stack([amplitude_db(bf.mean(fa.rms))] + [amplitude_db(bf.mean(fa.stem_rms[k])) for k in STEM_NAMES]
                     + [bf.mean(fa.onset), bf.mean(fa.centroid)], axis=1)
    chroma_c = chroma - chroma.mean(axis=1, keepdims=True)
    return np.concatenate([zscore(mfcc), zscore(chroma_c), zscore(extra)], axis=1)


def checkerboard_novelty(X: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty: Gaussian-tapered checkerboard kernel of half-width ``half`` beats along the
    diagonal of the cosine self-similarity matrix of rows ``X``. Normalised by the kernel's
    absolute sum, so values lie in [-1, 1]; edges are handled by mirroring."""
    n = len(X)
    if n < 2:
        return np.zeros(n)
    half = int(max(1, min(half, n // 2)))
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), EPS)
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
