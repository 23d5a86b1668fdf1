"""Atomic file writes: a reader sees the old file or the whole new one, never a truncated one.

Every output a later stage, ``beatedit run`` or ``promote`` reads goes through here: the
content is written to a hidden temporary in the target's folder, flushed to disk
(``fsync``), given the mode a plain ``open()`` would give (``0o666 & ~umask``; ``mkstemp``
alone makes 0600), then renamed over the target (atomic on POSIX) and the folder synced.
A process killed at any point leaves the previous file intact and at worst a hidden
``.<name>.*.tmp<suffix>`` beside it.

* ``atomic_write_text`` / ``atomic_write_bytes``: the content in memory.
* ``atomic_path``: a context manager yielding a temporary path for writers that want a
  file name (``DataFrame.to_parquet``, ``np.savez``, ``soundfile.write``); the temporary
  keeps the target's suffix so format-by-extension writers behave.
* ``new_temp`` + ``replace_together``: several files that are one unit (a WAV and its EDL):
  renamed in order, and rolled back to the previous files if a later rename fails.

Framework-free (standard library only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


def default_mode() -> int:
    """The mode ``open(path, "w")`` would create a file with: ``0o666 & ~umask``."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def new_temp(path: str | Path) -> Path:
    """An empty hidden temporary beside ``path`` (same folder, same suffix), mode ``default_mode()``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    try:
        os.fchmod(fd, default_mode())
    finally:
        os.close(fd)
    return Path(tmp)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; a file system that cannot sync a folder is not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on a clean exit it replaces ``path``, on an error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_temp(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    finally:
        _unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def replace_together(moves: Sequence[tuple[str | Path, str | Path]]) -> None:
    """Rename each ``(temporary, target)`` in order, as one unit.

    The temporaries are synced first. If a rename fails, the targets already replaced get
    their previous file back (kept as a hard link until the end) or are removed when there
    was none, so a failure leaves the old set of files, never a mix of old and new. The
    temporaries are removed either way.
    """
    moves = [(Path(t), Path(p)) for t, p in moves]
    backups: list[tuple[Path, Path | None]] = []  # (target, backup of its previous file or None)
    try:
        for tmp, _ in moves:
            _fsync_file(tmp)
        for tmp, target in moves:
            backup = None
            if target.is_file():
                backup = new_temp(target)
                os.unlink(backup)
                try:
                    os.link(target, backup)
                except OSError:  # a file system without hard links: a copy does
                    shutil.copy2(target, backup)
            try:
                os.replace(tmp, target)
            except BaseException:
                _unlink(backup)
                raise
            backups.append((target, backup))
    except BaseException:
        for target, backup in reversed(backups):
            if backup is not None:
                os.replace(backup, target)
            else:
                _unlink(target)
        raise
    finally:
        for tmp, _ in moves:
            _unlink(tmp)
        for _, backup in backups:
            _unlink(backup)
        for folder in {p.parent for _, p in moves}:
            _fsync_dir(folder)
