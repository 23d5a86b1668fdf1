"""Stage failures every flow module may raise; its own module so flows.common and flows.dask_runner share it without a cycle."""

from __future__ import annotations


class StageFailed(RuntimeError):
    """A stage ended in a known, explained failure (gate missed, nothing to process, ...)."""

    exit_code = 2


class TooManyQuarantined(StageFailed):
    exit_code = 3
