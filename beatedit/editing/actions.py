"""The action vocabulary: 10 per-beat edit actions with exact musical semantics.

The editor stands at source beat ``i`` (the *cursor*) and picks one action. Every
action consumes at least one source beat, so an episode is one left-to-right pass
over the song. "Bar" and "phrase" refer to the song's tracked downbeats and phrase
starts (``SongAnalysis.bar_starts`` / ``phrase_starts``).

| id | name               | output                                             | cursor moves to        | allowed when (mask)                                   |
|----|--------------------|----------------------------------------------------|------------------------|-------------------------------------------------------|
| 0  | KEEP               | beat i                                             | i + 1                  | always                                                |
| 1  | CUT                | nothing                                            | i + 1                  | always, except on the last beat with no output yet    |
| 2  | CUT_TO_NEXT_BAR    | nothing (drops i .. next bar start - 1)            | next bar start         | a bar starts after i                                  |
| 3  | CUT_TO_NEXT_PHRASE | nothing (drops i .. next phrase start - 1)         | next phrase start      | a phrase starts after i                               |
| 4  | LOOP_BEAT          | beat i twice                                       | i + 1                  | loop budget left                                      |
| 5  | LOOP_BAR           | the bar starting at i, twice                       | next bar start         | i is a bar start, the bar is complete, budget left    |
| 6  | REPEAT_PHRASE      | the phrase starting at i, twice                    | next phrase start      | i is a phrase start, phrase complete, budget left     |
| 7  | FADE_IN            | beat i with gain ramp 0 -> 1                       | i + 1                  | nothing has been output yet, or the last action cut   |
| 8  | FADE_OUT           | beats i .. i+meter-1 (one bar), gain ramp 1 -> 0   | episode ends           | something has been output already                     |
| 9  | END                | nothing; the edit stops here                       | episode ends           | something has been output and i is a bar start        |

Precise rules (``beatedit.editing.program`` implements them; the vectorised env mirrors them):

* The episode also ends when the cursor passes the song's last beat. Once it has
  ended every action is masked.
* "Complete" bar / phrase: another bar / phrase starts after ``i``; the bar is
  ``[i, next bar start)`` (so the song's last bar and last phrase cannot be looped).
  A song without phrase starts masks CUT_TO_NEXT_PHRASE and REPEAT_PHRASE.
* FADE_OUT lasts one bar's worth of beats (``meter``) from wherever it starts, or up to
  the song's end: a radio fade can end on any beat, so it can land within one beat of a
  target. The fade is linear in source samples over all of those beats (1 at the start
  of beat ``i``, 0 at the end of the last one).
* Length guard (``EnvConfig.length_guard``, on by default for the env, the editors and the
  policy; ``beatedit.editing.program.LengthGuard``): with a target, END / FADE_OUT / the last
  beat are legal only within ``length_tolerance_beats`` of it, emitting actions only while the
  output stays below target + tolerance, skips only while the target stays reachable. The
  mask never empties: where the guard would mask everything, the plain rules apply.
* "The last action cut": the previous action was CUT, CUT_TO_NEXT_BAR or
  CUT_TO_NEXT_PHRASE. "Output": at least one beat has been emitted.
* Loop budget: LOOP_BEAT, LOOP_BAR and REPEAT_PHRASE each use one of
  ``EnvConfig.max_loops_per_episode``; when it is spent all three are masked.
* CUT on the last beat with nothing output would leave an empty edit, so it is
  masked there (KEEP, LOOP_BEAT and FADE_IN remain). KEEP is legal at every beat of
  a running episode; the env plays it in place of a masked action from a
  mask-unaware agent (``EnvConfig.illegal_action``).
* Applying a masked action through ``beatedit.editing.program`` is a ``ValueError``.

Beats the cursor passes over without output take the id of the action that
skipped them in ``beat_actions`` (the per-source-beat action sequence fed to the
reward model), emitted beats the id of the action that emitted them (e.g. all
beats of a looped bar take LOOP_BAR); beats after the episode's end take ``END``.
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

_COPIES = {Action.KEEP: 1, Action.CUT: 0, Action.CUT_TO_NEXT_BAR: 0, Action.CUT_TO_NEXT_PHRASE: 0, Action.LOOP_BEAT: 2,
           Action.LOOP_BAR: 2, Action.REPEAT_PHRASE: 2, Action.FADE_IN: 1, Action.FADE_OUT: 1, Action.END: 0}
#: Indexed by action id: how many times each source beat an action consumes is heard in the output
#: (the "output" column of the table above: cuts/END 0, loops/repeats 2, others 1). Ints, so each
#: user picks its own dtype (the edit program's sample counts, the env's int64, the reward model's floats).
COPIES_PER_ACTION: tuple[int, ...] = tuple(_COPIES[a] for a in Action)

assert N_ACTIONS == 10
