"""Exact length by time-stretching: the last few percent that cutting on beats cannot reach.

Cutting whole beats lands within one beat of the target; a video editor needs the cue to
the sample. Like Adobe Remix, the remainder is closed by time-stretching the whole edit
by a small factor (spread evenly over the edit, so no single passage is audibly faster),
with Rubber Band through ``pedalboard`` (a well-kept library; pitch is preserved). The
factor is bounded: beyond ``max_change`` the edit itself is wrong and stretching would
be heard, so it is an error rather than a silent warp.
"""

from __future__ import annotations

import math

import numpy as np

#: default bound on |speed change|: 4% is below what listeners notice on most music
DEFAULT_MAX_CHANGE = 0.04


class StretchError(ValueError):
    """The edit is too far from the target to reach it by a small time-stretch."""


def stretch_factor(n_samples: int, n_target: int) -> float:
    """Speed factor that turns ``n_samples`` into ``n_target`` (> 1 speeds up, i.e. shortens)."""
    if n_samples <= 0 or n_target <= 0:
        raise StretchError(f"cannot stretch {n_samples} samples to {n_target}")
    return n_samples / n_target


def check_factor(factor: float, max_change: float = DEFAULT_MAX_CHANGE) -> float:
    """``factor`` if it changes the speed by at most ``max_change`` (a fraction), else ``StretchError``."""
    if not (math.isfinite(factor) and factor > 0):
        raise StretchError(f"stretch factor must be a positive number, got {factor!r}")
    if abs(factor - 1.0) > max_change + 1e-12:
        raise StretchError(f"reaching the exact length needs a {100 * (factor - 1):+.1f}% speed change, more than the "
                           f"allowed {100 * max_change:.1f}% (the edit is too far from the target)")
    return factor


def stretch_to_length(audio: np.ndarray, sr: int, n_target: int, max_change: float = DEFAULT_MAX_CHANGE
                      ) -> tuple[np.ndarray, float]:
    """Time-stretch ``audio`` [channels, n] to exactly ``n_target`` samples; returns (audio, factor).

    Rubber Band's output length is within a few samples of ``n / factor``; the last samples
    are trimmed or padded with a copy of the edge (never with silence mid-signal), then a
    2 ms fade-out protects the very end from a click when trimming.
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"stretch_to_length expects [channels, samples], got shape {a.shape}")
    factor = check_factor(stretch_factor(a.shape[1], int(n_target)), max_change)
    if a.shape[1] == n_target:
        return a.copy(), 1.0
    import pedalboard  # imported here: only --exact needs it

    y = pedalboard.time_stretch(np.ascontiguousarray(a), float(sr), stretch_factor=float(factor), high_quality=True)
    y = np.asarray(y, dtype=np.float32)
    if y.shape[1] >= n_target:
        y = y[:, :n_target].copy()
    else:
        pad = np.repeat(y[:, -1:], n_target - y.shape[1], axis=1)
        y = np.concatenate([y, pad], axis=1)
    k = min(n_target, max(1, int(round(0.002 * sr))))
    y[:, -k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)[None, :]
    return y, float(factor)
