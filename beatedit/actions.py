"""The action vocabulary: 10 per-beat edit actions with exact musical semantics.

The editor stands at source beat ``i`` (the *cursor*) and picks one action. Every
action consumes at least one source beat, so an episode is one left-to-right pass
over the song. "Bar" and "phrase" refer to the song's tracked downbeats and phrase
starts (``SongAnalysis.bar_starts`` / ``phrase_starts``).

| id | name               | output                                             | cursor moves to        | allowed when (mask)                                   |
|----|--------------------|----------------------------------------------------|------------------------|-------------------------------------------------------|
| 0  | KEEP               | beat i                                             | i + 1                  | always                                                |
| 1  | CUT                | nothing                                            | i + 1                  | always                                                |
| 2  | CUT_TO_NEXT_BAR    | nothing (drops i .. next bar start - 1)            | next bar start         | a bar starts after i                                  |
| 3  | CUT_TO_NEXT_PHRASE | nothing (drops i .. next phrase start - 1)         | next phrase start      | a phrase starts after i                               |
| 4  | LOOP_BEAT          | beat i twice                                       | i + 1                  | always                                                |
| 5  | LOOP_BAR           | the bar starting at i, twice                       | next bar start         | i is a bar start and the bar is complete              |
| 6  | REPEAT_PHRASE      | the phrase starting at i, twice                    | next phrase start      | i is a phrase start and the phrase is complete        |
| 7  | FADE_IN            | beat i with gain ramp 0 -> 1                       | i + 1                  | nothing has been output yet, or the last action cut   |
| 8  | FADE_OUT           | beats i .. end of current bar, gain ramp 1 -> 0    | episode ends           | something has been output already                     |
| 9  | END                | nothing; the edit stops here                       | episode ends           | something has been output and i is a bar start        |

Beats the cursor passes over without output take the id of the action that
skipped them in ``beat_actions`` (the per-source-beat action sequence fed to the
reward model); beats after the episode's end take ``END``.
"""

from __future__ import annotations

from enum import IntEnum


class Action(IntEnum):
    KEEP = 0
    CUT = 1
    CUT_TO_NEXT_BAR = 2
    CUT_TO_NEXT_PHRASE = 3
    LOOP_BEAT = 4
    LOOP_BAR = 5
    REPEAT_PHRASE = 6
    FADE_IN = 7
    FADE_OUT = 8
    END = 9


N_ACTIONS: int = len(Action)
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)
#: Stored in checkpoints; a checkpoint trained on another vocabulary is refused.
ACTION_VOCAB_VERSION: str = "actions-v1:" + ",".join(ACTION_NAMES)

assert N_ACTIONS == 10
