"""``beatedit edit --stems``: each stem of the source cut at exactly the points of the mix.

The source is separated by the project's stem separator (``beatedit.audio.stems.separate``,
backend ``stems.backend``) at the source's own rate, channel by channel, so each stem has the
source's shape ``[channels, n]`` (hpss's STFT scaled to the rate: ``at_rate``). Each stem is then rendered by the EDL the mix was written
with (``render_like``): same segments, gain envelopes and crossfades,
the same ``--exact`` time-stretch to the same length, and the mix's loudness gain. With the
``hpss`` backend the stems' masks sum to one, so the stems sum to the source and their edits
sum to the edited mix (up to float rounding and the WAV's sample format; the time-stretch of
``--exact`` is not linear, so there only the lengths are guaranteed identical). Demucs stems
do not sum to the mix exactly.

The stems are written beside the mix as ``<out>.<stem>.wav`` (``edit.drums.wav``, ...), all
renamed into place together (``beatedit.atomic.replace_together``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from beatedit.atomic import new_temp, replace_together
from beatedit.audio.stems import STEM_NAMES, StemBackendError, _demucs_weights, separate
from beatedit.config import StemsConfig
from beatedit.editing.edl import EDL
from beatedit.editing.render import _exact, _prepared, _render_raw, _write_wav


class StemOutputError(ValueError):
    """Stems cannot be made with this configuration (e.g. demucs without weights); says what to change."""


def stem_path_for(out_wav: str | Path, stem: str) -> Path:
    """``edit.wav`` -> ``edit.drums.wav``."""
    out_wav = Path(out_wav)
    return out_wav.with_name(f"{out_wav.stem}.{stem}.wav")


def stem_paths(out_wav: str | Path) -> dict[str, Path]:
    return {name: stem_path_for(out_wav, name) for name in STEM_NAMES}


def check_stem_backend(cfg: StemsConfig) -> None:
    """Refuse, before any work, a backend that cannot run here (names the setting and what to do)."""
    if cfg.backend == "demucs" and not _demucs_weights(cfg):
        raise StemOutputError(f"--stems: stems.backend is 'demucs' but no Demucs weights are under "
                              f"{Path(cfg.demucs_model_dir).resolve()} (beatedit never downloads them); put them there "
                              "or set stems.backend: hpss")
    if cfg.backend not in ("hpss", "demucs"):
        raise StemOutputError(f"--stems: unknown stems.backend {cfg.backend!r} (hpss | demucs)")


def at_rate(cfg: StemsConfig, sr: int, analysis_sr: int | None) -> StemsConfig:
    """``cfg`` for separating at ``sr`` with the time and frequency resolution it has at ``analysis_sr``.

    hpss's ``n_fft`` / ``hop_length`` are in samples and its kernels in frames and bins: scaling the
    STFT by the rate ratio (rounded, at least 1) keeps the window in seconds and the bins in Hz, so a
    44.1 kHz source is separated like its 22.05 kHz analysis copy. Demucs resamples on its own.
    """
    if cfg.backend != "hpss" or not analysis_sr:
        return cfg
    k = max(1, int(round(sr / analysis_sr)))
    return dataclasses.replace(cfg, n_fft=cfg.n_fft * k, hop_length=cfg.hop_length * k)


def source_stems(source: np.ndarray, sr: int, cfg: StemsConfig, analysis_sr: int | None = None) -> dict[str, np.ndarray]:
    """The source's stems, float32 ``[channels, n]`` each (the source's shape and rate), separated per channel
    (``at_rate(cfg, sr, analysis_sr)``)."""
    cfg = at_rate(cfg, sr, analysis_sr)
    src = np.asarray(source, dtype=np.float32)
    if src.ndim == 1:
        src = src[None, :]
    out = {name: np.empty_like(src) for name in STEM_NAMES}
    for c in range(src.shape[0]):
        try:
            stems = separate(np.ascontiguousarray(src[c]), sr, cfg)
        except StemBackendError as exc:
            raise StemOutputError(f"--stems: {exc}") from None
        for name in STEM_NAMES:
            out[name][c] = stems[name][: src.shape[1]]
    return out


def render_like(written: EDL, source: np.ndarray) -> np.ndarray:
    """Render other audio of the same source (a stem) exactly as ``written``'s mix was rendered.

    ``written`` is the EDL ``write_edit`` wrote (crossfades as played, ``meta["exact_samples"]``
    and ``meta["render"]``): the same segments, gain envelopes and crossfades (the renderer's own
    code), the same time-stretch to the same length, and the mix's loudness gain (not a gain of
    its own), so stems that sum to the source render to audio that sums to the rendered mix.
    Kept out of ``render.py`` so the stages that import the renderer keep their code hash.
    """
    edl, src = _prepared(written, source, None)
    audio, _ = _exact(edl, _render_raw(edl, src))
    gain_db = float((written.meta.get("render") or {}).get("gain_db") or 0.0)
    if gain_db:
        audio = (audio * np.float32(10 ** (gain_db / 20))).astype(np.float32)
    return audio


def render_stems(written: EDL, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each stem rendered as the mix was (``render_like``); all of the mix's length."""
    return {name: render_like(written, audio) for name, audio in stems.items()}


def write_stems(written: EDL, out_wav: str | Path, source: np.ndarray, cfg: StemsConfig,
                wav_subtype: str = "PCM_24", analysis_sr: int | None = None) -> dict[str, Path]:
    """Separate ``source``, cut every stem as ``written`` cut the mix, write ``<out>.<stem>.wav``; returns the paths."""
    stems = source_stems(source, written.source_sr, cfg, analysis_sr)
    paths = stem_paths(out_wav)
    temps: list[tuple[Path, Path]] = []
    try:
        for name in STEM_NAMES:  # one rendered stem in memory at a time
            tmp = new_temp(paths[name])
            temps.append((tmp, paths[name]))
            _write_wav(tmp, render_like(written, stems.pop(name)), written.source_sr, wav_subtype)
        replace_together(temps)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    return paths
