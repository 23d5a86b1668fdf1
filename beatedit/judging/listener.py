"""The simulated listener: the project's *gold* scorer of whole edits.

Where no human raters are available, this module stands in for them: it labels
the synthetic preference pairs the reward model learns from (``prefer``), and it
is the yardstick of every evaluation (policy vs baselines, promotion). It is
deliberately transparent -- eight documented components, each in [0, 1] -- and
deliberately independent of the dense reward (``beatedit/judging/dense.py``): it does
not import it and, wherever it can, it judges from different evidence, so a
policy cannot win by optimising one formula.

``score_edit(song, edit, target_ratio | target_seconds, audio=None, sr=None, cfg)`` reads the
edit's ``output_beats`` (ordered ``(source_beat, gain0, gain1)``; a *splice* is a pair of
consecutive output beats whose source indices are not ``i, i+1``; a *piece* is a run between
splices) and returns eight components, each backed by what people who edit music value
(BBC R&D 2014 listening study; arXiv 2305.07347 music rearrangement; the fitting tools
editors use: exact length, keep the real ending, no audible seams, few pieces):

- ``duration``: the length editors asked for, in seconds. ``exp(-max(0, |out - target| -
  tol) / scale)`` with ``tol = duration_tolerance_beats`` and ``scale =
  duration_scale_beats`` median beats: within one beat is perfect (what an editor can trim
  by ear), four beats off costs ~63%. The dense reward has no duration term.
- ``alignment``: are the cuts where a musician would cut? For every splice, the
  out-point (first source beat not played) and the in-point (first beat played
  after it) each earn 1 on a phrase/section start or the song's start/end,
  ``bar_credit`` on another downbeat, 0 elsewhere; the splice scores their mean,
  or ``phase_credit`` when both miss the bar lines but keep the bar phase. Mean
  over splices (1 with none). Cuts off the bar grid were rated significantly lower
  (BBC R&D 2014).
- ``seams``: what a listener hears at each splice, measured on the *rendered
  audio*. With ``audio`` (the source, mono, at the analysis rate ``sr``) the
  listener renders the edit itself (``render_mono``: the output beats laid end
  to end with their gain ramps and a ``seam_crossfade_ms`` equal-power
  crossfade at each splice), then compares ``seam_window_ms`` of audio before vs
  after each splice: loudness jump (dB) and spectral-shape jump (mean absolute
  difference of mean-removed log band energies over 24 log-spaced bands). The
  same two numbers measured at every natural beat boundary of the source give
  the song's own discontinuity level, per bar position of the incoming beat;
  only the excess over its ``seam_baseline_pct`` percentile is penalised.
  Without audio, the same measurement is made on beat features. ``seams = (1 -
  seam_worst_weight) x mean + seam_worst_weight x worst`` (a single bad seam is
  what people remember); 1 with no splice.
- ``ending``: the song's real ending (its last beat, which spans the natural decay
  to the end of the file, played at full gain) 1; an abrupt stop at a section end
  (a cadence) ``section_end_credit``; a fade-out ``fade_credit`` (the fallback: fades
  "may remove the intended end" and sound unpolished, arXiv 2305.07347), times
  ``long_fade_factor`` beyond ``long_fade_bars``; an abrupt stop at a phrase end,
  bar end or mid-bar ``phrase_end_credit`` / ``bar_end_credit`` / 0.
- ``start``: the song's real start (beat 0 spans everything before the first
  detected beat, pickups included) 1; a fade-in ``fade_in_credit``; entering at
  the first downbeat (pickup dropped), a later section, phrase or bar start
  ``first_downbeat_credit`` / ``section_start_credit`` / ``phrase_start_credit`` /
  ``bar_start_credit``; elsewhere 0.
- ``arc``: the song's shape kept as far as the length allows. Sections
  (``song.section_starts``; phrases when there are fewer than two) get *types*
  (``section_types``: sections with alike timbre and harmony share one). Mean of
  three: coverage (share of types heard for at least ``min_piece_bars`` bars, out of
  as many types as the target length can hold), order (share of splices that jump
  forward: the song's order kept) and the last chorus (the loudest sections, within
  ``chorus_tolerance_db``, are the chorus; the share of the *last* chorus kept, or
  ``any_chorus_credit`` x the best-kept other instance).
- ``fragmentation``: ``1 / (1 + short_piece_cost x pieces shorter than
  min_piece_bars)`` times ``exp(-excess / max_free_pieces)`` for pieces beyond
  ``max_free_pieces``: many short sections were rated significantly lower (BBC R&D 2014).
- ``repetition``: mean of looping (loop-backs landing in one phrase beyond
  ``max_loops_per_phrase`` cost ``1 / (1 + excess)``) and repeated material (a share of
  the output repeating already-played beats above ``max_repeat_share`` decays
  linearly to 0 at twice that share).

``total`` is the weighted mean of the components (``ListenerConfig.w_*``,
normalised by their sum). The returned dict also holds diagnostics: ``ratio``
(achieved output/source duration), ``seconds``, ``error_seconds`` (output minus target),
``n_splices`` and ``n_pieces``.

``prefer(score_a, score_b, noise, rng)`` turns two scores into a sampled
preference with a Bradley-Terry model: ``p_a = sigmoid((a - b) / noise)``,
choice 0 (A) with probability ``p_a``; ``noise == 0`` is deterministic.

Framework-free (numpy only). Per-song and per-audio derived data are cached on
the ``SongAnalysis`` object, so scoring many edits of one song is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from beatedit.config import ListenerConfig
from beatedit.audio.schema import COLUMNS, col
from beatedit.audio.song import SongAnalysis
from beatedit.editing.program import output_arrays

COMPONENTS: tuple[str, ...] = ("duration", "alignment", "seams", "ending", "start", "arc", "fragmentation", "repetition")


class ListenerScore(TypedDict):
    """What ``score_edit`` returns (a plain dict with these keys)."""

    duration: float  # [0, 1] fit to the target length in seconds (tolerance: one beat)
    alignment: float  # [0, 1] cuts on phrase / bar lines
    seams: float  # [0, 1] loudness / spectral continuity at splices (rendered audio when given)
    ending: float  # [0, 1] the song's real ending > a cadence at a section end > a fade > an abrupt stop
    start: float  # [0, 1] the song's real start (pre-roll and pickup included) > a fade-in > a later entry
    arc: float  # [0, 1] section types kept in order, the last chorus before the ending
    fragmentation: float  # [0, 1] few pieces, none shorter than ~2 bars
    repetition: float  # [0, 1] no excessive looping or repeated material
    total: float  # weighted mean of the components
    ratio: float  # diagnostic: achieved output / source duration
    seconds: float  # diagnostic: achieved output duration
    error_seconds: float  # diagnostic: output duration minus the target
    n_splices: float  # diagnostic: number of splices
    n_pieces: float  # diagnostic: number of contiguous source pieces in the output

_FADED = 0.05  # a gain at or below this is silent at that end of a beat
_N_BANDS = 24
_POWER_FLOOR = 1e-9  # ~ -90 dB: digital silence has a flat spectrum at this floor
_RMS_SUB_FIRST = col("rms_sub_0")
_RMS_SUB_LAST = col("rms_sub_3")
_RMS = col("rms")
_LOGMEL = np.array([col(f"logmel_{k}") for k in range(24)])
_MFCC = np.array([col(f"mfcc_{k}") for k in range(20)])
_CHROMA = np.array([i for i, c in enumerate(COLUMNS) if c.name.startswith("chroma_")])


# ----------------------------------------------------------------------------- per-song context
@dataclass
class _SongCtx:
    key: tuple
    n: int
    bounds: np.ndarray  # float64 [n + 1] seconds
    level: np.ndarray  # [n + 1]: 3 section start / song start / end, 2 phrase start, 1 downbeat, 0 none
    bib: np.ndarray  # [n]
    meter: int
    phrase_id: np.ndarray  # [n]
    unit_starts: np.ndarray  # material units (sections or phrases)
    unit_ends: np.ndarray
    first_downbeat: int
    nat_loud_feat: np.ndarray  # features path: natural jump thresholds per bar position of the incoming beat
    nat_spec_feat: np.ndarray
    ibi: float  # median beat duration, seconds: the unit of the duration tolerance
    unit_type: np.ndarray  # [units] section type id (sections that sound alike share one)


def _song_ctx(song: SongAnalysis, cfg: ListenerConfig) -> _SongCtx:
    key = (id(song.features), id(song.beat_times), id(song.bar_starts), id(song.phrase_starts), id(song.section_starts),
           id(song.beat_in_bar), float(song.duration), int(song.meter), float(cfg.seam_baseline_pct),
           float(cfg.section_type_similarity))
    c = song.__dict__.get("_beatedit_listener_ctx")
    if c is not None and c.key == key:
        return c
    n = song.n_beats
    meter = max(1, int(song.meter))
    bars = np.asarray(song.bar_starts, dtype=np.int64)
    bars = bars[(bars >= 0) & (bars < n)]
    first_db = int(bars[0]) if len(bars) else 0
    phrases = np.asarray(song.phrase_starts, dtype=np.int64)
    if len(phrases) == 0:  # the listener's own fallback: 4-bar phrases from the first downbeat
        phrases = bars[::4] if len(bars) else np.arange(0, n, 4 * meter, dtype=np.int64)
    phrases = phrases[(phrases >= 0) & (phrases < n)]
    sections = np.asarray(song.section_starts, dtype=np.int64)
    sections = sections[(sections >= 0) & (sections < n)]
    level = np.zeros(n + 1, dtype=np.int64)
    level[bars] = 1
    level[phrases] = 2
    level[sections] = 3
    level[0] = 3
    level[n] = 3
    pstarts = np.unique(np.concatenate([[0], phrases])).astype(np.int64)
    phrase_id = np.searchsorted(pstarts, np.arange(n), side="right") - 1
    units = sections if len(sections) >= 2 else phrases
    ustarts = np.unique(np.concatenate([[0], units])).astype(np.int64)
    uends = np.concatenate([ustarts[1:], [n]]).astype(np.int64)
    f = song.features
    # natural discontinuities between consecutive source beats, from features
    bib = np.mod(np.asarray(song.beat_in_bar, dtype=np.int64), meter)
    i = np.arange(n - 1)
    dl, ds = _feature_jumps(f, i, i + 1, np.ones(n - 1), np.ones(n - 1))
    nat_l, nat_s = _natural_thresholds(dl, ds, bib[1:], meter, cfg.seam_baseline_pct)
    bt = np.asarray(song.beat_times, dtype=np.float64)
    ibi = float(np.median(np.diff(bt))) if n > 1 else float(song.duration)
    c = _SongCtx(key, n, np.asarray(song.beat_bounds, dtype=np.float64), level, bib,
                 meter, phrase_id, ustarts, uends, first_db, nat_l, nat_s, ibi,
                 section_types(f, ustarts, uends, cfg.section_type_similarity))
    song.__dict__["_beatedit_listener_ctx"] = c
    return c


def section_types(features: np.ndarray, starts: np.ndarray, ends: np.ndarray, similarity: float) -> np.ndarray:
    """Section type ids (0, 1, ...) in order of first appearance: sections that sound alike share a type.

    A section's fingerprint is its mean timbre (MFCC, z-scored over the song) and mean harmony (chroma,
    centred); sections join the first type whose running fingerprint has cosine similarity >= ``similarity``
    in both. The song's arc is this sequence of types (intro, verse, chorus, verse, chorus, outro -> 0 1 2 1 2 3):
    what rearrangement research keeps when it restricts cuts to segments with the same musical function."""
    mf = features[:, _MFCC].astype(np.float64)
    mf = (mf - mf.mean(axis=0)) / (mf.std(axis=0) + 1e-9)
    ch = features[:, _CHROMA].astype(np.float64)
    ch = ch - ch.mean(axis=1, keepdims=True)
    types = np.zeros(len(starts), dtype=np.int64)
    cents: list[tuple[np.ndarray, np.ndarray, int]] = []
    for u, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        m, c = mf[a:b].mean(axis=0), ch[a:b].mean(axis=0)
        best, best_sim = -1, -np.inf
        for t, (cm, cc, k) in enumerate(cents):
            sim = min(_cos(m, cm), _cos(c, cc))
            if sim >= similarity and sim > best_sim:
                best, best_sim = t, sim
        if best < 0:
            cents.append((m, c, 1))
            types[u] = len(cents) - 1
        else:
            cm, cc, k = cents[best]
            cents[best] = ((cm * k + m) / (k + 1), (cc * k + c) / (k + 1), k + 1)
            types[u] = best
    return types


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _feature_jumps(f: np.ndarray, left: np.ndarray, right: np.ndarray, gain_out: np.ndarray, gain_in: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Seam jumps from beat features: loudness of the outgoing beat's last quarter vs the incoming beat's
    first quarter (``rms_sub_*`` times the gains there), and the log-mel spectral shape of the two beats."""
    lb = 20 * np.log10(np.maximum(f[left, _RMS_SUB_LAST].astype(np.float64) * gain_out, 1e-4))
    la = 20 * np.log10(np.maximum(f[right, _RMS_SUB_FIRST].astype(np.float64) * gain_in, 1e-4))
    return _pair_jumps(lb, f[left][:, _LOGMEL].astype(np.float64), la, f[right][:, _LOGMEL].astype(np.float64))


