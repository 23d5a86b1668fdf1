"""Export stored votes to the preference table read by the ``preferences`` stage.

One row per non-skip vote, in the pair-table schema (``beatedit.preferences.schema``: every
column, in its order and dtype), so the preferences stage concatenates it with the simulated
pairs as it is. ``strength`` maps the rater's 1-3 to 1/3, 2/3, 1 (no strength given: 2/3; tie: 0),
the same [0, 1] scale as the simulated listener's ``|p - 0.5| * 2``. What no vote can say
(``p_a``, ``gold_a``, ``gold_b``, ``ood``, ``ratio_a``, ``ratio_b``) holds ``HUMAN_UNKNOWN``: null,
and ``ood`` False. ``split`` is the manifest's split when given, else null (the preferences
stage assigns it from ``song_id``). A and B are always the *manifest's* A and B — the
presentation swap was undone when the vote was stored.

The export merges into an existing file idempotently: rows are keyed by
(source, rater, song_id, edl_a, edl_b, timestamp); rows already present (from this or any
other database) are kept, a re-export adds nothing twice, and the file is written sorted and
atomically, so an unchanged set of votes gives an identical table.

Votes not listened to: with ``min_listened_s > 0`` a non-skip vote is dropped (not exported,
counted in ``ExportReport.dropped_unheard``) when either side was heard neither past its first seam (+0.5 s,
the page's gate) nor for ``min(min_listened_s, 0.9 * that side's length)`` seconds (``listening_gate.heard_enough``; a vote
without a reported time counts as 0 s heard). The CLI and the ``retrain`` deployment use 5 s
(``ops.feedback_min_listened_s``); the library default 0 keeps every vote.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import make_url

from beatedit.paths import human_analyses_dir
from beatedit.preferences.schema import COLUMN_NAMES, HUMAN_UNKNOWN, columns_of

from .db import FeedbackDB, Pair, Vote, current_version, make_engine, migrate
from .listening_gate import check_min_listen, edl_duration, edl_first_seam, heard_enough

KEY_COLUMNS = ["source", "rater", "song_id", "edl_a", "edl_b", "timestamp"]
CHOICE_VALUE = {"a": 0.0, "b": 1.0, "tie": 0.5}
DEFAULT_STRENGTH = 2


@dataclass(frozen=True)
class ExportReport:
    path: Path
    exported: int  # non-skip votes read from the database
    skipped: int  # skip votes (never exported)
    added: int  # rows new to the file
    total: int  # rows in the file afterwards
    dropped_unheard: int = 0  # non-skip votes left out: a side heard for less than the threshold
    min_listened_s: float = 0.0  # the threshold used
    analyses: int = 0  # uploaded songs whose beat features were copied beside the table (``<folder>/analyses``)


def _strength(choice: str, k: int | None) -> float:
    if choice == "tie":
        return 0.0
    return float(k if k is not None else DEFAULT_STRENGTH) / 3.0


def upload_analyses(db: FeedbackDB) -> dict[str, Path]:
    """``{song_id: analysis.npz}`` of the uploaded songs in the store: the page saves each upload's beat features
    beside its variations (``<uploads root>/<sha>/<set>/analysis.npz``); a reward model needs them to learn from
    the pick, since an upload is no song of the features stage."""
    with db.read() as s:
        pairs = s.execute(select(Pair).where(Pair.song_id.like("upload-%"))).scalars().all()
    found: dict[str, Path] = {}
    for p in pairs:
        path = Path(p.render_dir) / Path(p.wav_a).parent / "analysis.npz"
        if p.song_id not in found and path.is_file():
            found[p.song_id] = path
    return found


def votes_frame(db: FeedbackDB, min_listened_s: float = 0.0) -> tuple[pd.DataFrame, int, int]:
    """(preference-table rows for every non-skip vote heard enough, number of skip votes, number dropped unheard)."""
    with db.read() as s:
        rows = s.execute(select(Vote, Pair).join(Pair, Pair.id == Vote.pair_id).order_by(Vote.id)).all()
    recs, skipped, dropped = [], 0, 0
    for v, p in rows:
        if v.choice == "skip":
            skipped += 1
            continue
        if min_listened_s > 0 and not (heard_enough(v.listened_a, min_listened_s, edl_duration(p.edl_a), edl_first_seam(p.edl_a))
                                       and heard_enough(v.listened_b, min_listened_s, edl_duration(p.edl_b), edl_first_seam(p.edl_b))):
            dropped += 1
            continue
        recs.append({
            "song_id": p.song_id, "split": p.split, "edl_a": p.edl_a, "edl_b": p.edl_b,
            "actions_a": [int(x) for x in json.loads(p.actions_a)], "actions_b": [int(x) for x in json.loads(p.actions_b)],
            "target_ratio": float(p.target_ratio), "choice": CHOICE_VALUE[v.choice], "strength": _strength(v.choice, v.strength),
            "kind_a": p.kind_a, "kind_b": p.kind_b, "rater": v.rater_id, "source": "human", "timestamp": v.created_at,
            **HUMAN_UNKNOWN,
        })
    return _normalise(pd.DataFrame.from_records(recs, columns=list(COLUMN_NAMES))), skipped, dropped


def _normalise(df: pd.DataFrame) -> pd.DataFrame:
    """The schema's column order and dtypes (nulls as None in str columns), so equal votes give equal bytes."""
    df = df.loc[:, list(COLUMN_NAMES)].copy()
    for c in columns_of("float64"):
        df[c] = pd.to_numeric(df[c], errors="raise").astype("float64")
    for c in columns_of("str") + columns_of("json"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    for c in columns_of("int-list"):
        df[c] = [list(map(int, x)) for x in df[c]]
    for c in columns_of("bool"):
        df[c] = df[c].where(df[c].notna(), False).astype(bool)
    for c in columns_of("timestamp"):
        df[c] = pd.to_datetime(df[c], utc=True).astype("datetime64[us, UTC]")
    return df


def _atomic_parquet(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_votes(db_url: str, out_parquet: str | Path, min_listened_s: float = 0.0,
                 analyses_dir: str | Path | None = None) -> ExportReport:
    """Write / merge the human preference rows of ``db_url`` into ``out_parquet``.

    ``analyses_dir``: where uploaded songs' beat features go (``preferences.human_analyses_dir``; default
    ``<out_parquet's folder>/analyses``), so the reward stage can train on votes for songs it never analysed.

    ``min_listened_s``: drop votes with a side heard for less than this (capped at 90% of the
    side's length); 0 keeps every vote.

    The database must exist and hold a feedback schema: a mistyped URL is an error, never a new
    empty database and an "exported 0" that looks like success."""
    out = Path(out_parquet)
    min_listened_s = check_min_listen(min_listened_s, "min_listened_s (--min-listened)")
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not url.database.startswith("file:"):
        if not Path(url.database).expanduser().is_file():
            raise FileNotFoundError(f"{url.database}: no feedback database there (check --db)")
    engine = make_engine(db_url)
    try:
        if current_version(engine) == 0:
            raise ValueError(f"{url.render_as_string(hide_password=True)}: not a feedback database (no schema); check --db")
        migrate(engine)
        new, skipped, dropped = votes_frame(FeedbackDB(engine), min_listened_s)
        uploads = upload_analyses(FeedbackDB(engine))
    finally:
        engine.dispose()
    if out.exists():
        try:
            old = pd.read_parquet(out)
        except Exception as exc:  # noqa: BLE001 - report which file is bad
            raise ValueError(f"{out}: cannot read the existing preference table: {exc}") from exc
        old = old.assign(**{c: v for c, v in HUMAN_UNKNOWN.items() if c not in old.columns})  # an export from before they existed
        missing = [c for c in COLUMN_NAMES if c not in old.columns]
        if missing:
            raise ValueError(f"{out}: existing table lacks columns {missing}; refusing to merge")
        old = _normalise(old)
    else:
        old = _normalise(pd.DataFrame(columns=list(COLUMN_NAMES)))
    key = lambda d: pd.Series([repr(t) for t in d[KEY_COLUMNS].itertuples(index=False, name=None)], index=d.index, dtype=object)  # noqa: E731
    old_keys = set(key(old)) if len(old) else set()
    fresh = new[~key(new).isin(old_keys)] if len(new) else new
    merged = pd.concat([old, fresh], ignore_index=True) if len(fresh) else old
    merged = merged.sort_values(["timestamp", "source", "rater", "song_id", "edl_a", "edl_b"], kind="stable").reset_index(drop=True)
    merged = _normalise(merged)
    folder = Path(analyses_dir) if analyses_dir is not None else human_analyses_dir(out)
    copied = _copy_analyses({s: uploads[s] for s in set(merged["song_id"]) if s in uploads}, folder)
    _atomic_parquet(merged, out)
    return ExportReport(path=out, exported=len(new), skipped=skipped, added=len(fresh), total=len(merged), dropped_unheard=dropped,
                        min_listened_s=min_listened_s, analyses=copied)


def _copy_analyses(sources: dict[str, Path], folder: Path) -> int:
    """Copy each upload's analysis to ``folder/<song_id>.npz`` (atomically; an existing copy is kept: uploads are
    content-addressed, so the same id is the same song). Returns how many the folder now holds for ``sources``."""
    for song_id, src in sorted(sources.items()):
        dest = folder / f"{song_id}.npz"
        if dest.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return sum((folder / f"{s}.npz").exists() for s in sources)


__all__ = ["ExportReport", "export_votes", "votes_frame"]
