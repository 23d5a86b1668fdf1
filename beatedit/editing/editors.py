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
    SongGrid,
    _apply_inplace,
    _mask,
    build_edit,
    check_target_ratio,
    song_grid,
    start_state,
)
from beatedit.audio.schema import COLUMN_INDEX
from beatedit.audio.song import SongAnalysis
from beatedit.editing.search import search_decisions

EDITORS = ("random", "heuristic", "fade", "search")
_EMIT = np.array([Action.KEEP, Action.LOOP_BEAT, Action.LOOP_BAR, Action.REPEAT_PHRASE, Action.FADE_IN])
_SKIP = np.array([Action.CUT, Action.CUT_TO_NEXT_BAR, Action.CUT_TO_NEXT_PHRASE])


def _grid_and_target(song: SongAnalysis, target_ratio: float) -> tuple[SongGrid, float]:
    """The song's grid and the target output length in source samples (the ratio checked first)."""
    target_ratio = check_target_ratio(target_ratio)
    g = song_grid(song)
    return g, target_ratio * g.source_samples


def random_decisions(song: SongAnalysis, target_ratio: float, rng: np.random.Generator,
                     cfg: EnvConfig | None = None) -> list[int]:
    cfg = cfg or EnvConfig()
    g, target = _grid_and_target(song, target_ratio)
    s = start_state(song, target_ratio, cfg)
    near = 0.5 * (s.guard.tol if s.guard is not None else 0.0)
    while not s.done:
        m = _mask(g, s, cfg.max_loops_per_episode)
        if s.output_samples >= target - near and (m[Action.END] or m[Action.FADE_OUT]):
            ends = [a for a in (Action.END, Action.FADE_OUT) if m[a]]
            a = int(ends[rng.integers(len(ends))])
        else:
            rem = max(int(g.bounds[g.n] - g.bounds[s.cursor]), 1)
            need = float(np.clip((target - s.output_samples) / rem, 0.05, 0.95))
            emit, skip = _EMIT[m[_EMIT]], _SKIP[m[_SKIP]]
            if len(emit) == 0 and len(skip) == 0:  # only an ending is left
                ends = [a for a in (Action.END, Action.FADE_OUT) if m[a]]
                a = int(ends[rng.integers(len(ends))])
            else:
                group = emit if (len(skip) == 0 or (len(emit) and rng.random() < need)) else skip
                a = int(group[rng.integers(len(group))])
        _apply_inplace(g, s, a, cfg.max_loops_per_episode)
    return s.decisions


def _play(g: SongGrid, s: EditState, wish: int, max_loops: int) -> None:
    """Play ``wish`` if the (guarded) mask allows it, else the closest legal stand-in: an editor's plan
    gives way to the length guard instead of failing."""
    m = _mask(g, s, max_loops)
    for a in (wish, Action.KEEP, Action.CUT_TO_NEXT_BAR, Action.CUT, Action.END, Action.FADE_OUT):
        if m[int(a)]:
            _apply_inplace(g, s, int(a), max_loops)
            return
    _apply_inplace(g, s, int(np.flatnonzero(m)[0]), max_loops)


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
    g, target = _grid_and_target(song, target_ratio)
    B = g.bounds
    units, _ = _units(song, phrase_bars)
    rms = song.features[:, COLUMN_INDEX["rms"]].astype(np.float64)
    length = [int(B[b] - B[a]) for a, b in units]
    energy = [float(rms[a:b].mean()) for a, b in units]
    keep = [True] * len(units)
    kept = float(sum(length))
    for k in sorted(range(1, len(units)), key=lambda k: (energy[k], k)):  # unit 0 (intro start) always stays
        if kept - length[k] >= target:  # drop quiet units while what is left still covers the target
            keep[k] = False
            kept -= length[k]
    s = start_state(song, target_ratio, cfg)
    half_beat = 0.5 * g.beat_samples
    loops = cfg.max_loops_per_episode
    for k, (a, b) in enumerate(units):
        if s.done:
            break
        if not keep[k]:
            while not s.done and s.cursor < b:  # skip to the unit's end on bar / phrase boundaries
                c = s.cursor
                if g.next_phrase[c] == b:
                    _play(g, s, Action.CUT_TO_NEXT_PHRASE, loops)
                elif 0 <= g.next_bar[c] <= b:
                    _play(g, s, Action.CUT_TO_NEXT_BAR, loops)
                else:
                    _play(g, s, Action.CUT, loops)
            continue
        while not s.done and s.cursor < b:  # keep; fade out over a bar where that lands on the target
            c = s.cursor
            fade_total = s.output_samples + B[g.fade_end[c]] - B[c]
            if s.has_output and g.fade_end[c] < g.n and fade_total >= target - half_beat:
                _play(g, s, Action.FADE_OUT, loops)
            else:
                _play(g, s, Action.KEEP, loops)
    return s.decisions


def fade_decisions(song: SongAnalysis, target_ratio: float, cfg: EnvConfig | None = None) -> list[int]:
    cfg = cfg or EnvConfig()
    g, target = _grid_and_target(song, target_ratio)
    B = g.bounds
    # keeping beats 0..c-1 and fading over the bar's worth of beats from c gives B[fade_end[c]] - B[0] samples
    ends = np.array([B[int(g.fade_end[c])] - B[0] for c in range(1, g.n)], dtype=np.float64)
    fade_at = 1 + int(np.argmin(np.abs(ends - target)))
    s = start_state(song, target_ratio, cfg)
    while not s.done:
        _play(g, s, Action.FADE_OUT if s.cursor >= fade_at else Action.KEEP, cfg.max_loops_per_episode)
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
    elif editor_name == "search":
        decisions = search_decisions(song, target_ratio, cfg)
        try:
            return build_edit(song, decisions, xf, target_ratio, cfg, guarded=True)
        except ValueError:  # no path of the search met the guard's tolerance: its best edit, unguarded
            return build_edit(song, decisions, xf, target_ratio, cfg)
    else:
        raise ValueError(f"unknown editor {editor_name!r}; choose one of {', '.join(EDITORS)}")
    return build_edit(song, decisions, xf, target_ratio, cfg, guarded=True)
