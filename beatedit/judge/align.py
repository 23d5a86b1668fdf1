"""Find the splice points of an edit from audio alone, by aligning it against its source.

Every stretch of an edit is a (gain-scaled) copy of some stretch of the source, so the edit is a
path through source offsets that is constant within a piece and jumps at a splice. Method:

1. Coarse (~23 ms frames): cosine similarity of gain-invariant log-mel shapes between every edit
   frame and every source frame; a Viterbi path over lags (source frame - edit frame) with a fixed
   cost per jump (``JUMP_COST``) picks the cheapest piecewise-constant lag sequence. A piece has
   to be a few frames long to pay for its jumps, so a copy is found even in repetitive music while
   frame-phase jitter never creates a splice.
2. Fine (samples): each piece's exact offset by normalised cross-correlation of its interior
   against the source within +-2 frames of the coarse lag; neighbours with the same exact offset
   are merged (not a splice).
3. Splice sample: between two pieces with offsets d1, d2, the point p minimising the summed
   residual of "edit = g1 * src[n + d1]" before p and "edit = g2 * src[n + d2]" after it (g by least
   squares away from the seam). A crossfade centred on the splice is symmetric, so p lands on its
   centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import correlate

from beatedit.judge.analysis import Profile

JUMP_COST = 2.0  # in frame-cost units (a frame's cost is 1 - cosine similarity, clipped to [0, 1])
SILENT_COST = 0.3  # a silent edit frame matches every lag equally: it never decides a jump
COPY_NCC = 0.99  # normalised correlation at which a stretch counts as a copy at a given offset
MIN_PIECE_FRAMES = 4  # coarse pieces shorter than this are absorbed by their neighbours


@dataclass(frozen=True)
class Piece:
    """Edit samples [start, end) copy source samples [start + offset, end + offset)."""

    start: int
    end: int
    offset: int
    match: float  # normalised cross-correlation of the piece's interior with the source (1 = exact copy)


def _frame_costs(edit: Profile, src: Profile, t0: int, t1: int) -> np.ndarray:
    """Cost of matching edit frames [t0, t1) to every source frame: 1 - cosine similarity, clipped."""
    cost = 1.0 - edit.shape[t0:t1] @ src.shape.T
    np.clip(cost, 0.0, 1.0, out=cost)
    cost[:, src.silent] = 1.0
    cost[edit.silent[t0:t1], :] = SILENT_COST
    return cost


def _viterbi_lags(edit: Profile, src: Profile) -> np.ndarray:
    """Per edit frame, the source frame lag (source frame - edit frame) of the cheapest path.

    Memory stays small for long songs: costs are computed in blocks of edit frames and the
    back-pointers ("stayed on this lag") are bit-packed."""
    Te, Ts = edit.n_frames, src.n_frames
    L = Te + Ts - 1  # lag index li = s - t + Te - 1
    stay = np.zeros((Te, (L + 7) // 8), dtype=np.uint8)
    best_prev = np.zeros(Te, dtype=np.int64)
    acc = np.empty(L)
    row = np.empty(L)
    flags = np.empty(L, dtype=bool)
    block = 256
    for t0 in range(0, Te, block):
        cost = _frame_costs(edit, src, t0, min(t0 + block, Te))
        for t in range(t0, min(t0 + block, Te)):
            row.fill(SILENT_COST if edit.silent[t] else 1.0)
            row[Te - 1 - t:Te - 1 - t + Ts] = cost[t - t0]
            if t == 0:
                acc[:] = row
                continue
            b = int(np.argmin(acc))
            best_prev[t] = b
            jump = acc[b] + JUMP_COST
            np.less_equal(acc, jump, out=flags)
            stay[t] = np.packbits(flags)
            np.minimum(acc, jump, out=acc)
            acc += row
    li = np.empty(Te, dtype=np.int64)
    li[-1] = int(np.argmin(acc))
    for t in range(Te - 1, 0, -1):
        k = int(li[t])
        stayed = (stay[t, k >> 3] >> (7 - (k & 7))) & 1
        li[t - 1] = k if stayed else best_prev[t]
    return li - (Te - 1)


def _runs(lags: np.ndarray) -> list[tuple[int, int, int]]:
    """[(frame start, frame end, lag)] of constant lag, short runs absorbed by their neighbours."""
    cut = np.flatnonzero(np.diff(lags)) + 1
    bounds = np.concatenate([[0], cut, [len(lags)]])
    runs = [(int(a), int(b), int(lags[a])) for a, b in zip(bounds[:-1], bounds[1:])]
    changed = True
    while changed and len(runs) > 1:
        changed = False
        k = min(range(len(runs)), key=lambda i: runs[i][1] - runs[i][0])
        if runs[k][1] - runs[k][0] < MIN_PIECE_FRAMES:
            a, b, _ = runs.pop(k)
            mid = (a + b) // 2
            if k > 0:
                pa, _, pl = runs[k - 1]
                runs[k - 1] = (pa, mid if k < len(runs) else b, pl)
            if k < len(runs):
                _, nb, nl = runs[k]
                runs[k] = (mid if k > 0 else a, nb, nl)
            changed = True
    return runs


class _Padded:
    """The source with zeros around it, so any offset can be read (crossfades read past the ends)."""

    def __init__(self, y: np.ndarray, pad: int):
        self.pad = pad
        self.y = np.concatenate([np.zeros(pad), y, np.zeros(pad)])
        self.c = np.concatenate([[0.0], np.cumsum(self.y * self.y)])

    def read(self, a: int, b: int) -> np.ndarray:
        a = int(np.clip(a + self.pad, 0, len(self.y)))
        b = int(np.clip(b + self.pad, a, len(self.y)))
        return self.y[a:b]


def _refine(edit: np.ndarray, src: _Padded, a: int, b: int, d0: int, radius: int) -> tuple[int, float]:
    """Exact offset of edit[a:b] in the source near ``d0`` (+-radius), and its normalised correlation."""
    if b - a > 8192:  # 8192 samples are plenty: take the loudest such window (silence correlates with nothing)
        c = np.concatenate([[0.0], np.cumsum(edit[a:b] ** 2)])
        starts = np.arange(0, b - a - 8192 + 1, 2048)
        k = int(starts[np.argmax(c[starts + 8192] - c[starts])])
        a, b = a + k, a + k + 8192
    chunk = edit[a:b]
    e = float(chunk @ chunk)
    if b - a < 32 or e <= 1e-12:
        return d0, 0.0
    region = src.read(a + d0 - radius, b + d0 + radius)
    if len(region) < len(chunk) + 2 * radius:
        region = np.pad(region, (0, len(chunk) + 2 * radius - len(region)))
    xc = correlate(region, chunk, mode="valid", method="fft")
    lo = a + d0 - radius + src.pad
    c = src.c
    idx = np.clip(lo + np.arange(len(xc)), 0, len(c) - 1 - len(chunk))
    energy = c[idx + len(chunk)] - c[idx]
    ncc = xc / np.sqrt(np.maximum(energy, 1e-12) * e)
    k = int(np.argmax(ncc))
    return d0 - radius + k, float(ncc[k])


def _copies(edit: np.ndarray, src: _Padded, a: int, b: int, d: int) -> bool:
    """Whether edit[a:b] is (a gain-scaled) copy of the source at offset ``d``."""
    e = edit[max(a, 0):max(b, 0)]
    if len(e) < 32:
        return False
    s = src.read(max(a, 0) + d, max(a, 0) + d + len(e))
    den = float(np.sqrt((e @ e) * (s @ s)))
    return den > 1e-12 and float(e @ s) / den >= COPY_NCC


def _lsq_gain(e: np.ndarray, s: np.ndarray) -> float:
    ss = float(s @ s)
    return float(e @ s) / ss if ss > 1e-12 else 0.0


def _splice_point(edit: np.ndarray, src: _Padded, lo: int, p0: int, hi: int, d1: int, d2: int, hop: int) -> int:
    """The sample in [lo, hi) where the edit stops following offset d1 and starts following d2."""
    lo, hi = max(lo, p0 - 8 * hop), min(hi, p0 + 8 * hop)
    if hi - lo < 4:
        return p0
    e = edit[lo:hi]
    s1, s2 = src.read(lo + d1, hi + d1), src.read(lo + d2, hi + d2)
    if len(s1) != len(e) or len(s2) != len(e):
        return p0
    m1 = slice(0, max(p0 - 2 * hop - lo, 1))
    m2 = slice(min(p0 + 2 * hop - lo, len(e) - 1), len(e))
    g1, g2 = _lsq_gain(e[m1], s1[m1]), _lsq_gain(e[m2], s2[m2])
    r1 = np.concatenate([[0.0], np.cumsum((e - g1 * s1) ** 2)])
    r2 = np.concatenate([[0.0], np.cumsum((e - g2 * s2) ** 2)])
    total = r1 + (r2[-1] - r2)  # residual if the splice is at lo + k
    return lo + int(np.argmin(total))


def find_pieces(edit: Profile, src: Profile) -> list[Piece]:
    """The edit as a list of copied source pieces, in edit order (splices between consecutive pieces)."""
    hop = edit.hop
    n = len(edit.y)
    runs = _runs(_viterbi_lags(edit, src))
    pad = max(len(edit.y), len(src.y)) + 8 * hop
    padded = _Padded(src.y, pad)
    # exact offsets, on each run's interior (2 frames in from each edge: the window straddles the splice there)
    exact: list[tuple[int, int, int, float]] = []
    for a, b, lag in runs:
        sa, sb = a * hop, min(b * hop, n)
        ia, ib = (sa + 2 * hop, sb - 2 * hop) if sb - sa > 6 * hop else (sa, sb)
        d, m = _refine(edit.y, padded, ia, ib, lag * hop, 2 * hop)
        if exact and abs(d - exact[-1][2]) <= 2:  # same copy: the coarse path only wobbled
            pa, _, pd, pm = exact[-1]
            exact[-1] = (pa, sb, pd, max(pm, m))
        else:
            exact.append((sa, sb, d, m))
    # a piece that is also an exact copy at a neighbour's offset is that neighbour continued (sections
    # repeated sample for sample make two equally good paths; frame-phase jitter can pick the wrong one)
    merged = True
    while merged and len(exact) > 1:
        merged = False
        for k in range(len(exact)):
            a, b, d, m = exact[k]
            for j in (k - 1, k + 1):
                if 0 <= j < len(exact) and _copies(edit.y, padded, a + 2 * hop, b - 2 * hop, exact[j][2]):
                    ja, jb, jd, jm = exact[j]
                    exact[min(j, k)] = (min(a, ja), max(b, jb), jd, max(m, jm))
                    del exact[max(j, k)]
                    merged = True
                    break
            if merged:
                break
    # splice samples between consecutive pieces
    starts = [0]
    for k in range(1, len(exact)):
        lo, p0, hi = exact[k - 1][0], exact[k][0] - hop // 2, exact[k][1]
        starts.append(_splice_point(edit.y, padded, lo, p0, hi, exact[k - 1][2], exact[k][2], hop))
    ends = starts[1:] + [n]
    return [Piece(int(s), int(e), int(x[2]), float(x[3])) for s, e, x in zip(starts, ends, exact) if e > s]
