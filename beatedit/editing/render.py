"""Renderer: EDL -> audio, at the source's sample rate and channel count.

Output is the EDL's segments laid end to end, so ``len(out) == edl.n_samples`` exactly (or
``meta["exact_samples"]`` when an exact length was asked for: see below).

* Gain envelope: segment sample ``m`` (0-based) is multiplied by
  ``g0 + (g1 - g0) * m / length`` (FADE_IN / FADE_OUT ramps; 1 -> 1 is a plain copy).
* Splice (a segment whose ``start_sample`` is not its predecessor's ``end_sample``)
  with ``crossfade_samples = C > 0``: an equal-power crossfade *centred on the splice*
  replaces output samples ``[p - C//2, p - C//2 + C)`` (``p`` = the splice's output
  position) with ``a * cos(pi/2 * t) + b * sin(pi/2 * t)``, ``t = (j + 0.5) / C``, where
  ``a`` is the outgoing segment's source continued ``C - C//2`` samples past its end
  and ``b`` the incoming segment's source starting ``C//2`` samples before its start,
  each with its own gain envelope held constant beyond its edges. Source material
  outside the song reads as silence. ``C = 0`` is a hard cut.
* A boundary that is contiguous in the source is not a splice: it is played straight
  through, and any crossfade stored there is ignored.
* Exact length: an EDL whose ``meta["exact_samples"]`` is set (``beatedit edit --exact``) is
  time-stretched as a whole (``beatedit.editing.stretch``, Rubber Band, pitch kept) to exactly
  that many samples after rendering, by at most ``meta["max_stretch"]`` (default 4%); the
  factor used is reported as ``meta["stretch"]`` in the written EDL.
* Optional loudness normalisation to ``target_lufs`` (ITU-R BS.1770 via pyloudnorm),
  then, with ``limit_peak``, a further gain reduction so the sample peak stays <= 1.0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from beatedit.atomic import new_temp, replace_together
from beatedit.config import RenderConfig
from beatedit.editing.edl import EDL, EDLError, Segment
from beatedit.editing.stretch import DEFAULT_MAX_CHANGE, stretch_to_length


def load_source(edl: EDL) -> np.ndarray:
    """Read ``edl.source_path`` as float32 [channels, n]; checks its rate against the EDL."""
    path = Path(edl.source_path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # missing or undecodable
        raise EDLError(f"{path}: cannot read the EDL's source audio ({exc})") from exc
    if sr != edl.source_sr:
        raise EDLError(f"{path}: source is {sr} Hz but the EDL was made for {edl.source_sr} Hz")
    return np.ascontiguousarray(data.T)


def with_crossfade(edl: EDL, crossfade_ms: float) -> EDL:
    """A copy of ``edl`` whose every splice crossfades ``crossfade_ms`` (clipped to the neighbours' lengths)."""
    if not (math.isfinite(crossfade_ms) and crossfade_ms >= 0):
        raise ValueError(f"crossfade_ms must be a finite number >= 0, got {crossfade_ms!r}")
    c = int(round(crossfade_ms * edl.source_sr / 1000.0))
    segs: list[Segment] = []
    for k, s in enumerate(edl.segments):
        xf = 0
        if k and s.start_sample != segs[-1].end_sample:
            xf = min(c, segs[-1].length, s.length)
        segs.append(dataclasses.replace(s, crossfade_samples=xf))
    return dataclasses.replace(edl, segments=segs, meta={**edl.meta, "crossfade_ms": float(crossfade_ms)})


def _gain(seg: Segment, m: np.ndarray) -> np.ndarray:
    """Gain at segment-relative sample offsets ``m`` (held constant outside the segment)."""
    if seg.gain_start == seg.gain_end:
        return np.full(m.shape, seg.gain_start, dtype=np.float32)
    mm = np.clip(m, 0, seg.length).astype(np.float64)
    return (seg.gain_start + (seg.gain_end - seg.gain_start) * mm / seg.length).astype(np.float32)


def _read(src: np.ndarray, lo: int, hi: int, limit: int) -> np.ndarray:
    """src[:, lo:hi] with zeros outside [0, limit)."""
    out = np.zeros((src.shape[0], hi - lo), dtype=np.float32)
    a, b = max(lo, 0), min(hi, limit)
    if b > a:
        out[:, a - lo:b - lo] = src[:, a:b]
    return out


def _check_source(edl: EDL, src: np.ndarray) -> np.ndarray:
    src = np.asarray(src)
    if src.ndim == 1:
        src = src[None, :]
    if src.ndim != 2:
        raise EDLError(f"source audio must be [channels, n], got shape {src.shape}")
    if src.shape[0] != edl.source_channels:
        raise EDLError(f"source audio has {src.shape[0]} channel(s) but the EDL describes {edl.source_channels}")
    slack = max(1, edl.source_sr // 20)  # decoders and resampling disagree on a compressed file's length by a few samples
    need = max(s.end_sample for s in edl.segments)
    if need - src.shape[1] > slack:
        raise EDLError(f"source audio has {src.shape[1]} samples but the EDL reads up to sample {need}")
    if abs(src.shape[1] - edl.source_samples) > slack:
        raise EDLError(f"source audio has {src.shape[1]} samples but the EDL's source has {edl.source_samples} "
                       "(a different file?)")
    if src.shape[1] < need:  # the last beat ends at the analysed length, a few samples past this decoder's: silence there
        src = np.concatenate([src, np.zeros((src.shape[0], need - src.shape[1]), dtype=src.dtype)], axis=1)
    return src.astype(np.float32, copy=False)


def _prepared(edl: EDL, source: np.ndarray | None, crossfade_ms: float | None) -> tuple[EDL, np.ndarray]:
    """The EDL as it will be played (crossfades re-timed when asked, validated) and its checked source audio."""
    if crossfade_ms is not None:
        edl = with_crossfade(edl, crossfade_ms)
    edl.validate()
    return edl, _check_source(edl, load_source(edl) if source is None else source)


def _render_raw(edl: EDL, src: np.ndarray) -> np.ndarray:
    ch = src.shape[0]
    limit = min(src.shape[1], edl.source_samples)
    out = np.empty((ch, edl.n_samples), dtype=np.float32)
    starts = []
    pos = 0
    for seg in edl.segments:
        n = seg.length
        chunk = src[:, seg.start_sample:seg.end_sample]
        if seg.gain_start == 1.0 and seg.gain_end == 1.0:
            out[:, pos:pos + n] = chunk
        else:
            np.multiply(chunk, _gain(seg, np.arange(n)), out=out[:, pos:pos + n])
        starts.append(pos)
        pos += n
    for k in range(1, len(edl.segments)):
        prev, seg = edl.segments[k - 1], edl.segments[k]
        c = seg.crossfade_samples
        if c == 0 or seg.start_sample == prev.end_sample:
            continue
        h1 = c // 2
        h2 = c - h1
        p = starts[k]
        j = np.arange(c)
        a = _read(src, prev.end_sample - h1, prev.end_sample + h2, limit) * _gain(prev, prev.length - h1 + j)
        b = _read(src, seg.start_sample - h1, seg.start_sample + h2, limit) * _gain(seg, j - h1)
        t = (j + 0.5) / c
        out[:, p - h1:p + h2] = a * np.cos(0.5 * np.pi * t).astype(np.float32) + b * np.sin(0.5 * np.pi * t).astype(np.float32)
    return out


def loudness_normalise(audio: np.ndarray, sr: int, target_lufs: float, limit_peak: bool = True) -> tuple[np.ndarray, dict]:
    """Scale ``audio`` [ch, n] to ``target_lufs`` integrated loudness; returns (audio, info)."""
    import pyloudnorm as pyln

    meter = pyln.Meter(sr)
    if audio.shape[1] < int(round(meter.block_size * sr)):
        raise ValueError(f"render is {audio.shape[1] / sr:.3f} s long: too short to measure loudness "
                         f"(needs >= {meter.block_size} s); set render.target_lufs to null")
    measured = float(meter.integrated_loudness(audio.T.astype(np.float64)))
    info = {"target_lufs": float(target_lufs), "measured_lufs": measured, "gain_db": 0.0, "peak_limited": False}
    if not math.isfinite(measured):  # silence: nothing to normalise
        return audio, info
    gain_db = float(target_lufs) - measured
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if limit_peak and peak > 0 and peak * 10 ** (gain_db / 20) > 1.0:
        gain_db = -20 * math.log10(peak)
        info["peak_limited"] = True
    info["gain_db"] = gain_db
    return (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32), info


def render(edl: EDL, source: np.ndarray | None = None, crossfade_ms: float | None = None,
           target_lufs: float | None = None, limit_peak: bool = True) -> np.ndarray:
    """Render ``edl`` to float32 [channels, edl.n_samples] at the source's rate.

    ``source``: the source audio [channels, n] (or [n] for mono); loaded from
    ``edl.source_path`` when omitted. ``crossfade_ms``: re-time every splice's
    crossfade (default: the EDL's own). ``target_lufs``: loudness-normalise.
    Invalid EDLs raise ``EDLError`` naming the problem.
    """
    edl, src = _prepared(edl, source, crossfade_ms)
    out, _ = _exact(edl, _render_raw(edl, src))
    if target_lufs is not None:
        out, _ = loudness_normalise(out, edl.source_sr, target_lufs, limit_peak)
    return out


def _exact(edl: EDL, audio: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Stretch to ``meta["exact_samples"]`` when the EDL asks for an exact length; returns (audio, factor)."""
    n = edl.meta.get("exact_samples")
    if n is None:
        return audio, None
    return stretch_to_length(audio, edl.source_sr, int(n), float(edl.meta.get("max_stretch", DEFAULT_MAX_CHANGE)))


def edl_path_for(out_wav: str | Path) -> Path:
    """``out.wav`` -> ``out.edl.json``."""
    return Path(out_wav).with_suffix(".edl.json")


class OutputLocationError(OSError):
    """The edit cannot be written where asked (a folder, an unwritable place, a full disk); names the path."""


#: bytes per sample of each ``render.wav_subtype`` (for the free-space check)
WAV_BYTES = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}
_WRITE_BLOCK = 1 << 16  # frames per soundfile write call: the encoder's copy stays one block


def check_output(out_wav: str | Path, need_bytes: int = 0) -> None:
    """Refuse, before any work, an output the WAV + EDL cannot be written to.

    The WAV and its ``.edl.json`` must not be folders; the nearest existing ancestor of their
    folder must be a writable folder; ``need_bytes`` (an upper bound of what will be written)
    must fit in the free space there.
    """
    out_wav = Path(out_wav)
    for p in (out_wav, edl_path_for(out_wav)):
        if p.is_dir():
            raise OutputLocationError(f"{p}: is a folder; give a file name ending in .wav")
    folder = out_wav.parent
    while not folder.exists():
        if folder.is_symlink():
            raise OutputLocationError(f"{folder}: a broken symbolic link; cannot create {out_wav}")
        folder = folder.parent
    if not folder.is_dir():
        raise OutputLocationError(f"{folder}: not a folder; cannot create {out_wav}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputLocationError(f"{folder}: folder is not writable; cannot create {out_wav}")
    if need_bytes:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise OutputLocationError(f"{folder}: not enough free space for {out_wav} ({free / 1e6:.1f} MB free, "
                                      f"up to {need_bytes / 1e6:.1f} MB needed)")


def _write_wav(path: Path, audio: np.ndarray, sr: int, subtype: str) -> None:
    """Write [channels, n] audio block by block (no full interleaved copy); failures become OSError."""
    try:
        with sf.SoundFile(str(path), "w", sr, audio.shape[0], subtype=subtype, format="WAV") as f:
            for i in range(0, audio.shape[1], _WRITE_BLOCK):
                f.write(audio[:, i:i + _WRITE_BLOCK].T)
    except OSError:
        raise
    except Exception as exc:  # libsndfile reports a full disk or a file-size limit as "System error"
        need = audio.shape[0] * audio.shape[1] * WAV_BYTES.get(subtype, 4)
        free = shutil.disk_usage(path.parent).free
        why = (f"no space left ({free / 1e6:.1f} MB free, {need / 1e6:.1f} MB needed)" if free < need
               else f"{exc} (a full disk, a file-size limit or a failing device)")
        raise OSError(f"{path}: writing the WAV failed: {why}") from exc


def write_edit(edl: EDL, out_wav: str | Path, source: np.ndarray | None = None,
               cfg: RenderConfig | None = None, crossfade_ms: float | None = None) -> tuple[Path, Path]:
    """Render ``edl`` and write ``out_wav`` plus its EDL JSON beside it; returns (wav path, EDL path).

    The pair is one unit: the output location is checked first (``check_output``), both
    files are written to temporaries in the target folder (mode ``0o666 & ~umask``) and
    renamed into place only after everything rendered and encoded, WAV first, then EDL; if
    the second rename fails the previous pair is restored (``beatedit.atomic.replace_together``).
    So an error leaves the previous files (or none), never an orphan EDL or a mismatched pair.
    The written EDL is the one rendered (re-timed crossfades included) with
    loudness-normalisation details under ``meta["render"]``.
    """
    cfg = cfg or RenderConfig()
    out_wav = Path(out_wav)
    check_output(out_wav)
    edl, src = _prepared(edl, source, crossfade_ms)
    audio, factor = _exact(edl, _render_raw(edl, src))
    render_info: dict = {"target_lufs": None, "wav_subtype": cfg.wav_subtype}
    if factor is not None:
        edl = dataclasses.replace(edl, meta={**edl.meta, "stretch": factor})
    if cfg.target_lufs is not None:
        audio, info = loudness_normalise(audio, edl.source_sr, cfg.target_lufs, cfg.limit_peak)
        render_info.update(info)
    written = dataclasses.replace(edl, meta={**edl.meta, "render": render_info})
    text = json.dumps(written.to_dict(), indent=1, sort_keys=True)
    json_path = edl_path_for(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    tmp_wav = tmp_json = None
    try:
        tmp_wav = new_temp(out_wav)
        _write_wav(tmp_wav, audio, edl.source_sr, cfg.wav_subtype)
        tmp_json = new_temp(json_path)
        tmp_json.write_text(text)
        replace_together([(tmp_wav, out_wav), (tmp_json, json_path)])
    finally:
        for t in (tmp_wav, tmp_json):
            if t is not None and t.exists():
                t.unlink()
    return out_wav, json_path
