"""Frame-level analysis of a song: one block-wise STFT pass over the mix and each stem.

Beat tracking (``beats``) and the beat features (``features``) both read the one
``FrameAnalysis`` computed here, so the STFTs are taken once per song. Blocks bound
memory on long files and give exactly the whole-signal result (each frame depends only
on its own window).

Frame-level definitions (hop ``features.hop_length``, window ``features.n_fft``, Hann,
centred frames with zero padding -- ``librosa.stft(center=True, pad_mode="constant")``):

* MFCC: 20 coefficients (DCT-II, ortho) of the 128-band mel power spectrum in dB
  (``librosa.feature.mfcc`` defaults, top_db 80 relative to the song's loudest bin);
  only the mel dB is kept per frame, the DCT is applied per beat (``beat_aggregate``).
* log-mel: 24 bands 30 Hz - 8 kHz, dB (floor -100 dB).
* chroma: librosa's STFT chroma filterbank (A440) on the power spectrum of the
  harmonic stems (bass + other), raw energies (normalised per beat later).
* spectral centroid / bandwidth / 85% roll-off (Hz), flatness (power), per librosa.
* spectral contrast: 7 octave bands from 200 Hz (librosa's band layout, quantile 0.02),
  ``20 log10(peak / valley)`` of magnitudes.
* RMS: time-domain, over each ``n_fft``-sample centred frame.
* onset strength: ``librosa.onset.onset_strength`` on the mel dB spectrum (mix); on a
  64-band mel dB spectrum for each stem, and on its low / mid bands for the drums stem.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from beatedit.audio.stems import STEM_NAMES, frame_stft, hann, n_frames, padded_segment
from beatedit.config import FeaturesConfig

_BLOCK_FRAMES = 1024  # frames per block in analyse_frames (~24 s at 22.05 kHz / 512): bounds working memory
EPS = 1e-10  # guard of every division and log in the front end


# ----------------------------------------------------------------------------- filterbanks (cached per sr/n_fft)
_FB_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def filterbanks(sr: int, n_fft: int) -> dict[str, np.ndarray]:
    """Mel / chroma / DCT matrices and contrast bands for ``(sr, n_fft)``, built once per process."""
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
    return np.where(tot > EPS, (freqs[:, None] * S).sum(axis=0) / np.maximum(tot, EPS), 0.0).astype(np.float32)


def _onset_from_db(S_db: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.onset.onset_strength on a dB spectrogram (lag 1, mean over bands, centred)."""
    import librosa

    if S_db.shape[0] == 0:
        return np.zeros(S_db.shape[1], dtype=np.float32)
    return librosa.onset.onset_strength(S=S_db, n_fft=n_fft, hop_length=hop, lag=1, max_size=1, center=False).astype(np.float32)


def _power_to_db(P: np.ndarray, top_db: float | None = 80.0) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(P, EPS))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db.astype(np.float32)


def analyse_frames(y: np.ndarray, sr: int, stems: dict[str, np.ndarray], cfg: FeaturesConfig) -> FrameAnalysis:
    """One block-wise pass: STFT of the mix and of each stem -> every frame-level quantity."""
    start = time.perf_counter()
    n_fft, hop = cfg.n_fft, cfg.hop_length
    y = np.asarray(y, dtype=np.float32)
    fb = filterbanks(sr, n_fft)
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
        logmel[:, b0:b1] = 10.0 * np.log10(np.maximum(fb["mel24"] @ P, EPS))
        rms[b0:b1] = _frame_rms(seg, nf, n_fft, hop)
        # spectral shape (librosa definitions)
        tot = S.sum(axis=0)
        cen = np.where(tot > EPS, (freqs[:, None] * S).sum(axis=0) / np.maximum(tot, EPS), 0.0)
        centroid[b0:b1] = cen
        Sn = S / np.maximum(tot, EPS)
        bandwidth[b0:b1] = np.sqrt(np.maximum((Sn * (freqs[:, None] - cen[None, :]) ** 2).sum(axis=0), 0.0))
        cums = np.cumsum(S, axis=0)
        thr = 0.85 * cums[-1]
        idx = np.argmax(cums >= thr[None, :], axis=0)
        rolloff[b0:b1] = np.where(tot > EPS, freqs[idx], 0.0)
        Pt = np.maximum(P, EPS)
        flatness[b0:b1] = np.exp(np.mean(np.log(Pt), axis=0)) / np.mean(Pt, axis=0)
        for k, (sel, q) in enumerate(fb["contrast_bands"]):
            sub = np.sort(S[sel], axis=0)
            valley = sub[:q].mean(axis=0)
            peak = sub[-q:].mean(axis=0)
            contrast[k, b0:b1] = 20.0 * np.log10(np.maximum(peak, EPS) / np.maximum(valley, EPS))
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
    # MFCC is taken per beat from the mean mel dB (beat_aggregate.beat_mfcc) -- here only the onset envelope
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
