"""The edit program: the single source of truth for what an action does.

An edit is a left-to-right pass over a song's beats (see ``beatedit.editing.actions`` for the
table of the 10 actions). ``EditState`` is where the editor stands, ``action_mask``
says which actions are legal there, ``apply_action`` advances the state, and
``build_edit`` replays a whole decision sequence into an ``EditResult`` whose ``EDL``
is exactly what the renderer plays. The env (single and vectorised) and the
baseline editors all go through this module (the vectorised env re-implements the
transition with numpy for speed, and replays every finished episode through
``build_edit``, so a disagreement is an error, never a silent drift).

Sample positions: beat ``i`` spans source samples ``[B[i], B[i+1])`` with
``B = rint(song.beat_bounds * source_sr)`` clipped to the source length
(``beat_sample_bounds``). Every segment start/end, every splice and every output
duration the env reports is computed from these integers, so the env's idea of the
output length equals the rendered length to the sample.

Gains: an output beat carries ``(gain at its start, gain at its end)``; within it the
gain is linear in samples, ``g(m) = g0 + (g1 - g0) * m / length``. FADE_IN is 0 -> 1
over the beat; FADE_OUT ramps 1 -> 0 linearly in samples over all of its beats (so the
per-beat gains are collinear and merge into one segment exactly). Consecutive output
beats that are contiguous in the source, continuous in gain and on the same gain line
merge into one ``Segment``; every other boundary is a splice (crossfaded) when the
source jumps, or a plain contiguous boundary (no crossfade) when it does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from beatedit.editing.actions import ACTION_VOCAB_VERSION, COPIES_PER_ACTION, N_ACTIONS, Action
from beatedit.config import EnvConfig
from beatedit.editing.edl import EDL, Segment
from beatedit.audio.song import SongAnalysis

CUT_ACTIONS = (int(Action.CUT), int(Action.CUT_TO_NEXT_BAR), int(Action.CUT_TO_NEXT_PHRASE))
LOOP_ACTIONS = (int(Action.LOOP_BEAT), int(Action.LOOP_BAR), int(Action.REPEAT_PHRASE))
TERMINAL_ACTIONS = (int(Action.FADE_OUT), int(Action.END))


def check_target_ratio(target_ratio: float) -> float:
    """A target (output duration / source duration) must lie in (0, 1]."""
    t = float(target_ratio)
    if not (math.isfinite(t) and 0.0 < t <= 1.0):
        raise ValueError(f"target ratio {target_ratio!r} is outside (0, 1] (output duration / source duration; "
                         "an edit cannot be empty or longer than the song)")
    return t


def source_samples(song: SongAnalysis) -> int:
    """Length of the source in samples at its own rate."""
    return int(round(song.duration * song.source_sr))


def beat_sample_bounds(song: SongAnalysis) -> np.ndarray:
    """int64 [n_beats + 1]: beat ``i`` spans source samples ``[B[i], B[i+1])``."""
    total = source_samples(song)
    b = np.rint(np.asarray(song.beat_bounds, dtype=np.float64) * song.source_sr).astype(np.int64)
    np.clip(b, 0, total, out=b)
    if np.any(np.diff(b) <= 0):
        k = int(np.argmax(np.diff(b) <= 0))
        raise ValueError(f"song {song.song_id}: beat {k} is empty at {song.source_sr} Hz "
                         f"(samples {b[k]}..{b[k + 1]}, source length {total})")
    return b


# ----------------------------------------------------------------------------- grid lookups
@dataclass(frozen=True)
class SongGrid:
    """Per-song integer lookup tables over cursor positions ``0..n`` (index ``n`` = past the end).

    ``next_bar[c]`` / ``next_phrase[c]``: first bar / phrase start strictly after ``c``,
    or -1. ``fade_end[c]``: end (exclusive) of a FADE_OUT taken at ``c``: one
    bar's worth of beats (``meter``), or the song's end. ``loop_bar_ok[c]``: ``c`` starts a complete bar (a bar starts after
    it). ``repeat_phrase_ok[c]``: likewise for phrases.
    """

    n: int
    sr: int
    source_samples: int
    bounds: np.ndarray  # int64 [n+1]
    is_bar_start: np.ndarray  # bool [n+1]
    is_phrase_start: np.ndarray  # bool [n+1]
    next_bar: np.ndarray  # int64 [n+1]
    next_phrase: np.ndarray  # int64 [n+1]
    fade_end: np.ndarray  # int64 [n+1]: min(c + meter, n)
    beat_samples: float  # median beat length in samples (first and last beat, which hold the pre-roll and decay, excluded)
    loop_bar_ok: np.ndarray  # bool [n+1]
    repeat_phrase_ok: np.ndarray  # bool [n+1]
    beat_in_bar: np.ndarray  # int64 [n+1], -1 at n
    phrase_pos: np.ndarray  # float64 [n+1]: fraction of the current phrase elapsed (0 at n)
    # the same tables as Python lists, for the scalar (one state at a time) path
    py: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for k in ("bounds", "is_bar_start", "next_bar", "next_phrase", "fade_end", "loop_bar_ok",
                  "repeat_phrase_ok"):
            self.py[k] = getattr(self, k).tolist()

    @classmethod
    def of(cls, song: SongAnalysis) -> "SongGrid":
        n = song.n_beats
        pos = np.arange(n + 1)
        bars = np.asarray(song.bar_starts, dtype=np.int64)
        phrases = np.asarray(song.phrase_starts, dtype=np.int64)

        def starts_mask(idx: np.ndarray) -> np.ndarray:
            m = np.zeros(n + 1, dtype=bool)
            m[idx[(idx >= 0) & (idx < n)]] = True
            return m

        def next_after(idx: np.ndarray) -> np.ndarray:
            if len(idx) == 0:
                return np.full(n + 1, -1, dtype=np.int64)
            k = np.searchsorted(idx, pos, side="right")
            return np.where(k < len(idx), idx[np.minimum(k, len(idx) - 1)], -1).astype(np.int64)

        is_bar, is_phr = starts_mask(bars), starts_mask(phrases)
        nb, nph = next_after(bars), next_after(phrases)
        # phrase position: previous phrase start (or 0) .. next phrase start (or n)
        if len(phrases):
            k = np.searchsorted(phrases, pos, side="right") - 1
            ps = np.where(k >= 0, phrases[np.maximum(k, 0)], 0)
        else:
            ps = np.zeros(n + 1, dtype=np.int64)
        pe = np.where(nph >= 0, nph, n)
        ppos = np.where(pos < n, (pos - ps) / np.maximum(pe - ps, 1), 0.0)
        bib = np.full(n + 1, -1, dtype=np.int64)
        bib[:n] = np.asarray(song.beat_in_bar, dtype=np.int64)
        bounds = beat_sample_bounds(song)
        inner = np.diff(bounds[1:n]) if n > 2 else np.diff(bounds)
        fade_end = np.minimum(pos + max(1, int(song.meter)), n).astype(np.int64)
        return cls(n=n, sr=int(song.source_sr), source_samples=source_samples(song), bounds=bounds,
                   is_bar_start=is_bar, is_phrase_start=is_phr, next_bar=nb, next_phrase=nph,
                   fade_end=fade_end, beat_samples=float(np.median(inner)),
                   loop_bar_ok=is_bar & (nb >= 0), repeat_phrase_ok=is_phr & (nph >= 0), beat_in_bar=bib,
                   phrase_pos=ppos.astype(np.float64))


def song_grid(song: SongAnalysis) -> SongGrid:
    """``SongGrid.of(song)``, cached on the song object (keyed on the identity of its grid arrays).

    Replacing ``beat_times`` / ``bar_starts`` / ... invalidates the cache; mutating those
    arrays in place does not (songs are treated as immutable once analysed).
    """
    key = (id(song.beat_times), id(song.bar_starts), id(song.phrase_starts), id(song.beat_in_bar),
           float(song.duration), int(song.source_sr), song.n_beats)
    cached = song.__dict__.get("_beatedit_grid")
    if cached is not None and cached[0] == key:
        return cached[1]
    grid = SongGrid.of(song)
    song.__dict__["_beatedit_grid"] = (key, grid)
    return grid


# ----------------------------------------------------------------------------- length guard
@dataclass(frozen=True)
class LengthGuard:
    """Feasibility masking toward a target length (samples), so every editor lands within ``tol`` of it.

    People asked for an exact length; cutting whole beats can always get within one beat, so the
    program makes the rest impossible rather than leaving it to luck (or to a reward): an action is
    masked when, after it,
    - the episode ends (END, FADE_OUT, the song's end) more than ``tol`` away from the target;
    - no way to finish within ``tol`` is left (``reachable``): the output already exceeds ``target + tol``
      (emitting more can only overshoot further), or what the rest of the song can still add misses the
      target. The last beat holds the song's decay and may last several beats: it is kept whole or not at
      all, so the reachable amounts are ``[0, source left before it]`` and ``[its length, all that is left]``.
    When those rules would mask every action (a target no edit can meet), the plain mask applies:
    the mask never empties.
    """

    target: float  # samples
    tol: float  # samples


def length_guard(song: SongAnalysis, target_ratio: float | None, cfg: EnvConfig | None = None) -> LengthGuard | None:
    """The guard for editing ``song`` to ``target_ratio`` (None when off or without a target)."""
    cfg = cfg or EnvConfig()
    if target_ratio is None or not cfg.length_guard:
        return None
    g = song_grid(song)
    return LengthGuard(float(check_target_ratio(target_ratio)) * g.source_samples,
                       cfg.length_tolerance_beats * g.beat_samples)


# ----------------------------------------------------------------------------- state
@dataclass
class EditState:
    """Where the editor stands. ``output`` holds the emitted beats ``(source beat, gain0, gain1)``."""

    cursor: int = 0  # next source beat to decide on
    output: list[tuple[int, float, float]] = field(default_factory=list)
    output_samples: int = 0  # length of the output so far, in source samples
    last_action: int = -1  # -1 before the first action
    loops_used: int = 0  # LOOP_BEAT / LOOP_BAR / REPEAT_PHRASE taken so far
    done: bool = False
    decisions: list[int] = field(default_factory=list)  # every action taken, in order
    beat_actions: list[int] = field(default_factory=list)  # per source beat passed so far
    guard: LengthGuard | None = None  # feasibility masking toward a target length (None: off)

    @property
    def has_output(self) -> bool:
        return self.output_samples > 0

    def copy(self) -> "EditState":
        return EditState(self.cursor, list(self.output), self.output_samples, self.last_action, self.loops_used,
                         self.done, list(self.decisions), list(self.beat_actions), self.guard)


def _dest(g: SongGrid, c: int, a: int) -> int:
    """Cursor after action ``a`` at ``c`` (for a legal action)."""
    py = g.py
    if a in (0, 1, 4, 7):
        return c + 1
    if a in (2, 5):
        return py["next_bar"][c]
    if a in (3, 6):
        return py["next_phrase"][c]
    if a == 8:
        return py["fade_end"][c]
    return c


def _guard_allows(g: SongGrid, s: EditState, a: int) -> bool:
    """The ``LengthGuard`` rules for a base-legal action ``a`` (True without a guard)."""
    gd = s.guard
    if gd is None:
        return True
    B = g.py["bounds"]
    c = s.cursor
    dest = _dest(g, c, a)
    out = s.output_samples + COPIES_PER_ACTION[a] * (B[dest] - B[c])
    if a in TERMINAL_ACTIONS or dest >= g.n:
        return abs(out - gd.target) <= gd.tol
    return reachable(gd.target - out, B[g.n - 1] - B[dest], B[g.n] - B[g.n - 1], B[g.n] - B[dest], gd.tol)


def reachable(need: float, before_last: float, last: float, rest: float, tol: float) -> bool:
    """Whether an output still short of the target by ``need`` samples can end within ``tol`` of it, from a
    cursor with ``before_last`` samples of source before the song's last beat (whole beats: any amount in
    steps of about a beat), a last beat of ``last`` samples and ``rest`` samples in all. Loops are ignored."""
    return (-tol <= need <= before_last + tol) or (last - tol <= need <= rest + tol)


def _mask(g: SongGrid, s: EditState, max_loops: int, keep_start: bool = False) -> np.ndarray:
    """Legal actions (the guard's rules too); ``keep_start`` (``EnvConfig.keep_start``, the policy's masks): no cut at
    the first beat, so the edit begins at the song's real start."""
    base = np.array([_is_legal(g, s, a, max_loops) for a in range(N_ACTIONS)], dtype=bool)
    m = base
    if s.guard is not None:
        guarded = base & np.array([bool(base[a]) and _guard_allows(g, s, a) for a in range(N_ACTIONS)], dtype=bool)
        m = guarded if guarded.any() else base
    if keep_start and s.cursor == 0:  # after the guard: a mask it would empty (an impossible target) stays as it is
        kept = m.copy()
        kept[list(CUT_ACTIONS)] = False
        m = kept if kept.any() else m
    return m


