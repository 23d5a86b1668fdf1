"""Feedback storage: SQLAlchemy 2.x models, engine set-up and versioned schema migrations.

SQLite file by default (WAL journal, busy timeout, foreign keys, ``BEGIN IMMEDIATE`` for
write transactions so concurrent writers queue instead of failing); any SQLAlchemy URL with
a synchronous driver works too (``postgresql+psycopg://...``). All SQL goes through the ORM /
Core with bound parameters.

Migrations are a small hand-rolled, versioned list (``MIGRATIONS``): each step runs in its
own transaction and records itself in ``schema_version``; a database newer than this code is
refused with a clear error.

Tables
- ``raters``        rater id, optional token hash, created_at
- ``pairs``         the pairs known from render manifests (content copied in, so export needs
                    only the database): song, EDL JSON, per-beat actions, kinds, models, margin
- ``issued_pairs``  one row per (pair, rater) ever shown: nonce (token binding), swapped
                    (A/B presentation order), issued_at, consumed_at; UNIQUE(pair_id, rater_id)
- ``votes``         one row per consumed issue: UNIQUE(issue_id) -> a replay cannot add a row
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

DEFAULT_DB_URL = "sqlite:///feedback/votes.db"
CHOICES = ("a", "b", "tie", "skip")  # canonical (manifest) A/B, after undoing the presentation swap


class SchemaError(RuntimeError):
    """The database schema is not one this code can use (e.g. newer than the code)."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)




class UTC(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[dt.datetime] = mapped_column(UTC)


class Rater(Base):
    __tablename__ = "raters"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTC)


class Pair(Base):
    __tablename__ = "pairs"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    song_id: Mapped[str] = mapped_column(String(200), index=True)
    split: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_ratio: Mapped[float] = mapped_column(Float)
    reward_margin: Mapped[float | None] = mapped_column(Float, nullable=True)
    wav_a: Mapped[str] = mapped_column(String(512))
    wav_b: Mapped[str] = mapped_column(String(512))
    edl_a: Mapped[str] = mapped_column(Text)  # EDL JSON (compact)
    edl_b: Mapped[str] = mapped_column(Text)
    actions_a: Mapped[str] = mapped_column(Text)  # JSON list[int], one per source beat
    actions_b: Mapped[str] = mapped_column(Text)
    kind_a: Mapped[str] = mapped_column(String(64))
    kind_b: Mapped[str] = mapped_column(String(64))
    model_a: Mapped[str] = mapped_column(String(256), default="")
    model_b: Mapped[str] = mapped_column(String(256), default="")
    render_dir: Mapped[str] = mapped_column(String(1024), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTC)


class IssuedPair(Base):
    __tablename__ = "issued_pairs"
    __table_args__ = (UniqueConstraint("pair_id", "rater_id", name="uq_issued_pair_rater"), Index("ix_issued_rater_open", "rater_id", "consumed_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), index=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    swapped: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[dt.datetime] = mapped_column(UTC)
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UTC, nullable=True)


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("choice IN ('a','b','tie','skip')", name="ck_vote_choice"),
        CheckConstraint("strength IS NULL OR (strength BETWEEN 1 AND 3)", name="ck_vote_strength"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issued_pairs.id"), unique=True)
    pair_id: Mapped[str] = mapped_column(ForeignKey("pairs.id"), index=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("raters.id"), index=True)
    choice: Mapped[str] = mapped_column(String(8))  # canonical: 'a' = manifest A preferred
    shown_choice: Mapped[str] = mapped_column(String(8))  # what the rater pressed (presentation order)
    strength: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    listened_a: Mapped[float | None] = mapped_column(Float, nullable=True)  # seconds of A heard (client-reported)
    listened_b: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTC, index=True)


# --- migrations ------------------------------------------------------------------------------------
_V1_TABLES = ("raters", "pairs", "issued_pairs", "votes")


def _m1_initial(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[Base.metadata.tables[t] for t in _V1_TABLES])


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: raters, pairs, issued_pairs, votes", _m1_initial),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def current_version(engine: Engine) -> int:
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        v = conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc()).limit(1)).scalar()
    return int(v or 0)


def migrate(engine: Engine) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; returns the version. Idempotent and safe to run
    from several processes at once (each step is one transaction; a racing duplicate fails on the
    schema_version primary key and is then seen as applied)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    SchemaVersion.__table__.create(engine, checkfirst=True)
    have = current_version(engine)
    if have > SCHEMA_VERSION:
        raise SchemaError(f"{engine.url.render_as_string(hide_password=True)}: schema version {have} is newer than this code ({SCHEMA_VERSION}); upgrade beatedit")
    for m in MIGRATIONS:
        if m.version <= have:
            continue
        try:
            with engine.begin() as conn:
                if conn.execute(select(SchemaVersion.version).where(SchemaVersion.version == m.version)).first():
                    continue
                m.apply(conn)
                conn.execute(SchemaVersion.__table__.insert().values(version=m.version, description=m.description, applied_at=utcnow()))
        except (IntegrityError, OperationalError, ProgrammingError):
            if current_version(engine) < m.version:
                raise
    return current_version(engine)


# --- engine ------------------------------------------------------------------------------------------
def _ensure_sqlite_dir(url) -> None:
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)


def make_engine(db_url: str = DEFAULT_DB_URL, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> Engine:
    """An Engine for ``db_url`` with the SQLite settings applied (no schema changes; see ``open_db``)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise ValueError("the feedback store needs a SQLite *file* (sqlite:///path/votes.db), not an in-memory database")
        _ensure_sqlite_dir(url)
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=60, connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _rec):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin hook below emit BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the write lock up front: no lock upgrade mid-transaction, so no
            # SQLITE_BUSY that the busy timeout cannot wait out. Readers stay deferred.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=60)
    return engine


class FeedbackDB:
    """Engine + session factories for the feedback store; ``open_db`` migrates on open."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._read = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_engine = engine.execution_options(write=True)
        self._write = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Queueing this process's writers on a lock is much
        # faster than letting them poll SQLite's busy handler (which sleeps up to 100 ms per try);
        # other processes are still handled by the busy timeout.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as s:
            yield s

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed on success, rolled back on any exception."""
        if self._write_lock is None:
            with self._write() as s, s.begin():
                yield s
            return
        with self._write_lock, self._write() as s, s.begin():
            yield s

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """A Core connection in one write transaction (the hot path: no ORM session)."""
        if self._write_lock is None:
            with self._write_engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def open_db(db_url: str = DEFAULT_DB_URL, **kw) -> FeedbackDB:
    engine = make_engine(db_url, **kw)
    migrate(engine)
    return FeedbackDB(engine)
