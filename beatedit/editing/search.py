"""The search editor: the classical baseline, a cheapest path of the required length.

The classical answer to "shorten this song so it sounds written that way" (Wenner et
al. 2013 "Scalable Music": dynamic programming for the cheapest path of a required
length with start/end constraints; reamix.me: beat features, a transition cost of
perceptual signals, Viterbi under duration / intro / outro constraints). Here the
path only moves forward (the song is shortened), so an edit is a sequence of
*pieces*, contiguous runs of source beats ``[a, b)``: the first starts at beat 0 (the
real start), the last ends at the song's last beat (the real ending, no fade), and a
*jump* from a piece ending at out-point ``b`` (the first beat not played) to the next
piece starting at in-point ``a > b`` skips beats ``b .. a-1``.

Dynamic programming (a Viterbi over output length): ``F[k, j]`` is the cheapest path
that has output ``k`` beats, the last of them source beat ``j``, and whose current
piece is at least ``R`` beats long (``R = min_piece_bars`` bars), so a jump may leave
from it. ``F[k, j] = min(F[k-1, j-1] + c[j],  min_i F[k-R, i] + T[i+1, a] + c[a..j])``
with ``a = j - R + 1``: continue the piece, or land a new piece of ``R`` beats at
``a`` after a jump from ``i``. One layer is one vectorised min-plus product over the
window of feasible beats. ``F[K, n-1]`` for every ``K`` that can reach the target gives
one candidate per length; each is traced back, measured in samples
(``beat_sample_bounds``) and the cheapest within ``length_tolerance_beats`` of the
target wins (the closest one when none is). When none is (a drifting tempo makes the
cheapest K-beat path a beat long or short), a Lagrange multiplier on beat length is
tried; when still none is (a short song, a tiny target), ``R`` is halved.

Only KEEP and cuts: whole bars reach lengths in steps of a bar, and a jump that keeps
the position in the bar cannot change the length modulo a bar either, so when the
target lies more than a beat from every whole-bar length the one cut that fixes it
breaks the metre (at ``metre_break_cost``, placed where the features match best).

Costs (``SearchConfig``; a unit is the song's median feature distance between two
beats): the jump cost ``T[b, a]`` compares the beat that would have come next
(``b``) with the beat jumped to (``a``), and their neighbours, in harmony, timbre and
loudness, adds a grid cost for ends off the bar line and for breaking the bar phase,
a per-cut cost, bonuses for leaving / landing on phrase and section starts and a cost
for landing inside a section; a per-kept-beat cost prefers keeping loud (chorus-like)
sections. The decisions use only KEEP and the cut actions, so ``build_edit`` replays
them like any other editor's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from beatedit.audio.schema import col
from beatedit.audio.song import SongAnalysis
from beatedit.config import EnvConfig
from beatedit.editing.actions import Action
from beatedit.editing.program import EditState, SongGrid, _apply_inplace, check_target_ratio, song_grid

_CHROMA = np.array([col(f"chroma_{p}") for p in ("C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B")])
_MFCC = np.array([col(f"mfcc_{k}") for k in range(1, 20)])  # mfcc_0 is overall level: loudness has its own term
_RMS_DB = col("rms_db")
#: Lagrange multipliers on beat length tried in turn while no path lands within tolerance: with a tempo that
#: drifts, the cheapest path of K beats may be a beat too long or short; a cost per sample of beat length
#: (positive: prefer shorter beats) moves the K-beat optimum towards the target length.
_LAMBDAS = (0.0, 0.3, -0.3, 1.0, -1.0, 3.0, -3.0)


@dataclass(frozen=True)
class SearchConfig:
    """Weights of the search editor's path cost (documented defaults; see the module docstring).

    Feature distances are divided by the song's median distance between two of its
    beats, so a weight of 1 means "a typical mismatch costs 1" in every song.
    """

    #: harmony: the beat jumped to should carry the chord the skipped beat would have (a clash is heard at once)
    w_chroma: float = 1.0
    #: timbre (MFCC 1-19): the arrangement (instruments, brightness) should continue across the seam
    w_timbre: float = 1.0
    #: loudness: cost per ``loudness_scale_db`` of rms_db difference; level jumps are the most audible seams
    w_loudness: float = 1.0
    #: dB of loudness difference that cost ``w_loudness`` (about a clearly audible step in level)
    loudness_scale_db: float = 6.0
    #: compare also this many beats before and after on both sides: a seam is heard in context, not as one beat
    context_beats: int = 1
    #: every jump (one more piece): BBC R&D 2014 found edits of many short sections rated significantly lower
    cut_cost: float = 2.0
    #: each end of a jump (out-point, in-point) that is not a downbeat: cuts off the bar line were rated lower
    off_bar_cost: float = 3.0
    #: a jump that changes the position in the bar (beat_in_bar of in-point != out-point): the metre stumbles
    metre_break_cost: float = 4.0
    #: each end on a phrase start: a phrase boundary is where a musician would cut
    phrase_bonus: float = 0.5
    #: each end on a section start (on top of the phrase bonus): the cut sounds like the song's own form
    section_bonus: float = 0.5
    #: landing after a section start (mid-section): a section is heard with its beginning missing
    mid_section_cost: float = 1.0
    #: per kept beat, times (1 - its section's loudness rank): keep the loud, chorus-like parts (Wenner's importance)
    material_cost: float = 0.03
    #: minimum piece length in bars (pieces of the path): fragmentation is penalised by construction
    min_piece_bars: int = 2
    #: a length within this many (median) beats of the target counts as reached; only then may cost decide
    length_tolerance_beats: float = 1.0
    #: among lengths within tolerance, cost per beat of remaining error (prefer the closer one when costs tie)
    length_weight: float = 0.5
    #: candidate lengths (beats): those that can reach the target, widened by this many bars on each side
    search_bars: int = 2

    def check(self) -> str | None:
        w = (self.w_chroma, self.w_timbre, self.w_loudness, self.cut_cost, self.off_bar_cost, self.metre_break_cost,
             self.phrase_bonus, self.section_bonus, self.mid_section_cost, self.material_cost, self.length_weight)
        if min(w) < 0:
            return "search weights must be >= 0"
        if self.loudness_scale_db <= 0 or self.length_tolerance_beats < 0:
            return "loudness_scale_db must be > 0 and length_tolerance_beats >= 0"
        if self.context_beats < 0 or self.min_piece_bars < 1 or self.search_bars < 1:
            return "context_beats must be >= 0, min_piece_bars and search_bars >= 1"
        return None


@dataclass(frozen=True)
class SearchResult:
    """The chosen path: ``pieces`` are ``[a, b)`` source-beat spans in output order."""

    pieces: list[tuple[int, int]]
    cost: float  # DP path cost
    output_samples: int
    target_samples: float
    beat_samples: float  # median beat length: the unit of "within one beat"
    min_piece_beats: int  # R actually used (halved from the configured one only when needed)

    @property
    def error_beats(self) -> float:
        return abs(self.output_samples - self.target_samples) / self.beat_samples


# ----------------------------------------------------------------------------- costs
def _normalised(d: np.ndarray) -> np.ndarray:
    """Divide by the median off-diagonal distance (1 = a typical mismatch in this song)."""
    iu = np.triu_indices(len(d), 1)
    med = float(np.median(d[iu])) if len(iu[0]) else 0.0
    return d / med if med > 1e-9 else np.zeros_like(d)


def _with_context(d: np.ndarray, c: int) -> np.ndarray:
    """``D'[b, a]`` = mean of ``D[b+t, a+t]`` for ``|t| <= c`` where both exist (diagonal smoothing)."""
    if c <= 0:
        return d
    acc, cnt = d.copy(), np.ones_like(d)
    for t in range(1, c + 1):
        acc[t:, t:] += d[:-t, :-t]
        cnt[t:, t:] += 1
        acc[:-t, :-t] += d[t:, t:]
        cnt[:-t, :-t] += 1
    return acc / cnt


