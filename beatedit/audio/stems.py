"""Stem separation (pluggable backends) and the content-addressed stem cache.

Backends
--------
``hpss`` (default, weight-free). One STFT of the mix per block; harmonic/percussive
soft masks from median filtering (across time -> harmonic, across frequency ->
percussive, librosa's margin/soft-mask formulation); the harmonic part is split at
``bass_cutoff_hz``. Stems are the inverse STFTs of the masked spectrogram:

* ``drums`` -- percussive mask
* ``bass``  -- harmonic mask below the cut-off
* ``other`` -- harmonic mask above the cut-off + the residual (neither harmonic nor percussive)

The masks sum to one in every bin, so ``drums + bass + other == mix`` (up to float
rounding). The signal is processed in blocks with enough context that the result
equals whole-signal processing, so memory stays bounded on long files.

``demucs`` runs only when weights are present under ``demucs_model_dir`` (and the
``demucs`` package is installed); otherwise ``StemBackendError`` says where to put
them. Nothing is ever downloaded.

Cache
-----
``StemCache(root)``: key = sha256 over (audio file sha256, backend, stem parameters,
analysis rate, algorithm version). Entry = ``objects/<key[:2]>/<key>/{drums,bass,other}.npy``
(float16) + ``meta.json``; ``index.json`` at the root lists every entry. Fresh stems
are rounded to float16 exactly like cached ones, so a hit and a miss return identical
arrays (features never depend on the cache state).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from beatedit.audio.io import file_sha256, load_mono
from beatedit.config import StemsConfig

STEM_NAMES: tuple[str, ...] = ("drums", "bass", "other")
STEMS_VERSION = "stems-v1"  # bump when the algorithm changes: invalidates cache entries
_BLOCK_SECONDS = 20.0  # separation block length (exactness is independent of it)


class StemBackendError(RuntimeError):
    """The configured stem backend cannot run here (e.g. demucs weights missing)."""


# ----------------------------------------------------------------------------- STFT helpers (shared with features)
def frame_stft(y_padded: np.ndarray, n_fft: int, hop: int, f0: int, f1: int, window: np.ndarray) -> np.ndarray:
    """Complex STFT frames ``f0..f1-1`` of a signal already padded by ``n_fft // 2`` zeros at both ends.

    Equals ``librosa.stft(y, n_fft, hop, center=True, pad_mode="constant")[:, f0:f1]``.
    """
    from numpy.lib.stride_tricks import as_strided

    seg = y_padded[f0 * hop: (f1 - 1) * hop + n_fft]
    n = f1 - f0
    frames = as_strided(seg, shape=(n, n_fft), strides=(seg.strides[0] * hop, seg.strides[0]), writeable=False)
    return np.fft.rfft(frames * window, axis=1).T.astype(np.complex64, copy=False)


def padded_segment(y: np.ndarray, f0: int, f1: int, n_fft: int, hop: int) -> np.ndarray:
    """float32 samples of the zero-padded (``n_fft // 2`` each side) signal that frames f0..f1-1 cover
    (the padded copy of the whole signal is never made)."""
    pad = n_fft // 2
    a = f0 * hop - pad
    b = (f1 - 1) * hop + n_fft - pad
    seg = np.zeros(b - a, dtype=np.float32)
    lo, hi = max(a, 0), min(b, len(y))
    if hi > lo:
        seg[lo - a: hi - a] = y[lo:hi]
    return seg


def n_frames(n_samples: int, hop: int) -> int:
    return 1 + n_samples // hop


def hann(n_fft: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann (= scipy/librosa)


def _median_filter(S: np.ndarray, k: int, axis: int, rows_per_block: int = 128) -> np.ndarray:
    """Median filter of odd length ``k`` along ``axis`` (1: time, 0: frequency), edges mirrored.

    Sliding-window + partition, in row blocks to bound working memory (~rows x cols x k floats).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    if k <= 1:
        return S.copy()
    X = S if axis == 1 else S.T
    h = k // 2
    out = np.empty_like(X)
    for r0 in range(0, X.shape[0], rows_per_block):
        blk = X[r0:r0 + rows_per_block]
        P = np.pad(blk, ((0, 0), (h, h)), mode="symmetric")
        W = sliding_window_view(P, k, axis=1)
        out[r0:r0 + rows_per_block] = np.partition(W, h, axis=-1)[..., h]
    return out if axis == 1 else np.ascontiguousarray(out.T)


def _softmask(X: np.ndarray, X_ref: np.ndarray) -> np.ndarray:
    """X^2 / (X^2 + X_ref^2); 0.5 where both are zero (librosa.util.softmask, power 2, split_zeros)."""
    Z = X * X
    R = X_ref * X_ref
    den = Z + R
    tiny = np.finfo(np.float32).tiny
    mask = np.where(den > tiny, Z / np.maximum(den, tiny), np.float32(0.5))
    return mask.astype(np.float32, copy=False)


def hpss_masks(S: np.ndarray, sr: int, n_fft: int, cfg: StemsConfig) -> dict[str, np.ndarray]:
    """Soft masks (drums, bass, other) for magnitude spectrogram ``S`` [bins, frames]; they sum to 1."""
    harm = _median_filter(S, cfg.hpss_kernel_harmonic, axis=1)
    perc = _median_filter(S, cfg.hpss_kernel_percussive, axis=0)
    m_h = _softmask(harm, cfg.hpss_margin * perc)
    m_p = _softmask(perc, cfg.hpss_margin * harm)
    if cfg.hpss_margin < 1.0:  # masks could exceed 1 in sum: renormalise
        tot = np.maximum(m_h + m_p, 1.0)
        m_h, m_p = m_h / tot, m_p / tot
    resid = np.clip(1.0 - m_h - m_p, 0.0, 1.0)
    freqs = np.arange(S.shape[0]) * sr / n_fft
    df = sr / n_fft
    w_bass = np.clip((cfg.bass_cutoff_hz + 0.5 * df - freqs) / df, 0.0, 1.0).astype(np.float32)[:, None]
    bass = m_h * w_bass
    other = m_h * (1.0 - w_bass) + resid
    return {"drums": m_p, "bass": bass, "other": other}


def _istft_frames(D: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlap-add of windowed inverse frames (hop must divide n_fft). Returns (signal, window-square sum)."""
    frames = np.fft.irfft(D.T, n=n_fft, axis=1).astype(np.float32) * window
    n = frames.shape[0]
    length = (n - 1) * hop + n_fft
    y = np.zeros(length, dtype=np.float32)
    wss = np.zeros(length, dtype=np.float32)
    w2 = window * window
    for j in range(n_fft // hop):
        # the j-th hop-slice of frame i lands at [(i + j) * hop, (i + j + 1) * hop): contiguous over i
        y[j * hop: (j + n) * hop] += frames[:, j * hop:(j + 1) * hop].reshape(-1)
        wss[j * hop: (j + n) * hop] += np.tile(w2[j * hop:(j + 1) * hop], n)
    return y, wss


def _check_stft_params(n_fft: int, hop: int, where: str) -> None:
    if n_fft % hop != 0 or n_fft < 2 * hop:
        raise ValueError(f"{where}: n_fft ({n_fft}) must be a multiple of hop_length ({hop}) and at least twice it")


# ----------------------------------------------------------------------------- backends
def separate_hpss(y: np.ndarray, sr: int, cfg: StemsConfig, dtype=np.float32) -> dict[str, np.ndarray]:
    """HPSS + band split, block-wise; returns stems the length of ``y`` (``dtype``: float32, or float16 to halve memory)."""
    n_fft, hop = cfg.n_fft, cfg.hop_length
    _check_stft_params(n_fft, hop, "stems")
    n = len(y)
    window = hann(n_fft)
    pad = n_fft // 2
    total = n_frames(n, hop)
    # context (in frames) each side so that block results equal whole-signal results
    ctx = cfg.hpss_kernel_harmonic // 2 + n_fft // hop + 1
    block = max(ctx * 4, int(_BLOCK_SECONDS * sr / hop))
    out = {k: np.zeros(n, dtype=dtype) for k in STEM_NAMES}
    wss_cache: dict[int, np.ndarray] = {}
    for b0 in range(0, total, block):
        b1 = min(total, b0 + block)
        f0, f1 = max(0, b0 - ctx), min(total, b1 + ctx)
        D = frame_stft(padded_segment(y, f0, f1, n_fft, hop), n_fft, hop, 0, f1 - f0, window)
        S = np.abs(D)
        masks = hpss_masks(S, sr, n_fft, cfg)
        # frames b0..b1-1 fully determine padded samples [b0*hop, b1*hop) once neighbours (in ctx) are added:
        # overlap-add all frames f0..f1-1, keep padded-sample range [b0*hop, b1*hop)
        lo = (b0 - f0) * hop
        hi = lo + (b1 - b0) * hop if b1 < total else (f1 - f0 - 1) * hop + n_fft  # last block: to the end
        for name in STEM_NAMES:
            seg, wss = _istft_frames(D * masks[name], n_fft, hop, window)
            key = len(seg)
            if key not in wss_cache:
                wss_cache[key] = wss
            wss = wss_cache[key]
            seg = seg[lo:hi]
            w = wss[lo:hi]
            # padded-sample index p -> signal index p - pad
            p0 = b0 * hop
            s0, s1 = max(0, p0 - pad), min(n, p0 + len(seg) - pad)
            if s1 <= s0:
                continue
            a0 = s0 - (p0 - pad)
            ww = w[a0:a0 + s1 - s0]
            out[name][s0:s1] = seg[a0:a0 + s1 - s0] / np.where(ww > 1e-8, ww, 1.0)
    return out


def _demucs_weights(cfg: StemsConfig) -> list[Path]:
    root = Path(cfg.demucs_model_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.suffix in (".th", ".pt", ".yaml"))


def separate_demucs(y: np.ndarray, sr: int, cfg: StemsConfig) -> dict[str, np.ndarray]:
    """Demucs with local weights only. Raises StemBackendError (never downloads)."""
    weights = _demucs_weights(cfg)
    if not weights:
        raise StemBackendError(
            f"stems.backend is 'demucs' but no Demucs weights were found under {Path(cfg.demucs_model_dir).resolve()}: "
            "put a pretrained Demucs model there (its .th checkpoint(s), plus the bag-of-models .yaml if it has one, "
            "e.g. htdemucs.yaml + <sig>.th from the Demucs release) -- beatedit never downloads weights -- "
            "or set stems.backend: hpss")
    try:
        import torch
        from demucs.apply import apply_model
        from demucs.pretrained import get_model
    except ImportError as exc:
        raise StemBackendError(f"Demucs weights found in {cfg.demucs_model_dir} but the 'demucs' package is not installed "
                               f"({exc}); pip install demucs, or set stems.backend: hpss") from exc
    import soxr

    yamls = [p for p in weights if p.suffix == ".yaml"]
    name = yamls[0].stem if yamls else weights[0].stem.split("-")[0]
    model = get_model(name, repo=Path(cfg.demucs_model_dir))
    model.eval()
    msr = int(model.samplerate)
    x = soxr.resample(np.asarray(y, dtype=np.float32), sr, msr) if msr != sr else np.asarray(y, dtype=np.float32)
    wav = torch.from_numpy(np.stack([x] * int(model.audio_channels)))[None]
    with torch.no_grad():
        sources = apply_model(model, wav, device="cpu", split=True, overlap=0.25, progress=False)[0]
    out = {k: np.zeros(len(y), dtype=np.float32) for k in STEM_NAMES}
    for src_name, src in zip(model.sources, sources.numpy()):
        mono = src.mean(axis=0).astype(np.float32)
        if msr != sr:
            mono = soxr.resample(mono, msr, sr)
        mono = mono[: len(y)]
        target = src_name if src_name in ("drums", "bass") else "other"  # vocals (and guitar/piano) -> other
        out[target][: len(mono)] += mono
    return out


def separate(y_mono: np.ndarray, sr: int, cfg: StemsConfig, dtype=np.float32) -> dict[str, np.ndarray]:
    """Stems ``drums``, ``bass``, ``other`` (``dtype``, same length and rate as ``y_mono``)."""
    if cfg.backend == "hpss":
        return separate_hpss(y_mono, sr, cfg, dtype=dtype)
    if cfg.backend == "demucs":
        return {k: v.astype(dtype) for k, v in separate_demucs(y_mono, sr, cfg).items()}
    raise StemBackendError(f"unknown stems.backend {cfg.backend!r} (hpss | demucs)")


def stem_params(cfg: StemsConfig) -> dict:
    """The parameters that determine the stems (the cache key's parameter part)."""
    if cfg.backend == "demucs":
        return {"backend": "demucs", "weights": [p.name for p in _demucs_weights(cfg)]}
    d = dataclasses.asdict(cfg)
    for k in ("cache_dir", "demucs_model_dir"):
        d.pop(k, None)
    return d


# ----------------------------------------------------------------------------- cache
class StemCache:
    """Content-addressed stem cache under ``root`` (see module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, audio_sha256: str, cfg: StemsConfig, sr: int) -> str:
        blob = json.dumps({"audio": audio_sha256, "backend": cfg.backend, "params": stem_params(cfg), "sr": int(sr),
                           "version": STEMS_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def entry_dir(self, key: str) -> Path:
        return self.root / "objects" / key[:2] / key

    def meta(self, key: str) -> dict | None:
        p = self.entry_dir(key) / "meta.json"
        try:
            return json.loads(p.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _load(self, key: str, dtype=np.float32) -> dict[str, np.ndarray] | None:
        d = self.entry_dir(key)
        meta = self.meta(key)
        if meta is None:
            return None
        try:
            stems = {k: np.load(d / f"{k}.npy", allow_pickle=False).astype(dtype, copy=False) for k in STEM_NAMES}
        except (OSError, ValueError):
            return None  # damaged entry: recompute
        if any(len(v) != meta["n_samples"] for v in stems.values()):
            return None
        return stems

    def get_or_compute(self, path: str | Path, cfg: StemsConfig, sr: int, *, y: np.ndarray | None = None,
                       audio_sha256: str | None = None, max_seconds: float | None = None,
                       silence_dbfs: float | None = -80.0, dtype=np.float32) -> tuple[dict[str, np.ndarray], bool]:
        """``(stems, hit)``; on a miss the song is loaded (or ``y`` used), separated and stored.

        Stems come back as ``dtype`` (float32 by default; float16 -- the stored precision -- halves memory).
        """
        sha = audio_sha256 or file_sha256(path)
        key = self.key(sha, cfg, sr)
        cached = self._load(key, dtype)
        if cached is not None:
            return cached, True
        if y is None:
            y = load_mono(path, sr, max_seconds=max_seconds, silence_dbfs=silence_dbfs)
        stems = separate(y, sr, cfg, dtype=np.float16)
        meta = {"key": key, "source": str(path), "audio_sha256": sha, "backend": cfg.backend, "params": stem_params(cfg),
                "sr": int(sr), "n_samples": int(len(y)), "version": STEMS_VERSION, "dtype": "float16",
                "stems": list(STEM_NAMES)}  # no wall-clock figures: a cache entry is byte-identical across re-runs (DVC out)
        self._store(key, stems, meta)
        return {k: v.astype(dtype, copy=False) for k, v in stems.items()}, False

    def _store(self, key: str, stems: dict[str, np.ndarray], meta: dict) -> None:
        final = self.entry_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}.", dir=final.parent))
        try:
            for k, v in stems.items():
                np.save(tmp / f"{k}.npy", v, allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))  # written last: marks a complete entry
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:  # another worker stored the same key first: theirs is identical
                pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._update_index(key, meta)

    def _update_index(self, key: str, meta: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".index.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index_path = self.root / "index.json"
            try:
                index = json.loads(index_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                index = {}
            index[key] = {k: meta[k] for k in ("source", "audio_sha256", "backend", "params", "sr", "n_samples", "version")}
            tmp = index_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
            os.replace(tmp, index_path)

    def index(self) -> dict:
        try:
            return json.loads((self.root / "index.json").read_text())
        except FileNotFoundError:
            return {}
