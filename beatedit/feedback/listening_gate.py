"""When a vote counts as heard: the page's listening gate and the export's threshold.

A side (A or B) is *heard* once the rater listened past its first seam (+ ``SEAM_MARGIN_S``) or for
``min(min_listen_s, HEARD_FRACTION * its length)`` seconds. The page enables A / B / tie only when
both sides are heard (skip is always allowed); ``/api/next`` sends each shown side's seam times
(output seconds, from the stored EDL) and length with the pair. The server stores the seconds the
page measured (``listened_a`` / ``listened_b``, in the manifest's terms); ``export_votes`` drops a
non-skip vote whose either side was heard neither past its first seam nor for ``min(min_listened_s,
HEARD_FRACTION * length)`` seconds (the gate's rule, with the export's threshold) and reports how many it dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import select

from beatedit.editing.edl import EDL, EDLError

from .db import FeedbackDB, Pair

DEFAULT_MIN_LISTEN_S = 8.0  # serve: the page's gate (seconds per side, unless the first seam was passed)
DEFAULT_MIN_LISTENED_S = 5.0  # export: a vote with less heard on either side is dropped
HEARD_FRACTION = 0.9  # a side shorter than the threshold counts as heard at 90% of its length
SEAM_MARGIN_S = 0.5  # past the first seam means at least this far past it
MAX_MIN_LISTEN_S = 600.0


def check_min_listen(seconds: float, name: str = "min_listen_s (--min-listen)") -> float:
    """A finite number of seconds in [0, 600], or ValueError naming the setting."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {seconds!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_MIN_LISTEN_S:
        raise ValueError(f"{name} must be a finite number of seconds in [0, {MAX_MIN_LISTEN_S:g}], got {seconds!r}")
    return value


def _side(edl_json: str) -> dict:
    try:
        e = EDL.from_json(edl_json)
    except (EDLError, ValueError, TypeError):
        return {"seams": [], "duration": None}
    return {"seams": [round(p / e.source_sr, 3) for p in e.splice_positions()], "duration": round(e.duration, 3)}


def listening_info(db: FeedbackDB, pair_ids: Sequence[str]) -> dict[str, dict]:
    """pair id -> {"a": {seams, duration}, "b": {...}} in the manifest's terms."""
    if not pair_ids:
        return {}
    with db.read() as s:
        rows = s.execute(select(Pair.id, Pair.edl_a, Pair.edl_b).where(Pair.id.in_(list(pair_ids)))).all()
    return {pid: {"a": _side(ea), "b": _side(eb)} for pid, ea, eb in rows}


def shown_listening(info: dict | None, swapped: bool, min_listen_s: float) -> dict:
    """The ``listen`` block of an issued item, in presentation terms (undoing nothing: the page's A
    is the manifest's B when ``swapped``)."""
    info = info or {"a": {"seams": [], "duration": None}, "b": {"seams": [], "duration": None}}
    a, b = (info["b"], info["a"]) if swapped else (info["a"], info["b"])
    return {"listen": {"a": a, "b": b, "min_listen_s": min_listen_s, "seam_margin_s": SEAM_MARGIN_S, "heard_fraction": HEARD_FRACTION}}


def required_seconds(threshold_s: float, duration_s: float | None) -> float:
    """Seconds a side must have been heard: the threshold, capped at HEARD_FRACTION of its length."""
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return threshold_s
    return min(threshold_s, HEARD_FRACTION * duration_s)


def heard_enough(listened_s: float | None, threshold_s: float, duration_s: float | None,
                 first_seam_s: float | None = None) -> bool:
    """Export rule for one side, the page's gate in seconds heard: ``listened_s`` (None = not reported = 0) reaches
    ``required_seconds``, or reaches past the side's first seam (``first_seam_s + SEAM_MARGIN_S``; None = no seam).
    A vote the page accepted is never dropped for being heard only up to its first seam."""
    if threshold_s <= 0:
        return True
    heard = float(listened_s or 0.0) + 1e-9
    if first_seam_s is not None and heard >= first_seam_s + SEAM_MARGIN_S:
        return True
    return heard >= required_seconds(threshold_s, duration_s)


def edl_duration(edl_json: str) -> float | None:
    return _side(edl_json)["duration"]


def edl_first_seam(edl_json: str) -> float | None:
    """The first seam of an edit in output seconds (None: no seam, or an unreadable EDL)."""
    seams = _side(edl_json)["seams"]
    return seams[0] if seams else None


__all__ = ["DEFAULT_MIN_LISTEN_S", "DEFAULT_MIN_LISTENED_S", "check_min_listen", "listening_info", "shown_listening", "heard_enough",
           "required_seconds", "edl_duration", "edl_first_seam", "HEARD_FRACTION", "SEAM_MARGIN_S"]
