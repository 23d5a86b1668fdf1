"""Render manifests and the rating queue (issue pairs to raters, consume votes).

Render folder layout (written by ``write_pair_manifest``: the evaluate stage's listening set, ``beatedit.feedback.listening``, and the demo)::

    renders/
      pairs.json                 list of pair records (PairSpec below)
      song_007/champion.wav      written by beatedit.editing.render.write_edit(edl, out_wav)
      song_007/champion.edl.json
      ...

A pair record: ``{pair_id, song_id, a: {wav, edl, actions, kind, model}, b: {...}, target_ratio,
reward_margin?, split?, original?}`` with paths relative to the render folder. ``reward_margin`` is
``|r_a - r_b|`` under the current reward model; small = the model is unsure = asked first.

Queue policy (``issue_next``): a rater never gets the same pair twice (UNIQUE(pair, rater) in the
database); among the pairs they have not seen, the ones with the fewest live ratings come first
(spread across raters), then the smallest ``reward_margin`` (active learning; pairs without a
margin after those with one), then a per-rater hash (so raters at equal priority diverge).
A/B presentation order is randomised per issue and undone when the vote is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from beatedit.editing.actions import N_ACTIONS
from beatedit.editing.edl import EDL, EDLError

from .db import FeedbackDB, IssuedPair, Pair, Rater, Vote, utcnow
from .security import (
    PAIR_ID_RE,
    IssueClaims,
    UnsafePathError,
    new_nonce,
    safe_audio_path,
    safe_child_path,
    sign_issue,
    validate_rater_id,
)

MANIFEST_NAME = "pairs.json"
DEFAULT_TOKEN_TTL_S = 24 * 3600
DEFAULT_HOLD_S = 15 * 60  # how long an unvoted issue keeps its pair from other raters under --max-votes-per-pair
MAX_DURATION_S = 365 * 24 * 3600
MAX_ISSUE_BATCH = 20


def check_duration(name: str, seconds: float) -> float:
    """A positive, finite number of seconds up to a year, or ValueError naming the setting
    (nan/inf would crash date arithmetic; zero or negative would expire every token at once)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds, got {seconds!r}") from None
    if not math.isfinite(value) or not 1.0 <= value <= MAX_DURATION_S:
        raise ValueError(f"{name} must be a finite number of seconds in [1, {MAX_DURATION_S}], got {seconds!r}")
    return value


class ManifestError(ValueError):
    """The manifest file as a whole is unusable (missing, not JSON, not a list)."""


