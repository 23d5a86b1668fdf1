"""Audio input/output with clear errors for bad files.

* ``load_audio(path)`` -> ``(float32 [channels, n], sr)`` at the source rate: what the
  renderer uses (the source file is the reference for rendering).
* ``load_mono(path, sr)`` -> ``float32 [n]`` at the analysis rate. The file is read in
  blocks; each block is downmixed and fed through a streaming resampler (soxr), so
  peak memory is the mono output plus one block -- a 20-minute 48 kHz stereo file
  never needs its full decoded size in memory.
* Every problem is an ``AudioError`` whose ``reason`` is one short code and whose
  message names the file: ``undecodable``, ``empty``, ``silent``, ``nonfinite``,
  ``too_short``, ``too_long``, ``unsupported``. The stages quarantine on it.

Framework-free: numpy / soundfile / soxr only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
REASONS: frozenset[str] = frozenset({"undecodable", "empty", "silent", "nonfinite", "too_short", "too_long", "unsupported"})

DEFAULT_SILENCE_DBFS = -80.0  # a file whose peak is below this is "silent"
_BLOCK_SECONDS = 10.0  # read granularity of load_mono (seconds of source audio per block)


class AudioError(ValueError):
    """A file that cannot be used as a song. ``reason`` is one of ``REASONS``; ``path`` the file."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        if reason not in REASONS:
            raise ValueError(f"unknown AudioError reason {reason!r}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {reason}: {detail}")


# ----------------------------------------------------------------------------- helpers
def _open(path: str | Path) -> sf.SoundFile:
    """Open for reading, mapping every failure onto an AudioError naming the file."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(path, "unsupported", f"extension {path.suffix or '(none)'!r} is not one of {', '.join(AUDIO_EXTENSIONS)}")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError(path, "undecodable", "file not found") from None
    if size == 0:
        raise AudioError(path, "empty", "file has 0 bytes")
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(path, "undecodable", f"cannot decode ({exc})") from exc
    if f.frames == 0 or f.channels == 0:
        f.close()
        raise AudioError(path, "empty", "file holds no audio frames")
    return f


def _check_length(path: str | Path, frames: int, sr: int, max_seconds: float | None) -> None:
    if max_seconds is not None and frames / sr > max_seconds:
        raise AudioError(path, "too_long", f"{frames / sr:.1f} s is longer than the {max_seconds:.0f} s limit (audio.max_seconds)")


def _check_block(path: str | Path, block: np.ndarray, start_frame: int, sr: int) -> None:
    if not np.all(np.isfinite(block)):
        bad = int(np.argmax(~np.isfinite(block).reshape(len(block), -1).all(axis=1)))
        raise AudioError(path, "nonfinite", f"NaN or inf samples (first at {(start_frame + bad) / sr:.3f} s)")


def _check_silent(path: str | Path, peak: float, silence_dbfs: float) -> None:
    if not peak > 10.0 ** (silence_dbfs / 20.0):
        level = "-inf" if peak <= 0 else f"{20 * np.log10(peak):.1f}"
        raise AudioError(path, "silent", f"peak level {level} dBFS is below the {silence_dbfs:.0f} dBFS silence threshold")


# ----------------------------------------------------------------------------- loading
def audio_info(path: str | Path) -> tuple[int, int, int]:
    """(source sample rate, channels, frames) without decoding; AudioError on a bad file."""
    with _open(path) as f:
        return int(f.samplerate), int(f.channels), int(f.frames)


def load_audio(path: str | Path, *, max_seconds: float | None = None,
               silence_dbfs: float = DEFAULT_SILENCE_DBFS) -> tuple[np.ndarray, int]:
    """The whole file at its own rate: ``(float32 [channels, n], sr)``. Checked like ``load_mono``.

    Decoded block by block straight into the ``[channels, n]`` result, so the peak is the
    result plus one block (not the interleaved decode plus its transposed copy).
    """
    with _open(path) as f:
        sr = int(f.samplerate)
        _check_length(path, f.frames, sr, max_seconds)
        out = np.empty((f.channels, f.frames), dtype=np.float32)
        block_frames = max(4096, int(_BLOCK_SECONDS * sr))
        filled = 0
        peak = 0.0
        while filled < f.frames:
            try:
                block = f.read(min(block_frames, f.frames - filled), dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(path, "undecodable", f"decoding failed at {filled / sr:.1f} s ({exc})") from exc
            if not len(block):  # the decoder delivers fewer frames than it reported
                break
            _check_block(path, block, filled, sr)
            out[:, filled:filled + len(block)] = block.T
            peak = max(peak, float(np.max(np.abs(block))))
            filled += len(block)
    if filled == 0:
        raise AudioError(path, "empty", "file holds no audio frames")
    _check_silent(path, peak, silence_dbfs)
    return (out if filled == out.shape[1] else np.ascontiguousarray(out[:, :filled])), sr


def wav_truncation(path: str | Path) -> tuple[int, int] | None:
    """``(frames the header declares, frames the file holds)`` for a RIFF/WAVE file cut short mid-data, else None.

    Decoders silently read a truncated WAV as whatever is there; the header's ``data``
    chunk size says how long it was meant to be. Streamed headers (size 0 or 0xFFFFFFFF)
    and non-WAV files are not judged.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return None
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        pos = 12
        while True:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = fh.read(min(csize, 16))
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
            elif cid == b"data":
                available = size - (pos + 8)
                if not block_align or csize in (0, 0xFFFFFFFF) or available >= csize:
                    return None
                return csize // block_align, max(available, 0) // block_align
            pos += 8 + csize + (csize & 1)


