"""Progress of long work, in one place: tqdm bars for loops, and named phases for one long job.

**Bars** (``progress_bar``): on a terminal the bar redraws in place as usual. When stderr is not a
terminal (``make pipeline``, ``dvc repro`` under the pipeline flow, CI, a Prefect worker), every redraw
would become a new line of the log, so the bar prints one plain line at most every
``BEATEDIT_PROGRESS_SECONDS`` seconds (default 60), plus its first and last state; postfix updates
(loss, accuracy) ride along on those lines instead of forcing redraws. ``BEATEDIT_PROGRESS_SECONDS=0``
prints every update.

**Phases** (``phase`` / ``showing_progress``, for ``beatedit edit`` on a long file): domain code marks
where each phase starts with ``phase("stems")``; that logs one record on the ``beatedit.progress``
logger (INFO, ``record.phase`` = the name); the logger does not propagate, so the pipeline's stages,
which install no handler on it, stay silent. The CLI installs ``ProgressHandler`` around a command:
one line per phase on a pipe or a log file (``[  12.3 s] stems``), a tqdm bar over the expected
phases on a terminal.

Standard library and tqdm; no framework.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import IO, Any, Iterable, Iterator, Sequence

from tqdm import tqdm

# --- bars -----------------------------------------------------------------------------------------------------------

PROGRESS_SECONDS_ENV = "BEATEDIT_PROGRESS_SECONDS"
DEFAULT_LOG_SECONDS = 60.0


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def log_interval() -> float:
    raw = os.environ.get(PROGRESS_SECONDS_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_LOG_SECONDS
    except ValueError:
        raise ValueError(f"{PROGRESS_SECONDS_ENV}={raw!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise ValueError(f"{PROGRESS_SECONDS_ENV}={raw!r} must be >= 0 seconds")
    return seconds


class LogBar(tqdm):
    """tqdm for a log: whole lines (no carriage returns), at most one per ``mininterval`` seconds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._closing = False
        super().__init__(*args, **kwargs)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        text = self.__str__() if msg is None else msg
        if text.strip():
            self.fp.write(text.strip() + ("" if self._closing else "\n"))
            self.fp.flush()
        return True

    def close(self) -> None:
        self._closing = True  # tqdm ends the last line itself
        super().close()


def progress_bar(iterable: Iterable | None = None, *, desc: str, total: float | None = None, disable: bool = False,
             file: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar (same arguments) that is quiet in logs; see the module docstring."""
    stream = sys.stderr if file is None else file
    if is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, disable=disable, file=stream, **kwargs)
    seconds = log_interval()
    kwargs.update(leave=True, mininterval=seconds, maxinterval=max(seconds, 10.0), miniters=1, ascii=True, ncols=100,
                  dynamic_ncols=False)
    return LogBar(iterable, desc=desc, total=total, disable=disable, file=stream, **kwargs)


# --- phases ---------------------------------------------------------------------------------------------------------

LOGGER = logging.getLogger("beatedit.progress")
LOGGER.propagate = False  # never into the root logger: a stage's log (Prefect's, at INFO) does not get these lines

#: what each phase does, for the line printed when it starts
DESCRIPTIONS = {
    "load": "reading the audio",
    "stems": "separating stems for the analysis (cached)",
    "frames": "spectral analysis",
    "beats": "tracking beats, bars and sections",
    "features": "beat features",
    "edit": "choosing the cuts",
    "render": "rendering the edit",
    "stem-render": "separating and cutting the stems",
    "cues": "writing cues.json",
    "picture": "drawing the seams picture",
}


def phase(name: str) -> None:
    """Mark the start of a phase of the current job (one INFO record; shown only where a handler is installed)."""
    LOGGER.info("%s", name, extra={"phase": name})


class ProgressHandler(logging.Handler):
    """Shows ``beatedit.progress`` phases on ``stream``: a line each (not a TTY) or a tqdm bar (a TTY)."""

    def __init__(self, expected: Sequence[str], stream: IO[str] | None = None, tty: bool | None = None):
        super().__init__(logging.INFO)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.expected = list(expected)
        self.seen: list[str] = []
        self.t0 = time.perf_counter()
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.expected), file=self.stream, unit="phase", leave=False,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]")

    def emit(self, record: logging.LogRecord) -> None:
        name = getattr(record, "phase", None) or record.getMessage()
        what = DESCRIPTIONS.get(name, name)
        if self.bar is not None:
            if self.seen:
                self.bar.update(1)
            self.bar.set_description_str(what)
        else:
            self.stream.write(f"[{time.perf_counter() - self.t0:7.1f} s] {name}: {what}\n")
            self.stream.flush()
        self.seen.append(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()
            self.bar = None
        super().close()


@contextlib.contextmanager
def showing_progress(expected: Sequence[str], stream: IO[str] | None = None, tty: bool | None = None) -> Iterator[ProgressHandler]:
    """Install a ``ProgressHandler`` on the progress logger for the duration of the block."""
    handler = ProgressHandler(expected, stream, tty)
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
        handler.close()
