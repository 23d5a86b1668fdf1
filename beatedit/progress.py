"""The one progress bar every long job uses (tqdm): live on a terminal, a few plain lines in a log.

On a terminal the bar redraws in place as usual. When stderr is not a terminal (``make pipeline``,
``dvc repro`` under the pipeline flow, CI, a Prefect worker), every redraw would become a new line of
the log, so the bar prints one plain line at most every ``BEATEDIT_PROGRESS_SECONDS`` seconds
(default 60), plus its first and last state; postfix updates (loss, accuracy) ride along on those
lines instead of forcing redraws. ``BEATEDIT_PROGRESS_SECONDS=0`` prints every update.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

from tqdm import tqdm

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
