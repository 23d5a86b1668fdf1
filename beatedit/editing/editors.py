"""Baseline editors: a random editor (valid actions), a rule-based heuristic editor and a fade editor.

Both return a decision list for ``editing.build_edit`` (every decision is legal under
``editing.action_mask``), so their edits are exactly what the env would produce.

* ``random_decisions``: at each beat, picks among the legal actions at random, but
  weighted so the edit's length tracks the target: with probability
  ``clip(need, 0.05, 0.95)`` it picks uniformly among the legal *emitting* actions
  (KEEP, LOOP_BEAT, LOOP_BAR, REPEAT_PHRASE, FADE_IN), otherwise among the legal
  *skipping* ones (CUT, CUT_TO_NEXT_BAR, CUT_TO_NEXT_PHRASE), where ``need`` =
  remaining target / remaining source. Once the output reaches the target it ends
  (END or FADE_OUT, whichever is legal, at random). Musically careless, not absurd.
* ``heuristic_decisions``: splits the song into phrases (``phrase_starts``; without
  them, groups of ``phrase_bars`` bars; the beats before the first phrase belong to
  the first unit), always keeps the first unit (the intro start), and drops whole
  units in increasing order of mean ``rms`` while that brings the output closer to the
  target. Dropped units are skipped with CUT_TO_NEXT_PHRASE (or CUT_TO_NEXT_BAR when
  the unit boundary is a bar, not a phrase, start), so every cut is on a bar
  boundary. The last kept unit ends with FADE_OUT from its last bar start (a fade
  over the last bar), which also ends the edit.
* ``fade_decisions``: the radio fade: keeps the song from its start and fades out over
  the bar whose end lands closest to the target length (FADE_OUT at that bar's start).
  No splices at all, so nothing to hear at a seam; it loses whatever comes after the
  fade (often the last chorus), and its length is off by at most half a bar.
"""

from __future__ import annotations

import numpy as np

from beatedit.editing.actions import Action
from beatedit.config import EnvConfig, RenderConfig
from beatedit.editing.program import (
    EditResult,
    EditState,
    _apply_inplace,
    _mask,
    build_edit,
    check_target_ratio,
    song_grid,
)
from beatedit.audio.schema import COLUMN_INDEX
from beatedit.audio.song import SongAnalysis

EDITORS = ("random", "heuristic", "fade")
_EMIT = np.array([Action.KEEP, Action.LOOP_BEAT, Action.LOOP_BAR, Action.REPEAT_PHRASE, Action.FADE_IN])
_SKIP = np.array([Action.CUT, Action.CUT_TO_NEXT_BAR, Action.CUT_TO_NEXT_PHRASE])


def random_decisions(song: SongAnalysis, target_ratio: float, rng: np.random.Generator,
                     cfg: EnvConfig | None = None) -> list[int]:
    cfg = cfg or EnvConfig()
    target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    target = target_ratio * g.source_samples
    s = EditState()
    while not s.done:
        m = _mask(g, s, cfg.max_loops_per_episode)
        if s.output_samples >= target and (m[Action.END] or m[Action.FADE_OUT]):
            ends = [a for a in (Action.END, Action.FADE_OUT) if m[a]]
            a = int(ends[rng.integers(len(ends))])
        else:
            rem = max(int(g.bounds[g.n] - g.bounds[s.cursor]), 1)
            need = float(np.clip((target - s.output_samples) / rem, 0.05, 0.95))
            emit, skip = _EMIT[m[_EMIT]], _SKIP[m[_SKIP]]
            group = emit if (len(skip) == 0 or (len(emit) and rng.random() < need)) else skip
            a = int(group[rng.integers(len(group))])
        _apply_inplace(g, s, a, cfg.max_loops_per_episode)
    return s.decisions


def _units(song: SongAnalysis, phrase_bars: int) -> tuple[list[tuple[int, int]], bool]:
    """Consecutive [start, end) beat spans covering the song; True if split at phrase starts."""
    n = song.n_beats
    ps = [int(p) for p in song.phrase_starts if 0 < p < n]
    if len(song.phrase_starts) and int(song.phrase_starts[0]) > 0 and ps:
        ps = ps[1:]  # a pickup before the first phrase belongs to the first unit
    by_phrase = len(song.phrase_starts) >= 1
    if not by_phrase:
        bars = [int(b) for b in song.bar_starts if 0 < b < n]
        ps = bars[phrase_bars - 1::phrase_bars] if bars else []
        ps = [b for b in ps if b > 0]
    cuts = [0] + ps + [n]
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a], by_phrase