def _is_legal(g: SongGrid, s: EditState, a: int, max_loops: int) -> bool:
    """The mask rules of ``beatedit.editing.actions`` (with the refinements documented there)."""
    c = s.cursor
    if s.done or c >= g.n:
        return False
    py = g.py
    if a == 0:  # KEEP
        return True
    if a == 1:  # CUT: never end the song with an empty edit
        return s.output_samples > 0 or c + 1 < g.n
    if a == 2:
        return py["next_bar"][c] >= 0
    if a == 3:
        return py["next_phrase"][c] >= 0
    if a in (4, 5, 6) and s.loops_used >= max_loops:
        return False
    if a == 4:
        return True
    if a == 5:
        return py["loop_bar_ok"][c]
    if a == 6:
        return py["repeat_phrase_ok"][c]
    if a == 7:  # FADE_IN: first, or right after a cut
        return s.last_action == -1 or s.last_action in CUT_ACTIONS
    if a == 8:
        return s.output_samples > 0
    return s.output_samples > 0 and py["is_bar_start"][c]  # END


def action_mask(song: SongAnalysis, state: EditState, cfg: EnvConfig | None = None) -> np.ndarray:
    """bool [10]: which actions are legal at ``state`` (all False once the episode is done)."""
    cfg = cfg or EnvConfig()
    return _mask(song_grid(song), state, cfg.max_loops_per_episode, cfg.keep_start)


