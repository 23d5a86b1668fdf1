"""The one progress bar: live on a terminal, a few whole lines in a log."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from beatedit.progress import PROGRESS_SECONDS_ENV, LogBar, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_thousand_updates_are_two_lines(monkeypatch):
    monkeypatch.delenv(PROGRESS_SECONDS_ENV, raising=False)  # default: a line a minute
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="ppo", file=log)
    for i in range(1000):
        bar.update(1)
        bar.set_postfix(loss=f"{i / 1000:.3f}")  # tqdm would redraw on every postfix
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2, lines
    assert lines[0].startswith("ppo:   0%") and lines[-1].startswith("ppo: 100%") and "loss=0.999" in lines[-1]


def test_every_update_with_zero_seconds_and_leave_false_still_ends_with_the_last_state(monkeypatch):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "0")
    log = io.StringIO()
    bar = progress_bar(total=3, desc="reward model", file=log, leave=False)
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) >= 4 and lines[-1].startswith("reward model: 100%") and log.getvalue().endswith("\n")


def test_on_a_terminal_it_is_plain_tqdm_and_disabled_writes_nothing():
    bar = progress_bar(range(3), desc="bc", file=Terminal())
    assert type(bar) is tqdm
    bar.close()
    quiet = io.StringIO()
    for _ in progress_bar(range(3), desc="bc", file=quiet, disable=True):
        pass
    assert quiet.getvalue() == "" and isinstance(progress_bar(range(1), desc="x", file=io.StringIO()), LogBar)


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_bad_interval_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, value)
    with pytest.raises(ValueError, match=PROGRESS_SECONDS_ENV):
        progress_bar(range(1), desc="x", file=io.StringIO())