def _feature_distances(song: SongAnalysis, scfg: SearchConfig) -> np.ndarray:
    """float64 [n, n]: weighted harmony + timbre + loudness distance between beats ``b`` and ``a``."""
    f = song.features.astype(np.float64)
    ch = f[:, _CHROMA]
    norm = np.linalg.norm(ch, axis=1, keepdims=True)
    ch = np.divide(ch, norm, out=np.zeros_like(ch), where=norm > 1e-9)
    d_chroma = np.clip(1.0 - ch @ ch.T, 0.0, None)
    m = f[:, _MFCC]
    z = (m - m.mean(axis=0)) / np.maximum(m.std(axis=0), 1e-9)
    sq = (z * z).sum(axis=1)
    d_timbre = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0, None))
    loud = f[:, _RMS_DB]
    d_loud = np.abs(loud[:, None] - loud[None, :]) / scfg.loudness_scale_db
    d = scfg.w_chroma * _normalised(d_chroma) + scfg.w_timbre * _normalised(d_timbre) + scfg.w_loudness * d_loud
    return _with_context(d, scfg.context_beats)


def _starts(idx: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    idx = np.asarray(idx, dtype=np.int64)
    m[idx[(idx >= 0) & (idx < n)]] = True
    return m


def jump_costs(song: SongAnalysis, scfg: SearchConfig | None = None) -> np.ndarray:
    """float64 [n, n]: ``T[b, a]``, the cost of a jump from out-point ``b`` to in-point ``a`` (inf unless ``a > b``)."""
    scfg = scfg or SearchConfig()
    n = song.n_beats
    g = song_grid(song)
    bar = g.is_bar_start[:n]
    bib = np.asarray(song.beat_in_bar, dtype=np.int64)
    phr = _starts(song.phrase_starts, n)
    sec = _starts(song.section_starts, n)
    t = _feature_distances(song, scfg)
    t += scfg.cut_cost
    t += scfg.off_bar_cost * ((~bar).astype(np.float64)[:, None] + (~bar).astype(np.float64)[None, :])
    t += scfg.metre_break_cost * (bib[:, None] != bib[None, :])
    t -= scfg.phrase_bonus * (phr.astype(np.float64)[:, None] + phr.astype(np.float64)[None, :])
    t -= scfg.section_bonus * (sec.astype(np.float64)[:, None] + sec.astype(np.float64)[None, :])
    if sec.any():
        t += scfg.mid_section_cost * (~sec).astype(np.float64)[None, :]
    t[np.tril_indices(n)] = np.inf  # forward jumps that skip at least one beat: a > b
    return t


def keep_costs(song: SongAnalysis, scfg: SearchConfig | None = None) -> np.ndarray:
    """float64 [n]: the cost of keeping each beat, ``material_cost * (1 - loudness rank of its section)``."""
    scfg = scfg or SearchConfig()
    n = song.n_beats
    units = np.asarray(song.section_starts, dtype=np.int64)
    if len(units) < 2:
        units = np.asarray(song.phrase_starts, dtype=np.int64)
    starts = np.unique(np.concatenate([[0], units[(units > 0) & (units < n)]])).astype(np.int64)
    if len(starts) < 2 or scfg.material_cost == 0:
        return np.zeros(n)
    uid = np.searchsorted(starts, np.arange(n), side="right") - 1
    loud = song.features[:, _RMS_DB].astype(np.float64)
    level = np.bincount(uid, weights=loud) / np.bincount(uid)
    span = level.max() - level.min()
    rank = (level - level.min()) / span if span > 1e-9 else np.ones_like(level)
    return scfg.material_cost * (1.0 - rank[uid])


# ----------------------------------------------------------------------------- dynamic programming
def _solve(g: SongGrid, T: np.ndarray, c: np.ndarray, R: int, target: float, beat: float, kmin: int, kmax: int,
           scfg: SearchConfig) -> SearchResult | None:
    """The DP for one minimum piece length ``R``; None when no path of a candidate length exists."""
    n = g.n
    if R > n or kmax < R:
        return None
    inf = np.inf
    F = np.full((kmax + 1, n), inf)
    P = np.full((kmax + 1, n), -1, dtype=np.int64)  # -1 continue, -2 the first piece, i >= 0 jump from free state i
    cs = np.concatenate([[0.0], np.cumsum(c)])
    land = cs[R:] - cs[:-R]  # [n - R + 1]: cost of the R beats of a landing piece starting at a
    F[R, R - 1] = cs[R]
    P[R, R - 1] = -2
    for k in range(R + 1, kmax + 1):
        lo = k - 1
        hi = n - 1 if k >= kmin else n - 1 - (kmin - k)  # room for the kmin - k beats still to come
        if lo > hi:
            continue
        F[k, lo:hi + 1] = F[k - 1, lo - 1:hi] + c[lo:hi + 1]
        kk = k - R
        if kk < R:
            continue
        alo, ahi = max(lo - R + 1, kk + 1), hi - R + 1  # in-points a (piece [a, a + R) ends at j = a + R - 1)
        ilo = kk - 1
        ihi = min(n - 1 if kk >= kmin else n - 1 - (kmin - kk), ahi - 2)
        if alo > ahi or ilo > ihi:
            continue
        src = F[kk, ilo:ihi + 1]
        ok = np.isfinite(src)
        if not ok.any():
            continue
        first = ilo + int(np.argmax(ok))
        last = ilo + len(ok) - 1 - int(np.argmax(ok[::-1]))
        M = F[kk, first:last + 1, None] + T[first + 1:last + 2, alo:ahi + 1]
        arg = M.argmin(axis=0)
        best = M[arg, np.arange(M.shape[1])] + land[alo:ahi + 1]
        j = np.arange(alo, ahi + 1) + R - 1
        better = best < F[k, j]  # ties keep the piece going (fewer cuts)
        F[k, j[better]] = best[better]
        P[k, j[better]] = first + arg[better]
    B = g.bounds
    best_res: tuple | None = None
    for K in range(kmin, kmax + 1):
        if not np.isfinite(F[K, n - 1]):
            continue
        pieces, k, j, end = [], K, n - 1, n
        while True:
            p = int(P[k, j])
            if p == -2:
                pieces.append((0, end))
                break
            if p == -1:
                k, j = k - 1, j - 1
                continue
            a = j - R + 1
            pieces.append((a, end))
            end, j, k = p + 1, p, k - R
        pieces.reverse()
        samples = int(sum(int(B[b] - B[a]) for a, b in pieces))
        err = abs(samples - target) / beat
        within = err <= scfg.length_tolerance_beats + 1e-9
        key = (0, float(F[K, n - 1]) + scfg.length_weight * err) if within else (1, err, float(F[K, n - 1]))
        if best_res is None or key < best_res[0]:
            best_res = (key, pieces, float(F[K, n - 1]), samples)
    if best_res is None:
        return None
    _, pieces, cost, samples = best_res
    return SearchResult(pieces, cost, samples, target, beat, R)


def forbid_skipping(T: np.ndarray, keep: Sequence[tuple[int, int]]) -> np.ndarray:
    """``T`` with every jump that would skip a beat of a kept range ``[k0, k1)`` made impossible (inf):
    a jump from out-point ``b`` to in-point ``a`` skips ``b .. a-1``, so it is forbidden when ``b < k1`` and ``a > k0``."""
    T = T.copy()
    for k0, k1 in keep:
        T[:k1, k0 + 1:] = np.inf
    return T


def search_path(song: SongAnalysis, target_ratio: float, scfg: SearchConfig | None = None,
                keep: Sequence[tuple[int, int]] = ()) -> SearchResult:
    """The cheapest forward path from beat 0 to the last beat whose length is nearest the target (see module doc).

    ``keep``: beat ranges ``[b0, b1)`` no jump may skip (``--keep``, ``beatedit.editing.keep``); the path
    always plays beat 0 and the last beat, so each range then plays whole and in order."""
    scfg = scfg or SearchConfig()
    problem = scfg.check()
    if problem:
        raise ValueError(f"SearchConfig: {problem}")
    target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    n = g.n
    B = g.bounds
    target = target_ratio * g.source_samples
    beat = float(np.median(np.diff(B)))
    mean_beat = float(B[n] - B[0]) / n
    meter = max(1, int(song.meter))
    # candidate lengths K: every K whose K longest beats reach the target and whose K shortest do not pass it
    # (a drifting tempo widens this), then +- search_bars bars
    lengths = np.sort(np.diff(B).astype(np.float64))
    k_lo = int(np.searchsorted(np.cumsum(lengths[::-1]), target)) + 1
    k_hi = int(np.searchsorted(np.cumsum(lengths), target, side="right"))
    span = scfg.search_bars * meter
    kmin = int(np.clip(min(k_lo, k_hi) - span, 1, n))
    kmax = int(np.clip(max(k_lo, k_hi) + span, 1, n))
    T = jump_costs(song, scfg)
    if keep:
        T = forbid_skipping(T, keep)
    c = keep_costs(song, scfg)
    dev = (np.diff(B).astype(np.float64) - mean_beat) / beat  # a beat's length above the mean, in beats
    R = max(1, scfg.min_piece_bars * meter)
    tol = scfg.length_tolerance_beats + 1e-9
    best: SearchResult | None = None
    while True:
        for lam in _LAMBDAS:
            res = _solve(g, T, c + lam * dev, R, target, beat, kmin, kmax, scfg)
            if res is None:
                continue
            if lam:  # report the path's cost without the multiplier's term
                k = sum(b - a for a, b in res.pieces)
                res = replace(res, cost=res.cost - lam * (res.output_samples - k * mean_beat) / beat)
            if best is None or res.error_beats < best.error_beats - 1e-9:
                best = res
            if best.error_beats <= tol:
                break
        if best is not None and best.error_beats <= tol or R == 1:
            break
        R = max(1, R // 2)
    if best is None and keep:
        raise ValueError(f"--keep: no edit of {song.song_id!r} keeps the region(s) whole at a length near the target; "
                         "move or shorten a region, or change the target")
    if best is None:  # cannot happen for n >= 1 (R = 1, K = kmin..kmax covers a contiguous run), kept as a guard
        raise RuntimeError(f"search editor found no path for {song.song_id!r} ({n} beats, target {target_ratio})")
    return best


# ----------------------------------------------------------------------------- decisions
def decisions_from_pieces(g: SongGrid, pieces: list[tuple[int, int]]) -> list[int]:
    """KEEP over each piece; each skipped range as the fewest CUT_TO_NEXT_PHRASE / CUT_TO_NEXT_BAR / CUT steps."""
    out: list[int] = []
    cursor = 0
    for a, b in pieces:
        while cursor < a:
            nph, nb = int(g.next_phrase[cursor]), int(g.next_bar[cursor])
            if 0 <= nph <= a and nph >= nb:
                out.append(int(Action.CUT_TO_NEXT_PHRASE))
                cursor = nph
            elif 0 <= nb <= a:
                out.append(int(Action.CUT_TO_NEXT_BAR))
                cursor = nb
            else:
                out.append(int(Action.CUT))
                cursor += 1
        out.extend([int(Action.KEEP)] * (b - a))
        cursor = b
    return out


def search_decisions(song: SongAnalysis, target_ratio: float, cfg: EnvConfig | None = None,
                     scfg: SearchConfig | None = None, keep: Sequence[tuple[int, int]] = ()) -> list[int]:
    """The search editor's decisions (legal under the edit program; checked by replaying them).

    ``keep``: beat ranges that must stay whole (``search_path``); ValueError when no path keeps them
    and lands within ``length_tolerance_beats`` of the target."""
    cfg = cfg or EnvConfig()
    g = song_grid(song)
    res = search_path(song, target_ratio, scfg, keep=keep)
    if keep and res.error_beats > (scfg or SearchConfig()).length_tolerance_beats + 1e-9:
        raise ValueError(f"--keep: no edit of {song.song_id!r} keeps the region(s) whole and lands within a beat of the "
                         f"target (the closest misses it by {res.error_beats:.1f} beats); move or shorten a region, "
                         "or change the target")
    decisions = decisions_from_pieces(g, res.pieces)
    s = EditState()
    for a in decisions:
        _apply_inplace(g, s, a, cfg.max_loops_per_episode)
    if not s.done:
        raise RuntimeError(f"search editor bug: decisions for {song.song_id!r} stop at beat {s.cursor}/{g.n}")
    return decisions