def _apply_inplace(g: SongGrid, s: EditState, action: int, max_loops: int) -> None:
    if s.done:
        raise ValueError(f"action {action} applied after the episode ended (cursor {s.cursor}/{g.n})")
    a = int(action)
    if not 0 <= a < N_ACTIONS:
        raise ValueError(f"action {action!r} is not an action id in 0..{N_ACTIONS - 1}")
    if not _is_legal(g, s, a, max_loops):
        raise ValueError(f"action {Action(a).name} is illegal at beat {s.cursor}/{g.n} "
                         f"(has output: {s.has_output}, last action: {s.last_action}, loops used: {s.loops_used})")
    if s.guard is not None and not _guard_allows(g, s, a) and _mask(g, s, max_loops)[a] == False:  # noqa: E712
        raise ValueError(f"action {Action(a).name} at beat {s.cursor}/{g.n} misses the target length "
                         f"({s.output_samples} samples so far, target {s.guard.target:.0f} +- {s.guard.tol:.0f})")
    c = s.cursor
    B = g.py["bounds"]
    out = s.output
    if a == 0:  # KEEP
        out.append((c, 1.0, 1.0))
        dest = c + 1
    elif a == 1:  # CUT
        dest = c + 1
    elif a == 2:  # CUT_TO_NEXT_BAR
        dest = g.py["next_bar"][c]
    elif a == 3:  # CUT_TO_NEXT_PHRASE
        dest = g.py["next_phrase"][c]
    elif a == 4:  # LOOP_BEAT
        out.extend(((c, 1.0, 1.0), (c, 1.0, 1.0)))
        dest = c + 1
    elif a in (5, 6):  # LOOP_BAR, REPEAT_PHRASE
        dest = g.py["next_bar"][c] if a == 5 else g.py["next_phrase"][c]
        span = [(b, 1.0, 1.0) for b in range(c, dest)]
        out.extend(span + span)
    elif a == 7:  # FADE_IN
        out.append((c, 0.0, 1.0))
        dest = c + 1
    elif a == 8:  # FADE_OUT: linear in samples over one bar's worth of beats (or to the song's end)
        dest = g.py["fade_end"][c]
        total = float(B[dest] - B[c])
        for b in range(c, dest):
            out.append((b, 1.0 - (B[b] - B[c]) / total, 1.0 - (B[b + 1] - B[c]) / total))
    else:  # END
        dest = c
    mult = COPIES_PER_ACTION[a]  # times the consumed span [cursor, dest) is emitted
    if mult:
        s.output_samples += mult * (B[dest] - B[c])
    s.beat_actions.extend([a] * (dest - c))
    s.cursor = dest
    s.last_action = a
    s.loops_used += a in LOOP_ACTIONS
    s.decisions.append(a)
    if a in TERMINAL_ACTIONS or dest >= g.n:
        s.done = True
        s.beat_actions.extend([int(Action.END)] * (g.n - len(s.beat_actions)))