def heuristic_decisions(song: SongAnalysis, target_ratio: float, cfg: EnvConfig | None = None,
                        phrase_bars: int = 8) -> list[int]:
    cfg = cfg or EnvConfig()
    target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    B = g.bounds
    target = target_ratio * g.source_samples
    units, _ = _units(song, phrase_bars)
    rms = song.features[:, COLUMN_INDEX["rms"]].astype(np.float64)
    length = [int(B[b] - B[a]) for a, b in units]
    energy = [float(rms[a:b].mean()) for a, b in units]
    keep = [True] * len(units)
    kept = float(sum(length))
    for k in sorted(range(1, len(units)), key=lambda k: (energy[k], k)):  # unit 0 (intro start) always stays
        if kept <= target:
            break
        if abs(kept - length[k] - target) < abs(kept - target):
            keep[k] = False
            kept -= length[k]
    last = max(k for k in range(len(units)) if keep[k])
    s = EditState()

    def play(a: int) -> None:
        _apply_inplace(g, s, a, cfg.max_loops_per_episode)

    for k, (a, b) in enumerate(units):
        if k > last:
            break
        if not keep[k]:
            while s.cursor < b:  # skip to the unit's end on bar / phrase boundaries
                c = s.cursor
                if g.next_phrase[c] == b:
                    play(Action.CUT_TO_NEXT_PHRASE)
                elif 0 <= g.next_bar[c] <= b:
                    play(Action.CUT_TO_NEXT_BAR)
                else:
                    play(Action.CUT)
            continue
        bars_in = [c for c in range(a, b) if g.is_bar_start[c]]
        fade_at = (bars_in[-1] if bars_in else a) if k == last else None
        while not s.done and s.cursor < b:
            if s.cursor == fade_at and s.has_output:
                play(Action.FADE_OUT)
            else:
                play(Action.KEEP)
    if not s.done:  # the last kept unit had no room for a fade (e.g. one beat): fade from here
        play(Action.FADE_OUT if s.has_output else Action.KEEP)
    return s.decisions


def fade_decisions(song: SongAnalysis, target_ratio: float, cfg: EnvConfig | None = None) -> list[int]:
    cfg = cfg or EnvConfig()
    target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    B = g.bounds
    target = target_ratio * g.source_samples
    bars = [int(c) for c in np.flatnonzero(g.is_bar_start[:g.n])]
    if not bars:
        bars = [0]
    # fading from bar start c gives an edit of B[bar_end[c]] - B[0] samples (everything before c is kept)
    ends = np.array([B[int(g.bar_end[c])] - B[0] for c in bars], dtype=np.float64)
    fade_at = bars[int(np.argmin(np.abs(ends - target)))]
    s = EditState()
    while not s.done:
        if s.cursor >= fade_at and s.has_output and g.is_bar_start[s.cursor]:  # (a fade at beat 0 waits one bar)
            _apply_inplace(g, s, Action.FADE_OUT, cfg.max_loops_per_episode)
        else:
            _apply_inplace(g, s, Action.KEEP, cfg.max_loops_per_episode)
    return s.decisions


def edit_with(editor_name: str, song: SongAnalysis, target_ratio: float, rng: np.random.Generator | None = None,
              cfg: EnvConfig | None = None, crossfade_ms: float | None = None) -> EditResult:
    """Run a baseline editor and build its edit (``EditResult``)."""
    cfg = cfg or EnvConfig()
    xf = RenderConfig().crossfade_ms if crossfade_ms is None else crossfade_ms
    if editor_name == "random":
        decisions = random_decisions(song, target_ratio, rng if rng is not None else np.random.default_rng(), cfg)
    elif editor_name == "heuristic":
        decisions = heuristic_decisions(song, target_ratio, cfg)
    elif editor_name == "fade":
        decisions = fade_decisions(song, target_ratio, cfg)
    else:
        raise ValueError(f"unknown editor {editor_name!r}; choose one of {', '.join(EDITORS)}")
    return build_edit(song, decisions, xf, target_ratio, cfg)
