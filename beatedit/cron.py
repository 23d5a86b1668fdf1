"""Validation of the standard 5-field cron expressions used for the Prefect schedules (framework-free).

``minute hour day-of-month month day-of-week``; each field is ``*`` or a comma list of
``N``, ``A-B``, ``*/S``, ``A-B/S`` or ``N/S``; months may be ``jan``..``dec`` and weekdays
``sun``..``sat`` (0 and 7 are Sunday). The macros ``@yearly @annually @monthly @weekly
@daily @midnight @hourly`` are accepted too. Anything else (6-field expressions,
croniter's ``L``/``#``/``H``/``R`` extensions) is refused with a message that says
which field is wrong and why.
"""

from __future__ import annotations

import re

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
FIELDS = (  # name, low, high, names
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM = re.compile(r"^(?P<range>\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(token: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        v = int(token)
    elif token in names:
        v = names.index(token) + (1 if name == "month" else 0)
    else:
        raise ValueError(f"{name} field: {token!r} is not a number{' or a name' if names else ''}")
    if not low <= v <= high:
        raise ValueError(f"{name} field: {v} is out of range {low}-{high}")
    return v


def cron_problem(expr: object) -> str | None:
    """None when ``expr`` is a valid 5-field cron expression or macro, else what is wrong with it."""
    if not isinstance(expr, str) or not expr.strip():
        return f"{expr!r} is not a cron expression (expected 'minute hour day-of-month month day-of-week', e.g. '0 2 * * *')"
    text = expr.strip().lower()
    if text.startswith("@"):
        return None if text in MACROS else f"{expr!r}: unknown macro (known: {', '.join(MACROS)})"
    parts = text.split()
    if len(parts) != 5:
        return f"{expr!r} has {len(parts)} field(s); a cron expression has 5: minute hour day-of-month month day-of-week"
    for part, (name, low, high, names) in zip(parts, FIELDS):
        for item in part.split(","):
            m = _ITEM.match(item)
            if not m:
                return f"{expr!r}: {name} field: {item!r} is not '*', N, A-B, */S or A-B/S"
            try:
                if m["range"] != "*":
                    bounds = [_value(t, name, low, high, names) for t in m["range"].split("-")]
                    if len(bounds) == 2 and bounds[0] > bounds[1]:
                        raise ValueError(f"{name} field: range {m['range']!r} runs backwards")
                if m["step"] is not None and int(m["step"]) < 1:
                    raise ValueError(f"{name} field: step must be >= 1 in {item!r}")
            except ValueError as exc:
                return f"{expr!r}: {exc}"
    return None
