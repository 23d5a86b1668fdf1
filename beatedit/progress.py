"""Progress of one long job (``beatedit edit`` on a long file), phase by phase, through ``logging``.

Domain code marks where each phase starts with ``phase("stems")``; that logs one record on the
``beatedit.progress`` logger when the phase starts (INFO, ``record.phase`` = the name); the
logger does not propagate, so the pipeline's stages, which install no handler on it, stay silent. The CLI installs
``ProgressHandler`` around a command: one line per phase on a pipe or a log file
(``[  12.3 s] stems``), a tqdm bar over the expected phases on a terminal.

Standard library (and tqdm, only on a terminal); no framework.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import IO, Iterator, Sequence

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