def _natural_thresholds(dl: np.ndarray, ds: np.ndarray, bib_in: np.ndarray, meter: int, pct: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Per bar position of the incoming beat: the ``pct`` percentile of the song's natural loudness and
    spectral jumps into beats at that position (downbeats are naturally louder entries than off-beats).
    Positions with fewer than 4 natural examples use the song-wide percentile. Returns two [meter] arrays."""
    tl = np.full(meter, np.percentile(dl, pct) if len(dl) else 0.0)
    ts = np.full(meter, np.percentile(ds, pct) if len(ds) else 0.0)
    for p in range(meter):
        sel = bib_in == p
        if sel.sum() >= 4:
            tl[p] = np.percentile(dl[sel], pct)
            ts[p] = np.percentile(ds[sel], pct)
    return tl, ts


def _shape(band_db: np.ndarray) -> np.ndarray:
    """Spectral shape: log band energies with their mean (overall level) removed."""
    return band_db - band_db.mean(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- audio
def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio)
    if a.ndim == 2:
        a = a.mean(axis=0) if a.shape[0] <= a.shape[1] else a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"listener audio must be mono [n] (or [channels, n]), got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def _sample_bounds(song: SongAnalysis, sr: int, n_samples: int) -> np.ndarray:
    return np.clip(np.rint(np.asarray(song.beat_bounds, dtype=np.float64) * sr).astype(np.int64), 0, n_samples)


def render_mono(song: SongAnalysis, edit: Any, audio: np.ndarray, sr: int, crossfade_ms: float = 10.0
                ) -> tuple[np.ndarray, np.ndarray]:
    """The listener's own render of ``edit`` from the mono source ``audio`` at ``sr``.

    Output beats are laid end to end (beat ``i`` spans ``rint(beat_bounds * sr)``),
    each with its linear gain ramp; at every splice an equal-power crossfade of
    ``crossfade_ms`` centred on the splice reads half the crossfade of source
    material beyond each side. Returns ``(y float32 [n_out], splice_positions int64)``
    (output sample index of each splice).
    """
    y_src = _mono(audio)
    src, g0, g1 = output_arrays(edit)
    B = _sample_bounds(song, sr, len(y_src))
    a, b = B[src], B[src + 1]
    L = b - a
    offs = np.concatenate([[0], np.cumsum(L)]).astype(np.int64)
    y = np.zeros(int(offs[-1]), dtype=np.float32)
    if len(src) == 0:
        return y, np.zeros(0, dtype=np.int64)
    # copy contiguous runs in one slice each
    brk = np.flatnonzero(src[1:] != src[:-1] + 1)
    first = np.concatenate([[0], brk + 1])
    last = np.concatenate([brk, [len(src) - 1]])
    for f, l in zip(first.tolist(), last.tolist()):
        y[offs[f]:offs[l + 1]] = y_src[a[f]:b[l]]
    # gain ramps on the beats that have them
    for k in np.flatnonzero((g0 != 1.0) | (g1 != 1.0)).tolist():
        if L[k] > 0:
            y[offs[k]:offs[k + 1]] *= (g0[k] + (g1[k] - g0[k]) * np.arange(L[k]) / L[k]).astype(np.float32)
    # centred equal-power crossfades at splices
    splices = brk + 1  # output beat index that starts after each splice
    pos = offs[splices]
    h = int(round(crossfade_ms * sr / 2000.0))
    if h > 0 and len(pos):
        pad = np.concatenate([np.zeros(h, np.float32), y_src, np.zeros(h, np.float32)])
        j = np.arange(-h, h)
        theta = (j + h + 0.5) / (2 * h) * (np.pi / 2)
        fo, fi = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        out_end = b[splices - 1]  # source sample where the outgoing beat ends
        in_start = a[splices]
        ok = (pos - h >= 0) & (pos + h <= len(y))
        for p, e, s, go, gi in zip(pos[ok].tolist(), out_end[ok].tolist(), in_start[ok].tolist(),
                                   g1[splices - 1][ok].tolist(), g0[splices][ok].tolist()):
            y[p - h:p + h] = fo * go * pad[e + h + j] + fi * gi * pad[s + h + j]
    return y, pos.astype(np.int64)


@dataclass
class _AudioCtx:
    key: tuple
    W: int
    nfft: int
    window: np.ndarray
    band_of_bin: np.ndarray  # band index per rfft bin, -1 = unused
    band_matrix: np.ndarray  # [used bins, bands]: mean power per band
    nat_loud: np.ndarray  # natural jump thresholds per bar position of the incoming beat
    nat_spec: np.ndarray
    unit_db: np.ndarray  # loudness of each material unit


_DYNAMIC_RANGE_DB = 40.0  # band energies more than this below the louder window's peak band are clipped


def _band_db(frames: np.ndarray, ctx: _AudioCtx) -> tuple[np.ndarray, np.ndarray]:
    """frames [k, W] -> (loudness dB [k], log band energies dB [k, bands])."""
    f64 = frames.astype(np.float64)
    loud = 10 * np.log10(np.mean(f64 ** 2, axis=1) + _POWER_FLOOR)
    spec = np.abs(np.fft.rfft(f64 * ctx.window, n=ctx.nfft, axis=1)) ** 2 / (ctx.window ** 2).sum()
    band = spec[:, ctx.band_of_bin >= 0] @ ctx.band_matrix
    return loud, 10 * np.log10(band + _POWER_FLOOR)


def _pair_jumps(lb: np.ndarray, bb: np.ndarray, la: np.ndarray, ba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loudness jump |la - lb| and spectral-shape jump (mean |difference| of mean-removed band dB, both
    windows clipped to ``_DYNAMIC_RANGE_DB`` below the pair's loudest band)."""
    top = np.maximum(bb.max(axis=1), ba.max(axis=1))[:, None] - _DYNAMIC_RANGE_DB
    sb, sa = _shape(np.maximum(bb, top)), _shape(np.maximum(ba, top))
    return np.abs(la - lb), np.abs(sa - sb).mean(axis=1)


def _discontinuity(y: np.ndarray, pos: np.ndarray, ctx: _AudioCtx, guard: int) -> tuple[np.ndarray, np.ndarray]:
    """Loudness and spectral-shape jump between the W samples before ``pos - guard`` and after ``pos + guard``
    (the guard skips the crossfade itself)."""
    W = ctx.W
    pos = np.clip(pos, W + guard, len(y) - W - guard)
    lb, bb = _band_db(y[(pos - guard)[:, None] + np.arange(-W, 0)[None, :]], ctx)
    la, ba = _band_db(y[(pos + guard)[:, None] + np.arange(W)[None, :]], ctx)
    return _pair_jumps(lb, bb, la, ba)


def _guard(cfg: ListenerConfig, sr: int) -> int:
    return int(round(cfg.seam_crossfade_ms * sr / 2000.0))


def _audio_ctx(song: SongAnalysis, sc: _SongCtx, y: np.ndarray, sr: int, cfg: ListenerConfig) -> _AudioCtx:
    step = max(1, len(y) // 4096)
    key = (id(y), len(y), int(sr), float(y[::step].sum(dtype=np.float64)), sc.key, float(cfg.seam_window_ms),
           float(cfg.seam_crossfade_ms))
    c = song.__dict__.get("_beatedit_listener_audio")
    if c is not None and c.key == key:
        return c
    if abs(len(y) / sr - song.duration) > max(1.0, 0.02 * song.duration):
        raise ValueError(f"listener audio for {song.song_id!r} lasts {len(y) / sr:.2f} s at {sr} Hz but the song "
                         f"lasts {song.duration:.2f} s (wrong file or wrong sample rate?)")
    W = max(16, int(round(cfg.seam_window_ms * sr / 1000.0)))
    if 2 * (W + _guard(cfg, sr)) >= len(y):
        raise ValueError(f"listener audio for {song.song_id!r} is too short for {cfg.seam_window_ms} ms seam windows")
    nfft = 1 << int(math.ceil(math.log2(W)))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
    edges = np.geomspace(50.0, min(0.45 * sr, 12000.0), _N_BANDS + 1)
    bob = np.searchsorted(edges, freqs, side="right") - 1
    bob[(freqs < edges[0]) | (freqs >= edges[-1])] = -1
    present = np.unique(bob[bob >= 0])
    remap = np.full(_N_BANDS, -1)
    remap[present] = np.arange(len(present))
    bob = np.where(bob >= 0, remap[np.maximum(bob, 0)], -1)
    used = bob[bob >= 0]
    bm = np.zeros((len(used), len(present)))
    bm[np.arange(len(used)), used] = 1.0
    bm /= np.maximum(bm.sum(axis=0, keepdims=True), 1.0)
    c = _AudioCtx(key, W, nfft, np.hanning(W), bob, bm, np.zeros(sc.meter), np.zeros(sc.meter), np.zeros(0))
    B = _sample_bounds(song, sr, len(y))
    g = _guard(cfg, sr)
    nat = B[1:sc.n]
    ok = (nat - W - g >= 0) & (nat + W + g <= len(y))
    if ok.any():
        dl, ds = _discontinuity(y, nat[ok], c, g)
        c.nat_loud, c.nat_spec = _natural_thresholds(dl, ds, sc.bib[1:][ok], sc.meter, cfg.seam_baseline_pct)
    cs = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
    ua, ub = B[sc.unit_starts], B[sc.unit_ends]
    c.unit_db = 10 * np.log10((cs[ub] - cs[ua]) / np.maximum(ub - ua, 1) + 1e-12)
    song.__dict__["_beatedit_listener_audio"] = c
    return c


# ----------------------------------------------------------------------------- scoring
def _seam_scores(dl: np.ndarray, ds: np.ndarray, nat_l: np.ndarray, nat_s: np.ndarray, cfg: ListenerConfig) -> np.ndarray:
    sl = np.exp(-np.maximum(dl - nat_l, 0.0) / cfg.seam_loud_scale_db)
    ss = np.exp(-np.maximum(ds - nat_s, 0.0) / cfg.seam_spec_scale_db)
    return 0.5 * (sl + ss)


def score_edit(song: SongAnalysis, edit: Any, target_ratio: float | None = None, audio: np.ndarray | None = None,
               sr: int | None = None, cfg: ListenerConfig | None = None, *, audio_mono: np.ndarray | None = None,
               target_seconds: float | None = None) -> ListenerScore:
    """Gold score of one edit (see the module docstring).

    The target is ``target_seconds`` or ``target_ratio * song.duration`` (``target_ratio``
    defaults to ``edit.target_ratio``). ``audio`` (alias ``audio_mono``): the source,
    mono, at rate ``sr`` (the analysis rate); without it seams and section loudness are
    judged from beat features. Returns the components, ``total`` and diagnostics.
    """
    cfg = cfg or ListenerConfig()
    if audio is None:
        audio = audio_mono
    if target_seconds is None:
        if target_ratio is None:
            target_ratio = getattr(edit, "target_ratio", None)
        if target_ratio is None:
            raise ValueError("score_edit needs a target (target_seconds or target_ratio; the edit carries none)")
        target_seconds = float(target_ratio) * float(song.duration)
    target_seconds = float(target_seconds)
    if not (math.isfinite(target_seconds) and target_seconds > 0):
        raise ValueError(f"score_edit: the target must be a positive number of seconds, got {target_seconds!r}")
    src, g0, g1 = output_arrays(edit)
    m = len(src)
    if m == 0:
        return {**{k: 0.0 for k in COMPONENTS}, "total": 0.0, "ratio": 0.0, "seconds": 0.0,
                "error_seconds": -target_seconds, "n_splices": 0.0, "n_pieces": 0.0}
    sc = _song_ctx(song, cfg)
    n = sc.n
    if src.min() < 0 or src.max() >= n:
        raise ValueError(f"edit of {song.song_id!r} plays a beat outside 0..{n - 1}")
    sp = np.flatnonzero(src[1:] != src[:-1] + 1)
    left, right = src[sp], src[sp + 1]
    out_pt = left + 1  # first source beat not played
    n_sp = len(sp)
    if audio is not None:
        if sr is None:
            raise ValueError("score_edit: audio given without its sample rate sr")
        y_src = _mono(audio)
        ac = _audio_ctx(song, sc, y_src, int(sr), cfg)

    # duration: seconds, one beat of tolerance (what an editor fitting a cue can still trim by ear)
    beat_s = sc.bounds[src + 1] - sc.bounds[src]
    seconds = float(beat_s.sum())
    err = seconds - target_seconds
    duration = math.exp(-max(0.0, abs(err) - cfg.duration_tolerance_beats * sc.ibi) / (cfg.duration_scale_beats * sc.ibi))

    # alignment
    credit = np.array([0.0, cfg.bar_credit, 1.0, 1.0])
    if n_sp:
        per = 0.5 * (credit[sc.level[out_pt]] + credit[sc.level[right]])
        expected_bib = np.where(out_pt < n, sc.bib[np.minimum(out_pt, n - 1)], (sc.bib[n - 1] + 1) % sc.meter)
        phase_kept = sc.bib[right] == expected_bib
        per = np.where((per == 0) & phase_kept, cfg.phase_credit, per)
        alignment = float(per.mean())
    else:
        alignment = 1.0

    # seams
    if n_sp == 0:
        seams = 1.0
    else:
        if audio is not None:
            y, pos = render_mono(song, np.stack([src, g0, g1], axis=1), y_src, int(sr), cfg.seam_crossfade_ms)
            dl, ds = _discontinuity(y, pos, ac, _guard(cfg, int(sr)))
            s = _seam_scores(dl, ds, ac.nat_loud[sc.bib[right]], ac.nat_spec[sc.bib[right]], cfg)
        else:
            dl, ds = _feature_jumps(song.features, left, right, g1[sp], g0[sp + 1])
            s = _seam_scores(dl, ds, sc.nat_loud_feat[sc.bib[right]], sc.nat_spec_feat[sc.bib[right]], cfg)
        w = cfg.seam_worst_weight
        seams = float((1.0 - w) * s.mean() + w * s.min())

    # ending: the real ending > a cadence at a section end > a fade (the fallback) > an abrupt stop
    end_pt = int(src[-1]) + 1
    bar_s = sc.ibi * sc.meter
    if g1[-1] <= _FADED:
        fade_len = float(beat_s[_trailing_ramp(g0, g1):].sum())
        ending = cfg.fade_credit * (1.0 if fade_len <= cfg.long_fade_bars * bar_s else cfg.long_fade_factor)
    elif end_pt == n:
        ending = 1.0
    else:
        ending = {3: cfg.section_end_credit, 2: cfg.phrase_end_credit, 1: cfg.bar_end_credit}.get(int(sc.level[end_pt]), 0.0)

    # start: the real start (beat 0 spans the pre-roll and any pickup) > a fade-in > a later entry point
    first = int(src[0])
    if g0[0] <= _FADED:
        start = cfg.fade_in_credit
    elif first == 0:
        start = 1.0
    elif first == sc.first_downbeat:
        start = cfg.first_downbeat_credit
    else:
        start = {3: cfg.section_start_credit, 2: cfg.phrase_start_credit, 1: cfg.bar_start_credit}.get(
            int(sc.level[first]), 0.0)

    # arc: every section type kept (as far as the length allows), in the song's order, the last chorus kept
    if audio is not None:
        unit_db = ac.unit_db
    else:
        bd = np.diff(sc.bounds)
        e = song.features[:, _RMS].astype(np.float64) ** 2 * bd
        cs = np.concatenate([[0.0], np.cumsum(e)])
        ct = np.concatenate([[0.0], np.cumsum(bd)])
        unit_db = 10 * np.log10((cs[sc.unit_ends] - cs[sc.unit_starts])
                                / np.maximum(ct[sc.unit_ends] - ct[sc.unit_starts], 1e-9) + 1e-12)
    kept = np.zeros(n + 1)
    kept[np.unique(src) + 1] = 1.0
    kc = np.cumsum(kept)
    ulen = np.maximum(sc.unit_ends - sc.unit_starts, 1)
    kept_beats = kc[sc.unit_ends] - kc[sc.unit_starts]
    need = np.minimum(ulen, cfg.min_piece_bars * sc.meter)  # a type counts as heard after ~2 bars of it
    types = sc.unit_type
    n_types = int(types.max()) + 1
    covered = np.zeros(n_types, dtype=bool)
    np.logical_or.at(covered, types, kept_beats >= need)
    cost = np.full(n_types, np.inf)
    np.minimum.at(cost, types, need * sc.ibi)
    fit = int(np.searchsorted(np.cumsum(np.sort(cost)), target_seconds + sc.ibi, side="right"))
    coverage = min(1.0, covered.sum() / max(1, min(n_types, fit)))
    order = float(np.mean(right > left)) if n_sp else 1.0
    share = kept_beats / ulen
    chorus = np.flatnonzero(unit_db >= unit_db.max() - cfg.chorus_tolerance_db)
    chorus_kept = max(float(share[chorus[-1]]), cfg.any_chorus_credit * float(share[chorus].max()))
    arc = (coverage + order + chorus_kept) / 3.0

    # fragmentation: many short pieces were rated significantly lower (BBC R&D 2014)
    piece_starts = np.concatenate([[0], sp + 1])
    piece_ends = np.concatenate([sp + 1, [m]])
    piece_beats = piece_ends - piece_starts
    n_pieces = len(piece_beats)
    n_short = int((piece_beats < cfg.min_piece_bars * sc.meter).sum())
    fragmentation = (1.0 / (1.0 + cfg.short_piece_cost * n_short)) * math.exp(
        -max(0, n_pieces - cfg.max_free_pieces) / max(1, cfg.max_free_pieces))

    # repetition: loop-backs piling into one phrase, and a large share of repeated material
    back = right <= left
    if back.any():
        counts = np.bincount(sc.phrase_id[right[back]])
        excess = float(np.maximum(counts - cfg.max_loops_per_phrase, 0).sum())
    else:
        excess = 0.0
    loops = 1.0 / (1.0 + excess)
    repeat_share = 1.0 - len(np.unique(src)) / m
    mx = max(cfg.max_repeat_share, 1e-9)
    repeats = float(np.clip(1.0 - max(0.0, repeat_share - mx) / mx, 0.0, 1.0))
    repetition = 0.5 * (loops + repeats)

    out = {"duration": duration, "alignment": alignment, "seams": seams, "ending": ending, "start": start, "arc": arc,
           "fragmentation": fragmentation, "repetition": repetition}
    out = {k: float(min(1.0, max(0.0, v))) for k, v in out.items()}
    weights = component_weights(cfg)
    out["total"] = sum(weights[k] * out[k] for k in COMPONENTS) / sum(weights.values())
    out["ratio"] = seconds / float(song.duration)
    out["seconds"] = seconds
    out["error_seconds"] = float(err)
    out["n_splices"] = float(n_sp)
    out["n_pieces"] = float(n_pieces)
    return out


def component_weights(cfg: ListenerConfig) -> dict[str, float]:
    """``ListenerConfig.w_<component>`` for every component (the total is their weighted mean)."""
    return {k: float(getattr(cfg, f"w_{k}")) for k in COMPONENTS}


def _trailing_ramp(g0: np.ndarray, g1: np.ndarray) -> int:
    """Index of the first output beat of the final fade-out (the trailing run of falling gain ramps)."""
    k = len(g1) - 1
    while k > 0 and g0[k] < 1.0 - 1e-9 and g0[k - 1] > g1[k - 1] - 1e-12 and g1[k - 1] == g0[k]:
        k -= 1
    return k


def batch_score(song: SongAnalysis, edits: Sequence[Any], target_ratios: float | Sequence[float] | None = None,
                audio: np.ndarray | None = None, sr: int | None = None, cfg: ListenerConfig | None = None
                ) -> list[dict[str, float]]:
    """``score_edit`` over many edits of one song (shares the per-song and per-audio caches)."""
    if target_ratios is None or np.ndim(target_ratios) == 0:
        ratios = [target_ratios] * len(edits)
    else:
        ratios = list(target_ratios)
        if len(ratios) != len(edits):
            raise ValueError(f"batch_score: {len(edits)} edits but {len(ratios)} target ratios")
    y = _mono(audio) if audio is not None else None
    return [score_edit(song, e, r, y, sr, cfg) for e, r in zip(edits, ratios)]


# ----------------------------------------------------------------------------- preferences
def _total(score: Any) -> float:
    v = score["total"] if isinstance(score, dict) else score
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"listener score {v!r} is not finite")
    return v


def preference_probability(score_a: Any, score_b: Any, noise: float) -> float:
    """Bradley-Terry ``P(A preferred) = sigmoid((a - b) / noise)``; noise 0 -> 1, 0 or 0.5 (tie)."""
    a, b = _total(score_a), _total(score_b)
    if noise < 0 or not math.isfinite(noise):
        raise ValueError(f"preference noise must be a finite number >= 0, got {noise!r}")
    if noise == 0:
        return 1.0 if a > b else 0.0 if a < b else 0.5
    x = (a - b) / noise
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def prefer(score_a: Any, score_b: Any, noise: float, rng: np.random.Generator | None = None) -> tuple[int, float]:
    """Sample a preference: ``(choice, p_a)`` with choice 0 when A is preferred, 1 when B.

    ``score_a``/``score_b`` are listener dicts (their ``total``) or plain numbers.
    ``noise`` is the Bradley-Terry temperature; at ``noise == 0`` the choice is
    deterministic (the higher score; an exact tie picks A and reports ``p_a = 0.5``,
    which callers may record as a tie).
    """
    p = preference_probability(score_a, score_b, noise)
    if noise == 0 or p in (0.0, 1.0):
        return (0 if p >= 0.5 else 1), p
    rng = rng if rng is not None else np.random.default_rng()
    return (0 if rng.random() < p else 1), p
