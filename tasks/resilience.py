"""Task robustness shared by the stage tasks: retry policy for I/O, cache keys, per-song timeouts.

* ``IO_RETRY``: keyword arguments for ``@task`` on tasks that talk to MLflow, a database or
  the file system: 3 retries with exponential backoff (2 s, 4 s, 8 s, +-50 % jitter), but only
  when the failure looks transient (connection / timeout / OS errors, a locked SQLite
  database, MLflow "temporarily unavailable"); a bug or bad input fails at once.
* ``song_pairs_cache_key``: a Prefect cache key for the preferences stage's per-song task,
  from the content of everything that decides its output (feature file, audio, config,
  code), so a re-run of the stage -- e.g. after new human votes arrived -- re-uses every
  song's simulated pairs and only merges again. The code part is the preferences stage's
  import closure (what dvc.yaml lists) without comments or docstrings, so a comment-only
  edit, which DVC re-runs the stage for, re-uses the cached pairs instead of relabelling.
* ``song_deadline(cfg)``: ``orchestration.song_timeout_s`` around one song's work inside the per-song
  tasks (a ``SongTimeout`` quarantines the song, reason "timeout");
  ``settle(futures, items, stage)`` collects mapped results, turning a failed or timed-out
  song into a quarantine record instead of failing the flow.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from prefect.tasks import exponential_backoff

from beatedit.audio.io import file_sha256
from beatedit.config import Config, config_to_dict
from beatedit.devtools.import_graph import stage_code_fingerprint
from beatedit.quarantine import QuarantineEntry

REPO = Path(__file__).resolve().parents[1]


def _transient_exception(exc: BaseException | None) -> bool:
    """True for failures worth retrying: the network, a busy database, a flaky file system."""
    if exc is None:
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    if isinstance(exc, sqlite3.OperationalError) or "database is locked" in text:
        return True
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover - requests ships with mlflow
        pass
    try:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            code = getattr(exc, "error_code", "")
            return code in ("TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED") or "max retries exceeded" in text \
                or "database is locked" in text or "connection" in text
    except ImportError:  # pragma: no cover
        pass
    try:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return _transient_exception(exc.__cause__) if exc.__cause__ is not None and exc.__cause__ is not exc else False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only transient I/O failures."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as inner:  # noqa: BLE001 - the result itself could not be read
            exc = inner
    return _transient_exception(exc if isinstance(exc, BaseException) else None)


#: ``@task(name=..., **IO_RETRY)`` for tasks doing MLflow / database / file I/O
IO_RETRY: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2.0),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


# ----------------------------------------------------------------------------- caching
def code_hash(stage: str) -> str:
    """Fingerprint of the code ``python -m flows.<stage>`` imports, comments and docstrings left out."""
    return stage_code_fingerprint(stage, REPO)


def config_hash(cfg: Config, exclude: Iterable[str] = ("orchestration", "mlflow", "ops")) -> str:
    """sha256 of the config without the sections that cannot change a task's result."""
    d = {k: v for k, v in config_to_dict(cfg).items() if k not in set(exclude)}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def song_pairs_cache_key(context: Any, parameters: dict[str, Any]) -> str | None:
    """Cache key of one song's labelled pairs: feature file + audio content, config, domain code.

    Returns None (no caching) when a file cannot be read -- the task then runs and quarantines."""
    try:
        from beatedit.audio.song import SongAnalysis

        path = Path(parameters["path"])
        song = SongAnalysis.load(path)
        parts = [file_sha256(path), file_sha256(song.source_path), config_hash(parameters["cfg"]),
                 code_hash("preferences")]
    except Exception:  # noqa: BLE001 - any unreadable input: no cache, let the task report it
        return None
    return "song-pairs-" + hashlib.sha256("|".join(parts).encode()).hexdigest()


#: ``@task(..., **SONG_PAIRS_CACHE)``: cached results live 30 days in Prefect's result storage
SONG_PAIRS_CACHE: dict[str, Any] = {
    "cache_key_fn": song_pairs_cache_key,
    "cache_expiration": datetime.timedelta(days=30),
}


# ----------------------------------------------------------------------------- per-song timeouts
class SongTimeout(TimeoutError):
    """One song's work ran past ``orchestration.song_timeout_s``; its song is quarantined (reason "timeout")."""

    reason = "timeout"


@contextmanager
def song_deadline(cfg: Config) -> Iterator[None]:
    """``orchestration.song_timeout_s`` around one song's work: raises ``SongTimeout`` when it runs over.

    The per-song tasks run in worker threads (thread pool or Dask), where no timeout can interrupt a
    blocking call: the exception is raised into the thread and takes effect when the current call
    returns. The per-song work is Python + numpy in short calls, so it fires. This is the mechanism
    Prefect's ``timeout_seconds`` uses (``prefect.utilities.timeout``), applied here rather than as a task
    option, because Prefect warns about exactly this on every timed task run in a thread -- once per
    per-song stage, with nothing a user could do about it."""
    from prefect.utilities.timeout import timeout

    with timeout(seconds=cfg.orchestration.song_timeout_s, timeout_exc_type=SongTimeout):
        yield


def settle(futures: Iterable[Any], items: Iterable[Any], stage: str) -> list[dict]:
    """Results of mapped per-song tasks; a task that failed or timed out becomes a quarantine record."""
    out: list[dict] = []
    for fut, item in zip(futures, items):
        try:
            out.append(fut.result())
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt / SystemExit are re-raised below
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            reason = "timeout" if isinstance(exc, TimeoutError) else "error"
            path = Path(str(item))
            detail = f"{type(exc).__name__}: {exc}"
            logging.getLogger("beatedit").warning("quarantined %s (%s): %s", path, reason, detail)
            out.append({"song_id": path.stem, "path": str(path), "quarantine": QuarantineEntry(str(path), reason, detail, stage)})
    return out
