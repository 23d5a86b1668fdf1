"""What length the user asked for: seconds (``30``, ``90s``, ``1:05``, ``1m05s``) or a ratio of the song.

Editors fitting music to picture think in seconds ("this song, 30 seconds"); the env and the
policy work with ``target_seconds / source duration``. Both are exact conversions of each other
for one song; this module is the one place that parses and checks them.
"""

from __future__ import annotations

import math
import re

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$|^(\d+):(\d+(?:\.\d+)?)$")
_UNITS = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``30``, ``30.5``, ``90s``, ``2m``, ``1m05s``, ``1:05``, ``0:01:05``; a clear ``ValueError`` else."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        value = math.nan
        if re.fullmatch(r"\d+(?:\.\d+)?", s):
            value = float(s)
        elif (m := _CLOCK.match(s)) is not None:
            if m.group(4) is not None:  # m:ss
                minutes, secs = float(m.group(4)), float(m.group(5))
                if secs >= 60:
                    raise ValueError(f"duration {text!r}: seconds must be below 60 in m:ss")
                value = 60 * minutes + secs
            else:  # h:mm:ss or mm:ss with hours
                hours = float(m.group(1) or 0)
                minutes, secs = float(m.group(2)), float(m.group(3))
                if secs >= 60 or minutes >= 60:
                    raise ValueError(f"duration {text!r}: minutes and seconds must be below 60 (m:ss or h:mm:ss)")
                value = 3600 * hours + 60 * minutes + secs
        elif s and (m := _UNITS.match(s)) is not None and any(m.groups()):
            h, mi, se = (float(g) if g else 0.0 for g in m.groups())
            value = 3600 * h + 60 * mi + se
        if math.isnan(value):
            raise ValueError(f"duration {text!r} is not a length: use seconds (30, 90s), minutes (2m, 1m05s) or m:ss (1:05)")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"duration {text!r} must be a positive, finite number of seconds")
    return value


def target_ratio_for(target_seconds: float, source_seconds: float) -> float:
    """The ratio the env and policy work with; an error naming both lengths when it cannot shorten the song."""
    if not (math.isfinite(source_seconds) and source_seconds > 0):
        raise ValueError(f"source duration must be positive, got {source_seconds!r}")
    ratio = float(target_seconds) / float(source_seconds)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"target {format_seconds(target_seconds)} is not shorter than the song "
                         f"({format_seconds(source_seconds)}): beatedit shortens songs")
    return ratio


def format_seconds(seconds: float) -> str:
    """``1:05.3`` style, for messages and the CLI's report."""
    m, s = divmod(max(0.0, float(seconds)), 60.0)
    return f"{int(m)}:{s:04.1f}"
