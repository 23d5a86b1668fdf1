"""The pair table: the one schema of a preference pair, for simulated and human rows alike.

One row compares two edits (A, B) of the same song made for the same target. The simulated
listener's rows (``beatedit.preferences.pairs``) and the human export (``beatedit.feedback.export``)
both build their frames from ``COLUMN_NAMES``, and ``merge_pairs`` concatenates them into
``data/preferences/pairs.parquet``, so the two producers cannot drift apart. Column order is the
order of ``COLUMNS``.

A human vote cannot say everything the listener can: ``HUMAN_UNKNOWN`` is what a human row holds
in those columns (null scores, not OOD, achieved ratios unknown) -- neutral values the reward
stage already handles (gold-free rows are left out of the noise ceiling; ``ood`` False means the
pair trains like any in-distribution one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairColumn:
    name: str
    dtype: str  # str | json (a str holding JSON) | int-list | float64 | bool | timestamp (UTC)
    description: str


COLUMNS: tuple[PairColumn, ...] = (
    PairColumn("song_id", "str", "the song both edits are of"),
    PairColumn("split", "str", "train | validation | test, from the song id alone (``pairs.split_of``); "
               "null in a human export whose manifest gave none (the preferences stage assigns it)"),
    PairColumn("edl_a", "json", "edit A's EDL as JSON (what the renderer plays)"),
    PairColumn("edl_b", "json", "edit B's EDL as JSON"),
    PairColumn("actions_a", "int-list", "edit A's action id per source beat (``EditResult.beat_actions``)"),
    PairColumn("actions_b", "int-list", "edit B's action id per source beat"),
    PairColumn("target_ratio", "float64", "the target (output / source duration) both edits were made for"),
    PairColumn("choice", "float64", "0 = A preferred, 1 = B, 0.5 tie"),
    PairColumn("strength", "float64", "confidence in [0, 1]: |p_a - 0.5| * 2 for the listener; "
               "k/3 for a human strength k (2/3 when none given, 0 for a tie)"),
    PairColumn("p_a", "float64", "the listener's probability of preferring A (null in the human export)"),
    PairColumn("gold_a", "float64", "the listener's total for A (null for human rows)"),
    PairColumn("gold_b", "float64", "the listener's total for B (null for human rows)"),
    PairColumn("kind_a", "str", "how A was made: candidate kind, or the feedback manifest's kind"),
    PairColumn("kind_b", "str", "how B was made"),
    PairColumn("rater", "str", "``listener(noise=...)`` or the human rater id"),
    PairColumn("source", "str", "simulated | human"),
    PairColumn("timestamp", "timestamp", "vote time (UTC); NaT for simulated rows, so a re-run is byte-identical"),
    PairColumn("ood", "bool", "at least one edit is of a held-out kind: used for evaluation only"),
    PairColumn("ratio_a", "float64", "A's achieved output / source duration (null for human rows)"),
    PairColumn("ratio_b", "float64", "B's achieved output / source duration (null for human rows)"),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
#: A human vote file must hold these; everything else has a default (``pairs.load_human_votes``).
HUMAN_REQUIRED: tuple[str, ...] = ("song_id", "actions_a", "actions_b", "target_ratio", "choice")
#: What a human row holds in the columns no vote can provide.
HUMAN_UNKNOWN: dict[str, object] = {"p_a": float("nan"), "gold_a": float("nan"), "gold_b": float("nan"), "ood": False,
                                    "ratio_a": float("nan"), "ratio_b": float("nan")}


def columns_of(dtype: str) -> tuple[str, ...]:
    """Names of the columns of one dtype, in table order."""
    return tuple(c.name for c in COLUMNS if c.dtype == dtype)


if len(set(COLUMN_NAMES)) != len(COLUMNS) or not set(HUMAN_REQUIRED) | set(HUMAN_UNKNOWN) <= set(COLUMN_NAMES):
    raise AssertionError("pair-table schema: duplicate column, or a human column that is not in the table")
