"""Quarantine: bad songs are listed with their reason, never silently dropped."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from beatedit.atomic import atomic_write_text


@dataclass(frozen=True)
class QuarantineEntry:
    file: str
    reason: str  # short code: undecodable, empty, silent, nonfinite, too_short, too_long, unsupported, error
    detail: str  # the full message
    stage: str


def write_report(path: str | Path, stage: str, entries: list[QuarantineEntry], processed: int) -> dict:
    """Write ``{stage, processed, quarantined, entries}`` as JSON and return it."""
    report = {
        "stage": stage,
        "processed": processed,
        "quarantined": len(entries),
        "entries": [asdict(e) for e in sorted(entries, key=lambda e: e.file)],
    }
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return report


def summary_line(report: dict) -> str:
    if not report["quarantined"]:
        return f"{report['stage']}: {report['processed']} songs processed, none quarantined"
    reasons = ", ".join(f"{e['file']} ({e['reason']})" for e in report["entries"][:10])
    more = "" if report["quarantined"] <= 10 else f" and {report['quarantined'] - 10} more"
    return f"{report['stage']}: {report['processed']} songs processed, {report['quarantined']} QUARANTINED: {reasons}{more}"
