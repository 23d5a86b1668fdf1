"""``--keep 1:10-1:40``: a region of the source that must stay in the edit, whole and in order.

A region is given in source seconds and honoured on the beat grid: it covers every beat that
overlaps it (``keep_beats``), and an edit keeps it when those beats play back to back, in
order, once (``keeps``), with no cut, loop or fade inside. Which editors honour it:

- ``search``: a constraint in the dynamic programme (no jump may skip a kept beat:
  ``beatedit.editing.search.search_path(..., keep=)``), so the cheapest path that keeps every
  region and lands within a beat of the target is chosen, or there is none (an error).
- ``policy``: masked step by step (``models.policy_edit.keep_mask``: inside a kept range only KEEP; before
  one, no action that ends the edit, jumps past its first beat, or leaves too little room for the kept beats
  within the target); its greedy edit, or with ``--best-of`` the best-ranked masked sample; each is checked
  with ``keeps`` and an error names the problem when none keeps the regions.
- ``heuristic``, ``fade``, ``random``: refused with a message naming the editors that support it.

Impossible constraints are ``ValueError`` naming the region: malformed text, an empty or
reversed region, one outside the song, overlapping regions, regions longer together than the
target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from beatedit.audio.song import SongAnalysis
from beatedit.editing.target import format_seconds, parse_duration

KEEP_EDITORS = ("policy", "search")  # the editors that honour --keep


def parse_keep(text: str) -> tuple[float, float]:
    """``"1:10-1:40"`` / ``"70-100"`` / ``"1m10s-1m40s"`` -> (start, end) seconds; ValueError naming the text."""
    s = str(text).strip()
    parts = s.split("-")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"--keep {text!r}: write a region as START-END, e.g. 1:10-1:40 or 70-100 (seconds)")
    try:
        a = 0.0 if parts[0].strip() in ("0", "0:00") else parse_duration(parts[0])
        b = parse_duration(parts[1])
    except ValueError as exc:
        raise ValueError(f"--keep {text!r}: {exc}") from None
    if not b > a:
        raise ValueError(f"--keep {text!r}: the region ends ({format_seconds(b)}) before or where it starts ({format_seconds(a)})")
    return a, b


def check_regions(regions: Sequence[tuple[float, float]], source_seconds: float, target_seconds: float) -> None:
    """Impossible sets of regions: outside the song, overlapping, longer together than the target."""
    regs = sorted((float(a), float(b)) for a, b in regions)
    for a, b in regs:
        if not b > a >= 0:
            raise ValueError(f"--keep {format_seconds(a)}-{format_seconds(b)}: not a region (start >= 0, end > start)")
        if b > source_seconds + 1e-6:
            raise ValueError(f"--keep {format_seconds(a)}-{format_seconds(b)}: ends after the song "
                             f"({format_seconds(source_seconds)})")
    for (a0, b0), (a1, b1) in zip(regs, regs[1:]):
        if a1 < b0:
            raise ValueError(f"--keep {format_seconds(a0)}-{format_seconds(b0)} and {format_seconds(a1)}-{format_seconds(b1)} "
                             "overlap: give them as one region")
    total = sum(b - a for a, b in regs)
    if total > target_seconds:
        raise ValueError(f"--keep: the regions last {total:.1f} s together, longer than the target "
                         f"({target_seconds:.1f} s): they cannot all stay")


def keep_beats(song: SongAnalysis, regions: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Beat ranges ``[b0, b1)`` covering each region (every beat that overlaps it), sorted; adjacent ranges merged."""
    starts = np.asarray(song.beat_times, dtype=np.float64)
    ends = np.append(starts[1:], song.duration)
    out: list[tuple[int, int]] = []
    for a, b in sorted(regions):
        idx = np.flatnonzero((ends > a) & (starts < b))
        if len(idx) == 0:
            raise ValueError(f"--keep {format_seconds(a)}-{format_seconds(b)}: no beat of the song lies in this region")
        b0, b1 = int(idx[0]), int(idx[-1]) + 1
        if out and b0 <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b1))
        else:
            out.append((b0, b1))
    return out


def keeps(edit, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether the edit plays every beat range back to back, in order, at full gain (``EditResult.output_beats``)."""
    ob = getattr(edit, "output_beats", edit)
    src = [int(s) for s, _, _ in ob]
    full = [abs(g0 - 1.0) < 1e-6 and abs(g1 - 1.0) < 1e-6 for _, g0, g1 in ob]
    pos = 0
    for b0, b1 in ranges:
        want = list(range(b0, b1))
        found = -1
        for i in range(pos, len(src) - len(want) + 1):
            if src[i:i + len(want)] == want and all(full[i:i + len(want)]):
                found = i
                break
        if found < 0:
            return False
        pos = found + len(want)
    return True