def load_mono(path: str | Path, sr: int, *, max_seconds: float | None = None,
              silence_dbfs: float | None = DEFAULT_SILENCE_DBFS) -> np.ndarray:
    """Mono float32 at ``sr``, decoded block by block (downmix, then streaming resample).

    ``silence_dbfs=None`` accepts silent files (used for ground-truth stems that may be empty).
    """
    with _open(path) as f:
        src_sr = int(f.samplerate)
        _check_length(path, f.frames, src_sr, max_seconds)
        expected = int(np.ceil(f.frames * sr / src_sr)) + 16
        out = np.empty(expected, dtype=np.float32)
        filled = 0
        peak = 0.0
        resampler = None if src_sr == sr else soxr.ResampleStream(src_sr, sr, 1, dtype="float32", quality="HQ")
        block_frames = max(4096, int(_BLOCK_SECONDS * src_sr))
        start = 0
        extra: list[np.ndarray] = []  # only used if a decoder reports fewer frames than it delivers
        while True:
            try:
                block = f.read(block_frames, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(path, "undecodable", f"decoding failed at {start / src_sr:.1f} s ({exc})") from exc
            last = len(block) < block_frames
            if len(block):
                _check_block(path, block, start, src_sr)
                mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
                peak = max(peak, float(mono.max()), -float(mono.min())) if len(mono) else peak
                start += len(block)
            else:
                mono = np.zeros(0, dtype=np.float32)
            chunk = mono if resampler is None else resampler.resample_chunk(mono, last=last)
            n = min(len(chunk), expected - filled)
            out[filled:filled + n] = chunk[:n]
            filled += n
            if n < len(chunk):
                extra.append(np.array(chunk[n:], dtype=np.float32))
            if last:
                break
    if start == 0:
        raise AudioError(path, "empty", "file holds no audio frames")
    if silence_dbfs is not None:
        _check_silent(path, peak, silence_dbfs)
    y = out[:filled]
    if extra:
        y = np.concatenate([y, *extra])
    # the resampler's length can differ by a sample or two: fix it to round(n * sr / src_sr)
    target = int(round(start * sr / src_sr))
    if len(y) > target:
        y = y[:target]
    elif len(y) < target:
        y = np.concatenate([y, np.zeros(target - len(y), dtype=np.float32)])
    return np.ascontiguousarray(y)


def file_sha256(path: str | Path, block: int = 1 << 20) -> str:
    """sha256 hex digest of the file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_wav(path: str | Path, audio: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    """Write ``[channels, n]`` or ``[n]`` audio. Default subtype PCM_16 (clipped to [-1, 1]); ``"FLOAT"`` keeps values.

    Refuses NaN / inf (a render must never write them). The format follows the suffix
    (.wav, .flac, .ogg); the parent folder is created.
    """
    path = Path(path)
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{path}: audio must be [n] or [channels, n], got shape {np.shape(audio)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{path}: refusing to write NaN/inf samples")
    subtype = subtype or ("PCM_16" if path.suffix.lower() in (".wav", ".flac") else None)
    if subtype and subtype.startswith("PCM"):
        a = np.clip(a, -1.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), a.T, int(sr), subtype=subtype)
    return path