def apply_action(song: SongAnalysis, state: EditState, action: int, cfg: EnvConfig | None = None) -> EditState:
    """Return the state after ``action`` (``state`` itself is not modified).

    Raises ``ValueError`` for an illegal (masked) action or any action after the episode ended.
    """
    cfg = cfg or EnvConfig()
    new = state.copy()
    _apply_inplace(song_grid(song), new, action, cfg.max_loops_per_episode)
    return new


# ----------------------------------------------------------------------------- result
@dataclass
class EditResult:
    edl: EDL
    beat_actions: np.ndarray  # int64 [n_beats]: the action that governed each source beat
    decisions: list[int]  # the actions taken, in order
    output_beats: list[tuple[int, float, float]]  # (source beat, gain at start, gain at end), output order
    target_ratio: float | None

    @property
    def duration(self) -> float:
        """Output duration in seconds (== rendered length / source_sr)."""
        return self.edl.duration


def output_arrays(edit: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(src int64 [m], gain0 float64 [m], gain1 float64 [m])``: the beats an edit plays, in output order.

    Accepts an ``EditResult`` (its ``output_beats``), a list of ``(src, gain0, gain1)`` triples, an
    array ``[m, 3]``, or plain source beat indices (gains 1), so the judges can score any of them.
    """
    ob = getattr(edit, "output_beats", edit)
    a = np.asarray(ob, dtype=np.float64)
    if a.size == 0:
        z = np.zeros(0)
        return z.astype(np.int64), z, z
    if a.ndim == 1:
        return a.astype(np.int64), np.ones(len(a)), np.ones(len(a))
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"output_beats must be (source_beat, gain0, gain1) triples, got shape {a.shape}")
    return a[:, 0].astype(np.int64), a[:, 1], a[:, 2]


def _crossfade_samples(crossfade_ms: float, sr: int) -> int:
    if not (math.isfinite(crossfade_ms) and crossfade_ms >= 0):
        raise ValueError(f"crossfade_ms must be a finite number >= 0, got {crossfade_ms!r}")
    return int(round(crossfade_ms * sr / 1000.0))


def segments_from_output(bounds: np.ndarray, output_beats: Sequence[tuple[int, float, float]],
                         crossfade: int) -> list[Segment]:
    """Merge output beats into segments; crossfade ``min(crossfade, neighbours)`` at each splice."""
    segs: list[list] = []  # [b0, b1, g0, g1]
    B = bounds.tolist() if isinstance(bounds, np.ndarray) else list(bounds)
    for b, h0, h1 in output_beats:
        if segs:
            cur = segs[-1]
            if b == cur[1] and h0 == cur[3]:
                if cur[2] == cur[3] and h0 == h1:  # constant gain, the common case
                    cur[1] = b + 1
                    continue
                if math.isclose((cur[3] - cur[2]) / (B[cur[1]] - B[cur[0]]), (h1 - h0) / (B[b + 1] - B[b]),
                                rel_tol=1e-9, abs_tol=1e-12):
                    cur[1] = b + 1
                    cur[3] = h1
                    continue
        segs.append([b, b + 1, h0, h1])
    out: list[Segment] = []
    for k, (b0, b1, g0, g1) in enumerate(segs):
        start, end = B[b0], B[b1]
        xf = 0
        if k and start != out[-1].end_sample:
            xf = min(crossfade, out[-1].length, end - start)
        out.append(Segment(start, end, float(g0), float(g1), xf, int(b0), int(b1)))
    return out


def start_state(song: SongAnalysis, target_ratio: float | None = None, cfg: EnvConfig | None = None,
                guarded: bool = True) -> EditState:
    """The state at the start of an edit; with ``guarded`` (and ``cfg.length_guard``) it carries the
    ``LengthGuard`` for ``target_ratio``. Editors, the env and the policy start here."""
    return EditState(guard=length_guard(song, target_ratio, cfg) if guarded else None)


def policy_can_take(song: SongAnalysis, decisions: Sequence[int], target_ratio: float, cfg: EnvConfig) -> bool:
    """Whether the policy, which acts under the env's masks (the length guard, ``keep_start``), could take
    ``decisions`` at all: a demonstration or preference edit it could not is no training signal for it."""
    if cfg.keep_start and len(decisions) and int(decisions[0]) in CUT_ACTIONS:  # the cursor is 0 only at the first decision
        return False
    try:
        build_edit(song, decisions, 0.0, target_ratio, cfg, guarded=True)
    except ValueError:
        return False
    return True


def build_edit(song: SongAnalysis, decisions: Sequence[int], crossfade_ms: float,
               target_ratio: float | None = None, cfg: EnvConfig | None = None, guarded: bool = False) -> EditResult:
    """Replay ``decisions`` from the start of the song into an ``EditResult``.

    ``guarded``: replay under the ``LengthGuard`` (as the env, the editors and the policy decide);
    off for deliberately off-target edits (the preference data's wrong-length candidates).
    Raises ``ValueError`` if an action is illegal where it is taken, if an action
    follows the end of the episode, or if the decisions stop before the episode ends.
    """
    cfg = cfg or EnvConfig()
    if target_ratio is not None:
        target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    s = start_state(song, target_ratio, cfg, guarded)
    for k, a in enumerate(decisions):
        if s.done:
            raise ValueError(f"song {song.song_id}: decision {k} ({a}) follows the end of the episode")
        _apply_inplace(g, s, int(a), cfg.max_loops_per_episode)
    if not s.done:
        raise ValueError(f"song {song.song_id}: {len(decisions)} decisions stop at beat {s.cursor} of {g.n} "
                         "before the episode ends (END, FADE_OUT or the song's end)")
    segs = segments_from_output(g.bounds, s.output, _crossfade_samples(crossfade_ms, g.sr))
    edl = EDL(source_path=song.source_path, source_sr=g.sr, source_channels=int(song.source_channels),
              source_samples=g.source_samples, segments=segs, song_id=song.song_id, target_ratio=target_ratio,
              meta={"crossfade_ms": float(crossfade_ms), "action_vocab": ACTION_VOCAB_VERSION,
                    "source_hash": song.source_hash,
                    **({} if target_ratio is None else {"target_seconds": float(target_ratio) * float(song.duration)})}
              ).validate()
    if edl.n_samples != s.output_samples:  # internal invariant: the state's length is the EDL's length
        raise RuntimeError(f"edit program bug: state says {s.output_samples} samples, EDL {edl.n_samples}")
    return EditResult(edl=edl, beat_actions=np.asarray(s.beat_actions, dtype=np.int64), decisions=list(s.decisions),
                      output_beats=list(s.output), target_ratio=target_ratio)
