"""The independent judge: scores a rendered edit against its source from audio alone.

Used only for final held-out reports, never for training or checkpoint selection, and it shares
no code with the simulated listener, the dense reward or the project's audio front end (a test
enforces that ``beatedit.judge`` imports nothing else from ``beatedit``). Its own alignment finds
the splices, librosa tracks its beats, and every component is documented with why it matters.

Total = weighted mean of the components (``WEIGHTS``): seams 0.30 (the most audible fault of an
edit: BBC R&D 2014), length 0.20 (the brief), ending 0.20 and start 0.15 (editors keep the real
ones; arXiv 2305.07347), tempo 0.15 (a stumbling pulse is heard even through clean seams).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from beatedit.judge.align import Piece, find_pieces
from beatedit.judge.analysis import JudgeInputError, Profile, profile, to_mono
from beatedit.judge.measures import (
    EdgeReport,
    SeamReport,
    ending_report,
    length_score,
    seam_reports,
    seams_score,
    start_report,
    tempo_score,
)

WEIGHTS = {"seams": 0.30, "tempo": 0.15, "ending": 0.20, "start": 0.15, "length": 0.20}
COMPONENTS = tuple(WEIGHTS)
MATCH_OK = 0.8  # a piece whose interior correlates this well with the source is a verified copy


@dataclass
class JudgeScore:
    """The judge's verdict on one edit: components in [0, 1] (1 best), their weighted total, and
    what was measured (for reports and for debugging a surprising score)."""

    total: float
    seams: float
    tempo: float
    ending: float
    start: float
    length: float
    edit_seconds: float
    target_seconds: float
    source_seconds: float
    beat_period: float  # s, the source's (librosa) beat period
    coverage: float  # fraction of the edit verified as copies of the source
    pieces: list[Piece] = field(default_factory=list)
    seam_reports: list[SeamReport] = field(default_factory=list)
    start_report: EdgeReport | None = None
    end_report: EdgeReport | None = None

    @property
    def n_seams(self) -> int:
        return len(self.seam_reports)

    def components(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in COMPONENTS}

    def to_dict(self) -> dict:
        """JSON-ready summary (components, totals, seams)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("pieces",)}
        d["n_seams"] = self.n_seams
        return d


def source_profile(source_audio: np.ndarray | str | Path, sr: int | None = None) -> Profile:
    """Analyse a source once, to judge many edits of it (``judge_edit`` accepts the result)."""
    y, rate = to_mono(source_audio, sr)
    return profile(y, rate)


def judge_edit(edit_audio: np.ndarray | str | Path, source_audio: np.ndarray | str | Path | Profile,
               sr: int | None, target_seconds: float) -> JudgeScore:
    """Score a rendered edit (array [n] / [ch, n] / [n, ch], or a WAV path) against its source.

    ``sr``: the arrays' sample rate (files are resampled to it; ``None`` = the files' own rate).
    ``target_seconds``: the requested edit length.
    """
    if not (isinstance(target_seconds, (int, float)) and math.isfinite(target_seconds) and target_seconds > 0):
        raise JudgeInputError(f"target_seconds must be a positive number, got {target_seconds!r}")
    src = source_audio if isinstance(source_audio, Profile) else source_profile(source_audio, sr)
    y, rate = to_mono(edit_audio, src.sr if sr is None else sr)
    if rate != src.sr:
        raise JudgeInputError(f"edit is at {rate} Hz but the source at {src.sr} Hz")
    if len(y) < 4 * src.hop:
        raise JudgeInputError(f"edit is {len(y) / rate:.3f} s long: too short to judge")
    edit = profile(y, rate)
    pieces = find_pieces(edit, src)
    n = len(y)
    coverage = sum(p.end - p.start for p in pieces if p.match >= MATCH_OK) / n
    seams = seam_reports(edit, src, pieces)
    start, end = start_report(edit, src, pieces[0]), ending_report(edit, src, pieces[-1])
    comps = {
        "seams": seams_score(seams, coverage, n / rate),
        "tempo": tempo_score(edit, src),
        "ending": end.score,
        "start": start.score,
        "length": length_score(n / rate, float(target_seconds), src.period),
    }
    total = sum(WEIGHTS[k] * v for k, v in comps.items()) / sum(WEIGHTS.values())
    return JudgeScore(total=float(total), **{k: float(v) for k, v in comps.items()}, edit_seconds=n / rate,
                      target_seconds=float(target_seconds), source_seconds=src.duration, beat_period=src.period,
                      coverage=float(coverage), pieces=pieces, seam_reports=seams, start_report=start,
                      end_report=end)


def judge_batch(edits: Iterable[tuple[np.ndarray | str | Path, float]], source_audio: np.ndarray | str | Path | Profile,
                sr: int | None = None) -> list[JudgeScore]:
    """Judge several edits of one source, ``(edit audio, target seconds)`` each; the source is analysed once."""
    src = source_audio if isinstance(source_audio, Profile) else source_profile(source_audio, sr)
    return [judge_edit(e, src, sr, t) for e, t in edits]


def mean_scores(scores: Sequence[JudgeScore]) -> dict[str, float]:
    """Mean total and component scores over a set of verdicts (for reports)."""
    if not scores:
        raise ValueError("no scores to average")
    keys = ("total",) + COMPONENTS
    return {k: float(np.mean([getattr(s, k) for s in scores])) for k in keys}