class VoteError(Exception):
    """A vote the store refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- manifest ---------------------------------------------------------------------------------------
class RenderRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wav: str = Field(min_length=1, max_length=512)
    edl: str | None = Field(default=None, max_length=512)  # default: the wav's sibling X.edl.json
    actions: list[int] = Field(min_length=1)
    kind: str = Field(min_length=1, max_length=64)
    model: str = Field(default="", max_length=256)

    @field_validator("actions")
    @classmethod
    def _actions_in_vocab(cls, v: list[int]) -> list[int]:
        bad = [a for a in v if not 0 <= a < N_ACTIONS]
        if bad:
            raise ValueError(f"action ids must lie in [0, {N_ACTIONS}), got {bad[:5]}")
        return v

    def edl_path(self) -> str:
        if self.edl:
            return self.edl
        if not self.wav.lower().endswith(".wav"):
            raise ValueError(f"{self.wav!r} is not a .wav file")
        return self.wav[:-4] + ".edl.json"


class PairSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair_id: str = Field(pattern=PAIR_ID_RE.pattern)
    song_id: str = Field(min_length=1, max_length=200)
    a: RenderRef
    b: RenderRef
    target_ratio: float = Field(gt=0.0, le=4.0, allow_inf_nan=False)
    reward_margin: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    split: str | None = Field(default=None, max_length=32)
    original: str | None = Field(default=None, min_length=1, max_length=512)  # the unedited song (a WAV in the folder), for reference

    @model_validator(mode="after")
    def _same_song(self) -> "PairSpec":
        if len(self.a.actions) != len(self.b.actions):
            raise ValueError(f"actions of A ({len(self.a.actions)} beats) and B ({len(self.b.actions)} beats) must cover the same source beats")
        if self.a.wav == self.b.wav:
            raise ValueError("A and B are the same file")
        return self


@dataclass
class LoadedPair:
    spec: PairSpec
    edl_a: str  # compact EDL JSON
    edl_b: str
    content_sha256: str


@dataclass
class ManifestReport:
    pairs: list[LoadedPair] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {index, pair_id, reason}


def _content_hash(spec: PairSpec, edl_a: str, edl_b: str) -> str:
    d = {"song_id": spec.song_id, "edl_a": edl_a, "edl_b": edl_b, "actions_a": spec.a.actions, "actions_b": spec.b.actions,
         "kind_a": spec.a.kind, "kind_b": spec.b.kind, "model_a": spec.a.model, "model_b": spec.b.model, "target_ratio": spec.target_ratio}
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _read_edl(render_dir: Path, ref: RenderRef, song_id: str) -> str:
    path = safe_child_path(render_dir, ref.edl_path(), ".json")
    edl = EDL.load(path)
    if edl.song_id and edl.song_id != song_id:
        raise ValueError(f"{ref.edl_path()}: EDL is for song {edl.song_id!r}, the pair says {song_id!r}")
    return edl.to_json()


def load_manifest(render_dir: str | Path) -> ManifestReport:
    """Validate every record of ``render_dir/pairs.json``. Bad records are reported (not fatal);
    a missing or unreadable manifest raises ManifestError naming the file."""
    root = Path(render_dir)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise ManifestError(f"{root}: render folder does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no pair manifest (write one with beatedit.feedback.write_pair_manifest)") from exc
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable pair manifest: {exc}") from exc
    if isinstance(raw, dict) and isinstance(raw.get("pairs"), list):
        raw = raw["pairs"]
    if not isinstance(raw, list):
        raise ManifestError(f"{path}: expected a JSON list of pairs")
    rep, seen = ManifestReport(), set()
    for i, rec in enumerate(raw):
        pid = rec.get("pair_id") if isinstance(rec, dict) else None
        try:
            spec = PairSpec.model_validate(rec)
            if spec.pair_id in seen:
                raise ValueError(f"duplicate pair_id {spec.pair_id!r}")
            for ref in (spec.a, spec.b):
                safe_audio_path(root, ref.wav)
            if spec.original is not None:
                safe_audio_path(root, spec.original)
            edl_a, edl_b = _read_edl(root, spec.a, spec.song_id), _read_edl(root, spec.b, spec.song_id)
        except (ValidationError, ValueError, UnsafePathError, EDLError, OSError) as exc:
            rep.rejected.append({"index": i, "pair_id": pid, "reason": str(exc).strip().replace("\n", "; ")[:500]})
            continue
        seen.add(spec.pair_id)
        rep.pairs.append(LoadedPair(spec, edl_a, edl_b, _content_hash(spec, edl_a, edl_b)))
    return rep


def write_pair_manifest(render_dir: str | Path, pairs: Iterable[dict | PairSpec], *, check_files: bool = True) -> Path:
    """Validate ``pairs`` and write ``render_dir/pairs.json`` atomically. With ``check_files`` every
    wav / EDL must exist inside the folder (raises ValueError naming the first bad pair)."""
    root = Path(render_dir)
    root.mkdir(parents=True, exist_ok=True)
    specs = [p if isinstance(p, PairSpec) else PairSpec.model_validate(p) for p in pairs]
    ids = [s.pair_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{root / MANIFEST_NAME}: duplicate pair ids")
    if check_files:
        for s in specs:
            try:
                for ref in (s.a, s.b):
                    safe_audio_path(root, ref.wav)
                    _read_edl(root, ref, s.song_id)
            except (UnsafePathError, EDLError, ValueError) as exc:
                raise ValueError(f"pair {s.pair_id}: {exc}") from exc
    out = root / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".pairs.", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump([s.model_dump(exclude_none=True) for s in specs], fh, indent=1)
    os.replace(tmp, out)
    return out


def pair_from_renders(render_dir: str | Path, wav_a: str | Path, wav_b: str | Path, *, actions_a: Sequence[int], actions_b: Sequence[int],
                      kind_a: str, kind_b: str, target_ratio: float | None = None, song_id: str | None = None, model_a: str = "",
                      model_b: str = "", reward_margin: float | None = None, split: str | None = None, pair_id: str | None = None) -> dict:
    """A manifest record from two ``write_edit(edl, out_wav)`` outputs inside ``render_dir``
    (``X.wav`` + ``X.edl.json``). ``song_id`` / ``target_ratio`` default to the EDL's; ``pair_id``
    defaults to a content hash. ``actions_*`` are the per-source-beat action ids
    (``EditResult.beat_actions``)."""
    root = Path(render_dir).resolve()
    refs, edls = [], []
    for wav, actions, kind, model in ((wav_a, actions_a, kind_a, model_a), (wav_b, actions_b, kind_b, model_b)):
        p = Path(wav)
        p = p.resolve() if p.is_absolute() else (root / p).resolve()
        if not p.is_relative_to(root):
            raise ValueError(f"{wav}: render lies outside the render folder {root}")
        rel = p.relative_to(root).as_posix()
        safe_audio_path(root, rel)
        edl = EDL.load(safe_child_path(root, rel[:-4] + ".edl.json", ".json"))
        edls.append(edl)
        refs.append({"wav": rel, "edl": rel[:-4] + ".edl.json", "actions": [int(a) for a in actions], "kind": kind, "model": model})
    song = song_id or edls[0].song_id or edls[1].song_id
    if not song:
        raise ValueError("song_id not given and not recorded in the EDLs")
    ratio = target_ratio if target_ratio is not None else (edls[0].target_ratio if edls[0].target_ratio is not None else edls[1].target_ratio)
    if ratio is None:
        raise ValueError("target_ratio not given and not recorded in the EDLs")
    if pair_id is None:
        h = hashlib.sha256(json.dumps([song, edls[0].to_json(), edls[1].to_json(), refs[0]["actions"], refs[1]["actions"]]).encode()).hexdigest()
        pair_id = f"{song[:40]}-{h[:16]}" if PAIR_ID_RE.match(f"{song[:40]}-x") else f"p-{h[:16]}"
    rec = {"pair_id": pair_id, "song_id": song, "a": refs[0], "b": refs[1], "target_ratio": float(ratio)}
    if reward_margin is not None:
        rec["reward_margin"] = float(reward_margin)
    if split is not None:
        rec["split"] = split
    return PairSpec.model_validate(rec).model_dump(exclude_none=True)


# --- syncing a manifest into the database ------------------------------------------------------------
@dataclass
class SyncReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: list[dict] = field(default_factory=list)
    originals: dict[str, str] = field(default_factory=dict)  # pair id -> the manifest's original (not stored in the DB)

    @property
    def active(self) -> int:
        return self.added + self.updated + self.unchanged


def sync_manifest(db: FeedbackDB, render_dir: str | Path) -> SyncReport:
    """Upsert the manifest's pairs into ``pairs`` (content copied, so exports need only the DB).
    A pair id already stored with *different* content is rejected (ids must not be reused);
    pairs of this render folder that left the manifest are deactivated (their votes stay)."""
    root = Path(render_dir).resolve()
    man = load_manifest(root)
    rep = SyncReport(rejected=list(man.rejected))
    now = utcnow()
    with db.write() as s:
        live = set()
        for lp in man.pairs:
            sp = lp.spec
            row = s.get(Pair, sp.pair_id)
            fields = dict(song_id=sp.song_id, split=sp.split, target_ratio=sp.target_ratio, reward_margin=sp.reward_margin,
                          wav_a=sp.a.wav, wav_b=sp.b.wav, edl_a=lp.edl_a, edl_b=lp.edl_b, actions_a=json.dumps(sp.a.actions),
                          actions_b=json.dumps(sp.b.actions), kind_a=sp.a.kind, kind_b=sp.b.kind, model_a=sp.a.model, model_b=sp.b.model,
                          render_dir=str(root), active=True)
            if row is None:
                s.add(Pair(id=sp.pair_id, content_sha256=lp.content_sha256, added_at=now, **fields))
                rep.added += 1
            elif row.content_sha256 != lp.content_sha256:
                rep.rejected.append({"index": None, "pair_id": sp.pair_id, "reason": "pair_id already used for different content in this database; give changed pairs new ids"})
                continue
            else:
                changed = any(getattr(row, k) != v for k, v in fields.items())
                for k, v in fields.items():
                    setattr(row, k, v)
                rep.updated += int(changed)
                rep.unchanged += int(not changed)
            live.add(sp.pair_id)
            if sp.original is not None:
                rep.originals[sp.pair_id] = sp.original
        stale = s.execute(select(Pair).where(Pair.render_dir == str(root), Pair.active.is_(True))).scalars().all()
        for row in stale:
            if row.id not in live:
                row.active = False
                rep.deactivated += 1
    return rep


def ensure_rater(db: FeedbackDB, rater: str, token_sha256: str | None = None) -> None:
    validate_rater_id(rater)
    with db.read() as s:
        row = s.get(Rater, rater)
        if row is not None and (token_sha256 is None or row.token_sha256 == token_sha256):
            return
    for attempt in range(3):
        try:
            with db.write() as s:
                row = s.get(Rater, rater)
                if row is None:
                    s.add(Rater(id=rater, token_sha256=token_sha256, created_at=utcnow()))
                elif token_sha256 is not None:
                    row.token_sha256 = token_sha256
            return
        except IntegrityError:
            if attempt == 2:
                raise


def sync_raters(db: FeedbackDB, tokens_sha256: dict[str, str]) -> None:
    """Register the raters of a token file (token hashes stored; raw tokens never are)."""
    with db.write() as s:
        known = {r.id: r for r in s.execute(select(Rater)).scalars()}
        by_hash = {r.token_sha256: r for r in known.values() if r.token_sha256}
        for rater, h in tokens_sha256.items():
            holder = by_hash.get(h)
            if holder is not None and holder.id != rater:
                holder.token_sha256 = None
                s.flush()
            row = known.get(rater)
            if row is None:
                s.add(Rater(id=rater, token_sha256=h, created_at=utcnow()))
            else:
                row.token_sha256 = h
        s.flush()


# --- issuing ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issued:
    token: str
    issue_id: int
    pair_id: str
    song_id: str
    target_ratio: float
    swapped: bool  # True: the page's "A" is the manifest's B


@dataclass(frozen=True)
class Progress:
    votes: int  # this rater's stored votes (skips included)
    remaining: int  # pairs still available to this rater (outstanding included)


def _live_coverage(cutoff: dt.datetime):
    """Subquery pair_id -> number of live ratings (non-skip votes + unexpired outstanding issues)."""
    return (
        select(IssuedPair.pair_id.label("pair_id"), func.count().label("n"))
        .outerjoin(Vote, Vote.issue_id == IssuedPair.id)
        .where(or_(and_(IssuedPair.consumed_at.is_not(None), Vote.choice != "skip"), and_(IssuedPair.consumed_at.is_(None), IssuedPair.issued_at >= cutoff)))
        .group_by(IssuedPair.pair_id)
        .subquery()
    )


def _candidates(s, render_dir: str, rater: str, cutoff: dt.datetime, max_votes_per_pair: int | None):
    cov = _live_coverage(cutoff)
    seen = select(IssuedPair.pair_id).where(IssuedPair.rater_id == rater)
    q = (
        select(Pair.id, Pair.reward_margin, func.coalesce(cov.c.n, 0))
        .outerjoin(cov, cov.c.pair_id == Pair.id)
        .where(Pair.render_dir == render_dir, Pair.active.is_(True), Pair.id.not_in(seen))
    )
    if max_votes_per_pair is not None:
        q = q.where(func.coalesce(cov.c.n, 0) < max_votes_per_pair)
    return s.execute(q).all()


def _order_key(rater: str):
    def key(row):
        pid, margin, n = row
        h = hashlib.sha256(f"{rater}\x00{pid}".encode()).hexdigest()
        return (n, margin is None, margin if margin is not None else 0.0, h)

    return key


def _claims(row: IssuedPair) -> IssueClaims:
    return IssueClaims(issue_id=row.id, pair_id=row.pair_id, rater=row.rater_id, nonce=row.nonce, issued_at=int(row.issued_at.timestamp()))


def _hold_cutoff(now: dt.datetime, ttl_s: float, hold_s: float | None) -> dt.datetime:
    """Issues made before this no longer count as live ratings (they stop holding their pair)."""
    return now - dt.timedelta(seconds=min(ttl_s, hold_s) if hold_s is not None else ttl_s)


def issue_next(db: FeedbackDB, key: bytes, render_dir: str | Path, rater: str, n: int = 1, *, ttl_s: float = DEFAULT_TOKEN_TTL_S,
               max_votes_per_pair: int | None = None, rng: secrets.SystemRandom | None = None, hold_s: float | None = None,
               max_outstanding: int | None = None) -> list[Issued]:
    """Up to ``n`` pairs for ``rater``: their outstanding (unvoted) issues first, re-signed (and
    given a fresh nonce when expired), then new issues chosen by the queue policy.

    ``hold_s``: an unvoted issue counts as a live rating of its pair only this long (default: the
    token TTL), so an idle rater cannot starve ``max_votes_per_pair`` for a day.
    ``max_outstanding``: at most this many unvoted issues per rater (anonymous raters)."""
    if not 1 <= n <= MAX_ISSUE_BATCH:
        raise ValueError(f"n must lie in [1, {MAX_ISSUE_BATCH}]")
    rdir = str(Path(render_dir).resolve())
    rng = rng or secrets.SystemRandom()
    for attempt in range(5):
        try:
            with db.write() as s:
                now = utcnow()
                cutoff = now - dt.timedelta(seconds=ttl_s)
                held = _hold_cutoff(now, ttl_s, hold_s)
                open_rows = s.execute(
                    select(IssuedPair).join(Pair, Pair.id == IssuedPair.pair_id)
                    .where(IssuedPair.rater_id == rater, IssuedPair.consumed_at.is_(None), Pair.active.is_(True), Pair.render_dir == rdir)
                    .order_by(IssuedPair.id).limit(n)
                ).scalars().all()
                rows = list(open_rows)
                for r in rows:
                    if r.issued_at < cutoff + dt.timedelta(seconds=min(60.0, ttl_s / 10)):  # expired or about to: refresh
                        r.nonce, r.issued_at = new_nonce(), now
                room = n - len(rows)
                if max_outstanding is not None:
                    n_open = s.execute(select(func.count()).select_from(IssuedPair)
                                       .where(IssuedPair.rater_id == rater, IssuedPair.consumed_at.is_(None))).scalar_one()
                    room = min(room, max_outstanding - n_open)
                if room > 0:
                    cands = sorted(_candidates(s, rdir, rater, held, max_votes_per_pair), key=_order_key(rater))
                    for pid, _m, _n in cands[:room]:
                        r = IssuedPair(pair_id=pid, rater_id=rater, nonce=new_nonce(), swapped=bool(rng.getrandbits(1)), issued_at=now)
                        s.add(r)
                        rows.append(r)
                s.flush()
                pairs = {p.id: p for p in s.execute(select(Pair).where(Pair.id.in_([r.pair_id for r in rows]))).scalars()}
                return [Issued(sign_issue(key, _claims(r)), r.id, r.pair_id, pairs[r.pair_id].song_id, pairs[r.pair_id].target_ratio, r.swapped) for r in rows]
        except IntegrityError:  # a concurrent request issued the same (pair, rater): choose again
            if attempt == 4:
                raise
    return []


def progress(db: FeedbackDB, render_dir: str | Path, rater: str, *, ttl_s: float = DEFAULT_TOKEN_TTL_S, max_votes_per_pair: int | None = None,
             hold_s: float | None = None) -> Progress:
    rdir = str(Path(render_dir).resolve())
    with db.read() as s:
        votes = s.execute(select(func.count()).select_from(Vote).where(Vote.rater_id == rater)).scalar_one()
        cutoff = _hold_cutoff(utcnow(), ttl_s, hold_s)
        outstanding = s.execute(
            select(func.count()).select_from(IssuedPair).join(Pair, Pair.id == IssuedPair.pair_id)
            .where(IssuedPair.rater_id == rater, IssuedPair.consumed_at.is_(None), Pair.active.is_(True), Pair.render_dir == rdir)
        ).scalar_one()
        fresh = len(_candidates(s, rdir, rater, cutoff, max_votes_per_pair))
    return Progress(votes=int(votes), remaining=int(outstanding + fresh))


def issued_pair(db: FeedbackDB, claims: IssueClaims) -> tuple[IssuedPair, Pair]:
    """The stored issue + pair for authenticated claims (nonce must still match)."""
    with db.read() as s:
        row = s.get(IssuedPair, claims.issue_id)
        if row is None or row.pair_id != claims.pair_id or row.rater_id != claims.rater:
            raise VoteError(404, "unknown_issue", "this pair was not issued by this server's database")
        if row.nonce != claims.nonce:
            raise VoteError(409, "stale_token", "this issue token was superseded; load the pair again")
        pair = s.get(Pair, row.pair_id)
        return row, pair


SWAP = {"a": "b", "b": "a", "tie": "tie", "skip": "skip"}


def submit_vote(db: FeedbackDB, claims: IssueClaims, shown_choice: str, *, strength: int | None = None, comment: str = "",
                listened_a: float | None = None, listened_b: float | None = None) -> Vote:
    """Consume the issue and store the vote, atomically. ``shown_choice`` is in presentation
    terms (what the rater saw as A/B); it is stored un-swapped in ``choice``. Raises VoteError:
    404 unknown issue, 409 replay / superseded token."""
    if shown_choice not in SWAP:
        raise VoteError(422, "bad_choice", f"choice must be one of {sorted(SWAP)}")
    if strength is not None and not 1 <= strength <= 3:
        raise VoteError(422, "bad_strength", "strength must be 1, 2 or 3")
    # One transaction, Core statements (hot path); no blind retry: a failure is answered.
    it, vt = IssuedPair.__table__, Vote.__table__
    try:
        with db.write_conn() as s:
            now = utcnow()
            row = s.execute(
                update(it)
                .where(it.c.id == claims.issue_id, it.c.nonce == claims.nonce, it.c.consumed_at.is_(None),
                       it.c.pair_id == claims.pair_id, it.c.rater_id == claims.rater)
                .values(consumed_at=now)
                .returning(it.c.swapped)
            ).first()
            if row is None:  # slow path: say why
                cur = s.execute(select(it.c.pair_id, it.c.rater_id, it.c.nonce, it.c.consumed_at).where(it.c.id == claims.issue_id)).first()
                if cur is None or cur.pair_id != claims.pair_id or cur.rater_id != claims.rater:
                    raise VoteError(404, "unknown_issue", "this pair was not issued by this server's database")
                if cur.consumed_at is not None:
                    raise VoteError(409, "replayed", "a vote for this issued pair was already recorded (replay rejected)")
                raise VoteError(409, "stale_token", "this issue token was superseded; load the pair again")
            swapped = bool(row.swapped)
            choice = SWAP[shown_choice] if swapped else shown_choice
            # A listen time is stored against the manifest side that was actually heard.
            la, lb = (listened_b, listened_a) if swapped else (listened_a, listened_b)
            values = dict(issue_id=claims.issue_id, pair_id=claims.pair_id, rater_id=claims.rater, choice=choice, shown_choice=shown_choice,
                          strength=None if choice in ("tie", "skip") else strength, comment=comment, listened_a=la, listened_b=lb, created_at=now)
            vote_id = s.execute(insert(vt).values(**values).returning(vt.c.id)).scalar_one()
            return Vote(id=vote_id, **values)
    except IntegrityError as exc:  # UNIQUE(issue_id): a concurrent duplicate won the race
        raise VoteError(409, "replayed", "a vote for this issued pair was already recorded (replay rejected)") from exc

def count_votes(db: FeedbackDB) -> dict[str, Any]:
    with db.read() as s:
        by = dict(s.execute(select(Vote.choice, func.count()).group_by(Vote.choice)).all())
        total = sum(by.values())
    return {"total": total, **{c: int(by.get(c, 0)) for c in ("a", "b", "tie", "skip")}}

