"""The editing environment: one episode = one left-to-right pass over a song.

``BeatEditEnv`` is a gymnasium env (single episode at a time, driven by the edit
program in ``beatedit.editing.program``); ``VecBeatEditEnv`` steps many episodes at once with
numpy. For the same song, target and actions both produce the same observations,
masks and edits (tested).

Observation (flat float32, ``obs_dim(cfg) = (wb + wa) * 126 + 10 + 10 * R`` with
``wb = window_before``, ``wa = window_after``, ``R = recent_actions``; 3114 by default):

1. Feature window: rows for beats ``cursor - wb .. cursor + wa - 1``; each row is the
   beat's 125 features standardised per song (z-score per column, computed once per
   song; a constant column becomes 0; clipped to +-10) followed by a validity flag (1 inside the song,
   0 outside, where the features are 0 too).
2. Progress (10): ``output_s / target_s`` (clipped to [0, 4]); ``cursor / n_beats``;
   one-hot beat-in-bar of the cursor beat (4 slots; positions >= 4 and the past-the-end
   cursor are all zero); phrase position (fraction of the current phrase elapsed);
   need ratio ``(target_s - output_s) / remaining source_s`` (clipped to [-4, 4]:
   1 = keep everything from here, < 0 = already over target); has-output flag;
   fraction of the loop budget left.
3. Recent actions: ``R`` one-hot rows of 10, most recent first; zero rows before the
   episode's first actions.

``obs_layout(cfg)`` gives the slices. Targets: each episode samples a song uniformly
and a target ratio uniformly from ``[target_min, target_max]``; ``target_s = ratio *
source duration``. Reward: 0 per step, ``dense_reward(...)["total"]`` at the end.

Illegal actions: the masks are in ``info["action_mask"]`` / ``action_masks()``
(sb3-contrib's convention). A mask-unaware agent (plain SB3 PPO) may still pick a
masked action; with ``EnvConfig.illegal_action = "keep"`` (default) the env plays
KEEP instead (or, where the length guard masks KEEP, the first legal action), records
``info["illegal_action"] = True`` and ``info["requested_action"]``, and the episode's
decisions hold the action actually played. With ``"raise"`` it is a ``ValueError``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import gymnasium as gym
import numpy as np

from beatedit.editing.actions import COPIES_PER_ACTION, N_ACTIONS, Action
from beatedit.config import DenseRewardConfig, EnvConfig, RenderConfig
from beatedit.editing.program import (
    CUT_ACTIONS,
    LOOP_ACTIONS,
    EditResult,
    EditState,
    _apply_inplace,
    _mask,
    build_edit,
    check_target_ratio,
    song_grid,
    start_state,
)
from beatedit.audio.schema import N_FEATURES
from beatedit.audio.song import SongAnalysis

ROW = N_FEATURES + 1  # features + validity flag
N_PROGRESS = 10
BIB_SLOTS = 4
Z_CLIP = 10.0  # standardised features are clipped to +-Z_CLIP; every obs entry lies in [-Z_CLIP, Z_CLIP]


def obs_dim(cfg: EnvConfig) -> int:
    return (cfg.window_before + cfg.window_after) * ROW + N_PROGRESS + N_ACTIONS * cfg.recent_actions


def obs_layout(cfg: EnvConfig) -> dict[str, slice]:
    w = (cfg.window_before + cfg.window_after) * ROW
    return {"window": slice(0, w), "output_ratio": slice(w, w + 1), "source_position": slice(w + 1, w + 2),
            "beat_in_bar": slice(w + 2, w + 6), "phrase_position": slice(w + 6, w + 7),
            "need_ratio": slice(w + 7, w + 8), "has_output": slice(w + 8, w + 9), "loops_left": slice(w + 9, w + 10),
            "recent_actions": slice(w + N_PROGRESS, obs_dim(cfg))}


def _dense_reward_fn():
    try:
        mod = importlib.import_module("beatedit.judging.dense")
    except ModuleNotFoundError as exc:
        if exc.name != "beatedit.judging.dense":
            raise
        raise ImportError("beatedit.judging.dense (dense_reward) is required by the env for its terminal reward") from exc
    return mod.dense_reward


def standardise(features: np.ndarray) -> np.ndarray:
    """Per-song z-score per column (std < 1e-6 -> the column becomes 0), clipped to +-Z_CLIP, float32."""
    f = np.asarray(features, dtype=np.float64)
    mu = f.mean(axis=0)
    sd = f.std(axis=0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    return np.clip((f - mu) / sd, -Z_CLIP, Z_CLIP).astype(np.float32)


class _Tables:
    """Per-song arrays concatenated over songs: padded feature rows and grid lookups."""

    def __init__(self, songs: Sequence[SongAnalysis], cfg: EnvConfig):
        self.cfg = cfg
        wb, wa = cfg.window_before, cfg.window_after
        self.W = wb + wa
        rows, row_base, tabs = [], [], {k: [] for k in ("next_bar", "next_phrase", "fade_end", "bounds",
                                                         "loop_bar_ok", "repeat_phrase_ok", "is_bar_start",
                                                         "bib", "phrase_pos")}
        c_base, r_off, c_off = [], 0, 0
        self.grids = []
        for s in songs:
            g = song_grid(s)
            self.grids.append(g)
            n = g.n
            padded = np.zeros((wb + n + wa, ROW), dtype=np.float32)
            padded[wb:wb + n, :N_FEATURES] = standardise(s.features)
            padded[wb:wb + n, N_FEATURES] = 1.0
            rows.append(padded)
            row_base.append(r_off)
            r_off += len(padded)
            c_base.append(c_off)
            # cursor-indexed tables hold absolute (per-song) beat indices; -1 = none
            tabs["next_bar"].append(g.next_bar)
            tabs["next_phrase"].append(g.next_phrase)
            tabs["fade_end"].append(g.fade_end)
            tabs["bounds"].append(g.bounds)
            tabs["loop_bar_ok"].append(g.loop_bar_ok)
            tabs["repeat_phrase_ok"].append(g.repeat_phrase_ok)
            tabs["is_bar_start"].append(g.is_bar_start)
            tabs["bib"].append(g.beat_in_bar)
            tabs["phrase_pos"].append(g.phrase_pos)
            c_off += n + 1
        flat = np.concatenate(rows).reshape(-1)
        self._flat = flat  # keep the base alive for the strided view
        n_win = r_off - self.W + 1
        # window view: row r = the W consecutive padded rows starting at r, flattened (no copy)
        self.windows = np.lib.stride_tricks.as_strided(flat, shape=(n_win, self.W * ROW),
                                                       strides=(ROW * flat.itemsize, flat.itemsize), writeable=False)
        self.row_base = np.asarray(row_base, dtype=np.int64)
        self.c_base = np.asarray(c_base, dtype=np.int64)
        self.n = np.asarray([g.n for g in self.grids], dtype=np.int64)
        self.sr = np.asarray([g.sr for g in self.grids], dtype=np.int64)
        self.total_samples = np.asarray([g.source_samples for g in self.grids], dtype=np.int64)
        self.guard_tol = np.asarray([cfg.length_tolerance_beats * g.beat_samples for g in self.grids], dtype=np.float64)
        self.length_guard = bool(cfg.length_guard)
        self.keep_start = bool(cfg.keep_start)
        for k, v in tabs.items():
            setattr(self, k, np.concatenate(v))
        # bib one-hot table (zero row for positions >= BIB_SLOTS and past the end)
        bib = self.bib
        self.bib_onehot = np.zeros((len(bib), BIB_SLOTS), dtype=np.float32)
        ok = (bib >= 0) & (bib < BIB_SLOTS)
        self.bib_onehot[np.nonzero(ok)[0], bib[ok]] = 1.0
        self.phrase_pos = self.phrase_pos.astype(np.float32)
        self.end_bound = self.bounds[self.c_base + self.n]  # sample bound of the end of the last beat
        self.max_loops = cfg.max_loops_per_episode
        self.R = cfg.recent_actions
        self.D = obs_dim(cfg)
        self.Wd = self.W * ROW

    def observe(self, song: np.ndarray, cursor: np.ndarray, out_samples: np.ndarray, target_samples: np.ndarray,
                loops: np.ndarray, hist: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 [E, D] (written into ``out`` when given). ``hist`` int [E, R]: recent actions, most
        recent first, -1 = none."""
        E = len(song)
        obs = np.empty((E, self.D), dtype=np.float32) if out is None else out
        Wd = self.Wd
        obs[:, :Wd] = self.windows[self.row_base[song] + cursor]
        g = self.c_base[song] + cursor
        n = self.n[song]
        src_rem = (self.end_bound[song] - self.bounds[g]).astype(np.float64)
        out = out_samples.astype(np.float64)
        p = obs[:, Wd:Wd + N_PROGRESS]
        p[:, 0] = np.clip(out / target_samples, 0.0, 4.0)
        p[:, 1] = cursor / n
        p[:, 2:6] = self.bib_onehot[g]
        p[:, 6] = self.phrase_pos[g]
        p[:, 7] = np.clip((target_samples - out) / np.maximum(src_rem, 1.0), -4.0, 4.0)
        p[:, 8] = out_samples > 0
        p[:, 9] = (1.0 - loops / self.max_loops) if self.max_loops > 0 else 0.0
        if self.R:
            obs[:, Wd + N_PROGRESS:] = (hist[:, :, None] == _ACTION_IDS).reshape(E, self.R * N_ACTIONS)
        return obs

    def masks(self, song: np.ndarray, cursor: np.ndarray, has_out: np.ndarray, last: np.ndarray,
              loops: np.ndarray, done: np.ndarray, out_samples: np.ndarray | None = None,
              target_samples: np.ndarray | None = None) -> np.ndarray:
        """bool [E, 10]; the same rules as ``editing.action_mask`` (the length guard too, when the
        output and target lengths are given and ``EnvConfig.length_guard`` is on)."""
        E = len(song)
        g = self.c_base[song] + cursor
        live = ~done & (cursor < self.n[song])
        loops_ok = loops < self.max_loops
        m = np.empty((E, N_ACTIONS), dtype=bool)
        m[:, Action.KEEP] = live
        m[:, Action.CUT] = live & (has_out | (cursor + 1 < self.n[song]))
        m[:, Action.CUT_TO_NEXT_BAR] = live & (self.next_bar[g] >= 0)
        m[:, Action.CUT_TO_NEXT_PHRASE] = live & (self.next_phrase[g] >= 0)
        m[:, Action.LOOP_BEAT] = live & loops_ok
        m[:, Action.LOOP_BAR] = live & loops_ok & self.loop_bar_ok[g]
        m[:, Action.REPEAT_PHRASE] = live & loops_ok & self.repeat_phrase_ok[g]
        m[:, Action.FADE_IN] = live & _FADE_IN_AFTER[last + 1]
        m[:, Action.FADE_OUT] = live & has_out
        m[:, Action.END] = live & has_out & self.is_bar_start[g]
        if self.length_guard and out_samples is not None and target_samples is not None:
            m = self._guarded(m, song, cursor, out_samples, target_samples)
        if self.keep_start:  # EnvConfig.keep_start: no cut at the first beat (after the guard; a row it would empty keeps its mask)
            kept = m.copy()
            kept[cursor == 0, Action.CUT:Action.CUT_TO_NEXT_PHRASE + 1] = False
            m = np.where(kept.any(axis=1)[:, None], kept, m)
        return m

    def dests(self, song: np.ndarray, cursor: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Cursor after each action (broadcast: ``actions`` [E] or [E, k])."""
        g = (self.c_base[song] + cursor).reshape((-1,) + (1,) * (np.ndim(actions) - 1))
        c = cursor.reshape(g.shape)
        kind = _DEST_KIND[actions]
        return np.where(kind == 0, c + 1,
                        np.where(kind == 1, self.next_bar[g],
                                 np.where(kind == 2, self.next_phrase[g], np.where(kind == 3, self.fade_end[g], c))))

    def _guarded(self, m: np.ndarray, song: np.ndarray, cursor: np.ndarray, out_samples: np.ndarray,
                 target_samples: np.ndarray) -> np.ndarray:
        """``program.LengthGuard`` on every row at once; rows it would empty keep their plain mask."""
        base = self.c_base[song]
        dest = np.clip(self.dests(song, cursor, np.broadcast_to(_ACTION_IDS, m.shape)), 0, self.n[song][:, None])
        b_c = self.bounds[base + cursor][:, None]
        b_dest = self.bounds[base[:, None] + dest]
        out = out_samples[:, None] + _OUT_MULT[None, :] * (b_dest - b_c)
        tol = self.guard_tol[song][:, None]
        tgt = np.asarray(target_samples, dtype=np.float64)[:, None]
        terminal = _IS_TERMINAL[None, :] | (dest >= self.n[song][:, None])
        need = tgt - out
        before_last = self.bounds[base + self.n[song] - 1][:, None] - b_dest
        last = (self.end_bound[song] - self.bounds[base + self.n[song] - 1])[:, None]
        rest = self.end_bound[song][:, None] - b_dest
        reach = ((need >= -tol) & (need <= before_last + tol)) | ((need >= last - tol) & (need <= rest + tol))
        ok = np.where(terminal, np.abs(out - tgt) <= tol, reach)  # program.reachable, vectorised
        guarded = m & ok
        empty = ~guarded.any(axis=1)
        guarded[empty] = m[empty]
        return guarded


_ACTION_IDS = np.arange(N_ACTIONS)
#: indexed by last_action + 1: FADE_IN is legal first or right after a cut
_FADE_IN_AFTER = np.zeros(N_ACTIONS + 1, dtype=bool)
_FADE_IN_AFTER[0] = True
_FADE_IN_AFTER[[a + 1 for a in CUT_ACTIONS]] = True
#: per action: which candidate destination (0: c+1, 1: next bar, 2: next phrase, 3: bar end, 4: c)
_DEST_KIND = np.array([0, 0, 1, 2, 0, 1, 2, 0, 3, 4], dtype=np.int64)
_OUT_MULT = np.array(COPIES_PER_ACTION, dtype=np.int64)
_IS_LOOP = np.isin(np.arange(N_ACTIONS), LOOP_ACTIONS)
_IS_TERMINAL = np.isin(np.arange(N_ACTIONS), (Action.FADE_OUT, Action.END))


def _check_songs(songs) -> list[SongAnalysis]:
    if isinstance(songs, SongAnalysis):
        songs = [songs]
    songs = list(songs)
    if not songs:
        raise ValueError("the env needs at least one song")
    for s in songs:
        s.validate(f"song {s.song_id}")
    return songs


def _check_cfg(cfg: EnvConfig) -> EnvConfig:
    problem = cfg.check()
    if problem:
        raise ValueError(f"env config: {problem}")
    check_target_ratio(cfg.target_min)
    check_target_ratio(cfg.target_max)
    return cfg


class BeatEditEnv(gym.Env):
    """Gymnasium env over ``songs`` (see the module docstring for spaces and rules).

    ``reset(options={"song_index": i, "target_ratio": r})`` pins the episode's song / target.
    """

    metadata = {"render_modes": []}

    def __init__(self, songs: Sequence[SongAnalysis] | SongAnalysis, cfg: EnvConfig | None = None,
                 reward_cfg: DenseRewardConfig | None = None, render_cfg: RenderConfig | None = None):
        super().__init__()
        self.songs = _check_songs(songs)
        self.cfg = _check_cfg(cfg or EnvConfig())
        self.reward_cfg = reward_cfg or DenseRewardConfig()
        self.crossfade_ms = (render_cfg or RenderConfig()).crossfade_ms
        self._dense_reward = _dense_reward_fn()
        self.tables = _Tables(self.songs, self.cfg)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.observation_space = gym.spaces.Box(-Z_CLIP, Z_CLIP, shape=(self.tables.D,), dtype=np.float32)
        self.song_index = 0
        self.target_ratio = self.cfg.target_min
        self.state = EditState()
        self._started = False

    # --- helpers ------------------------------------------------------------------
    @property
    def song(self) -> SongAnalysis:
        return self.songs[self.song_index]

    @property
    def target_samples(self) -> float:
        return self.target_ratio * self.tables.total_samples[self.song_index]

    def _obs(self) -> np.ndarray:
        s, R = self.state, self.cfg.recent_actions
        hist = np.full((1, R), -1, dtype=np.int64)
        recent = s.decisions[::-1][:R]
        hist[0, :len(recent)] = recent
        return self.tables.observe(np.array([self.song_index]), np.array([s.cursor]), np.array([s.output_samples]),
                                   np.array([self.target_samples]), np.array([s.loops_used]), hist)[0]

    def action_masks(self) -> np.ndarray:
        return _mask(self.tables.grids[self.song_index], self.state, self.cfg.max_loops_per_episode, self.cfg.keep_start)

    # --- gym API ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "song_index" in options:
            i = int(options["song_index"])
            if not 0 <= i < len(self.songs):
                raise ValueError(f"song_index {i} outside 0..{len(self.songs) - 1}")
            self.song_index = i
        else:
            self.song_index = int(self.np_random.integers(len(self.songs)))
        if "target_ratio" in options:
            self.target_ratio = check_target_ratio(options["target_ratio"])
        else:
            self.target_ratio = float(self.np_random.uniform(self.cfg.target_min, self.cfg.target_max))
        self.state = start_state(self.song, self.target_ratio, self.cfg)
        self._started = True
        return self._obs(), {"action_mask": self.action_masks(), "song_id": self.song.song_id,
                             "target_ratio": self.target_ratio}

    def step(self, action):
        if not self._started or self.state.done:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset()")
        a = int(action)
        mask = self.action_masks()
        info: dict = {"illegal_action": False}
        if not 0 <= a < N_ACTIONS:
            raise ValueError(f"action {action!r} is not in 0..{N_ACTIONS - 1}")
        if not mask[a]:
            if self.cfg.illegal_action == "raise":
                raise ValueError(f"illegal action {Action(a).name} at beat {self.state.cursor} "
                                 f"(mask {mask.astype(int).tolist()})")
            info.update(illegal_action=True, requested_action=a)
            a = int(Action.KEEP) if mask[Action.KEEP] else int(np.argmax(mask))
        _apply_inplace(self.tables.grids[self.song_index], self.state, a, self.cfg.max_loops_per_episode)
        reward = 0.0
        terminated = self.state.done
        if terminated:
            edit = build_edit(self.song, self.state.decisions, self.crossfade_ms, self.target_ratio, self.cfg,
                              guarded=True)
            dense = self._dense_reward(self.song, edit, self.target_ratio, self.reward_cfg)
            reward = float(dense["total"])
            info.update(edit=edit, dense=dense)
        info["action_mask"] = self.action_masks()
        return self._obs(), reward, terminated, False, info


# ----------------------------------------------------------------------------- vectorised
@dataclass
class FinishedEpisode:
    env_index: int
    song_index: int
    edit: EditResult
    dense: dict | None  # None when the vec env runs with dense=False
    target_ratio: float


class VecBeatEditEnv:
    """``n_envs`` episodes stepped at once with numpy; finished episodes auto-reset.

    ``dense=False`` skips the terminal reward (rewards are 0, ``FinishedEpisode.dense``
    is None) and, unless ``build_edits=True``, also skips replaying finished episodes
    into EDLs (``FinishedEpisode.edit`` is then built on first access) -- for benchmarks.
    """

    def __init__(self, songs: Sequence[SongAnalysis] | SongAnalysis, n_envs: int, env_cfg: EnvConfig | None = None,
                 reward_cfg: DenseRewardConfig | None = None, seed: int | None = None, *,
                 render_cfg: RenderConfig | None = None, dense: bool = True, build_edits: bool | None = None):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.songs = _check_songs(songs)
        self.cfg = _check_cfg(env_cfg or EnvConfig())
        self.reward_cfg = reward_cfg or DenseRewardConfig()
        self.crossfade_ms = (render_cfg or RenderConfig()).crossfade_ms
        self.dense = dense
        self.build_edits = dense if build_edits is None else (build_edits or dense)
        self._dense_reward = _dense_reward_fn()
        self.tables = _Tables(self.songs, self.cfg)
        self.n_envs = E = int(n_envs)
        self.obs_dim = self.tables.D
        self.rng = np.random.default_rng(seed)
        max_steps = int(self.tables.n.max()) + 1
        self.song = np.zeros(E, dtype=np.int64)
        self.target_ratio = np.zeros(E, dtype=np.float64)
        self.target_samples = np.zeros(E, dtype=np.float64)
        self.cursor = np.zeros(E, dtype=np.int64)
        self.out_samples = np.zeros(E, dtype=np.int64)
        self.last = np.full(E, -1, dtype=np.int64)
        self.loops = np.zeros(E, dtype=np.int64)
        self.done = np.zeros(E, dtype=bool)
        self.hist = np.full((E, self.cfg.recent_actions), -1, dtype=np.int64)
        self.decisions = np.zeros((E, max_steps), dtype=np.int8)
        self.t = np.zeros(E, dtype=np.int64)
        self.illegal_actions = 0  # illegal actions replaced by KEEP since construction
        self._arange = np.arange(E)
        self._started = False

    # --- state ---------------------------------------------------------------------
    def _reset_envs(self, idx: np.ndarray) -> None:
        k = len(idx)
        if k == 0:
            return
        self.song[idx] = self.rng.integers(len(self.songs), size=k)
        self.target_ratio[idx] = self.rng.uniform(self.cfg.target_min, self.cfg.target_max, size=k)
        self.target_samples[idx] = self.target_ratio[idx] * self.tables.total_samples[self.song[idx]]
        self.cursor[idx] = 0
        self.out_samples[idx] = 0
        self.last[idx] = -1
        self.loops[idx] = 0
        self.done[idx] = False
        self.hist[idx] = -1
        self.t[idx] = 0

    def _observe(self, obs_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        t = self.tables
        if obs_out is not None and (obs_out.shape != (self.n_envs, self.obs_dim) or obs_out.dtype != np.float32
                                    or not obs_out.flags.c_contiguous):
            raise ValueError(f"obs_out must be a C-contiguous float32 array of shape ({self.n_envs}, {self.obs_dim})")
        obs = t.observe(self.song, self.cursor, self.out_samples, self.target_samples, self.loops, self.hist, obs_out)
        mask = t.masks(self.song, self.cursor, self.out_samples > 0, self.last, self.loops, self.done, self.out_samples,
                       self.target_samples)
        return obs, mask

    def action_masks(self) -> np.ndarray:
        return self.tables.masks(self.song, self.cursor, self.out_samples > 0, self.last, self.loops, self.done,
                                 self.out_samples, self.target_samples)

    def reset(self, song_indices: Sequence[int] | None = None, target_ratios: Sequence[float] | None = None,
              obs_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Start all ``n_envs`` episodes; optionally pin each env's song and target."""
        self._reset_envs(self._arange)
        if song_indices is not None:
            s = np.asarray(song_indices, dtype=np.int64)
            if s.shape != (self.n_envs,) or s.min() < 0 or s.max() >= len(self.songs):
                raise ValueError(f"song_indices must be {self.n_envs} indices in 0..{len(self.songs) - 1}")
            self.song[:] = s
        if target_ratios is not None:
            r = np.asarray(target_ratios, dtype=np.float64)
            if r.shape != (self.n_envs,):
                raise ValueError(f"target_ratios must have shape ({self.n_envs},)")
            for x in r:
                check_target_ratio(x)
            self.target_ratio[:] = r
        self.target_samples[:] = self.target_ratio * self.tables.total_samples[self.song]
        self._started = True
        return self._observe(obs_out)

    def step(self, actions: np.ndarray, obs_out: np.ndarray | None = None):
        """-> (obs [E, D], mask [E, 10], reward [E], done [E], finished: list[FinishedEpisode]).

        ``obs`` is a fresh array, or ``obs_out`` (e.g. the next slot of a preallocated rollout
        buffer) filled in place: that skips allocating ~E * D * 4 bytes per step, whose first-touch
        page faults cost more than building the observation itself.
        """
        if not self._started:
            raise RuntimeError("VecBeatEditEnv.step() called before reset()")
        T = self.tables
        a = np.array(actions, dtype=np.int64)  # a copy: the state keeps it, the caller's array stays theirs
        if a.shape != (self.n_envs,):
            raise ValueError(f"actions must have shape ({self.n_envs},), got {a.shape}")
        if a.min() < 0 or a.max() >= N_ACTIONS:
            raise ValueError(f"actions must be in 0..{N_ACTIONS - 1}")
        E, ar = self.n_envs, self._arange
        has_out = self.out_samples > 0
        mask = T.masks(self.song, self.cursor, has_out, self.last, self.loops, self.done, self.out_samples,
                       self.target_samples)
        legal = mask[ar, a]
        if not legal.all():
            if self.cfg.illegal_action == "raise":
                bad = int(np.argmin(legal))
                raise ValueError(f"env {bad}: illegal action {Action(int(a[bad])).name} at beat {self.cursor[bad]}")
            self.illegal_actions += int((~legal).sum())
            stand_in = np.where(mask[:, Action.KEEP], int(Action.KEEP), np.argmax(mask, axis=1))
            a = np.where(legal, a, stand_in)
        c = self.cursor
        base = T.c_base[self.song]
        g = base + c
        dest = T.dests(self.song, c, a)
        self.out_samples += _OUT_MULT[a] * (T.bounds[base + dest] - T.bounds[g])
        self.cursor = dest
        self.loops += _IS_LOOP[a]
        self.last = a
        if self.hist.shape[1]:
            self.hist[:, 1:] = self.hist[:, :-1]
            self.hist[:, 0] = a
        self.decisions[ar, self.t] = a
        self.t += 1
        done = _IS_TERMINAL[a] | (dest >= T.n[self.song])
        self.done = done.copy()  # the auto-reset below clears self.done; the caller gets `done`
        reward = np.zeros(E, dtype=np.float32)
        finished: list[FinishedEpisode] = []
        if done.any():
            idx = np.nonzero(done)[0]
            for e in idx:  # off the hot path: only envs whose episode just finished
                finished.append(self._finish(int(e), reward))
            self._reset_envs(idx)
        obs, mask = self._observe(obs_out)
        return obs, mask, reward, done, finished

    def _finish(self, e: int, reward: np.ndarray) -> FinishedEpisode:
        si = int(self.song[e])
        decisions = self.decisions[e, :self.t[e]].tolist()
        ratio = float(self.target_ratio[e])
        out_samples = int(self.out_samples[e])
        if not self.build_edits:
            return _LazyFinishedEpisode(e, si, None, None, ratio, _builder=(self, si, decisions, ratio, out_samples))
        edit = self._build(si, decisions, ratio, out_samples)
        dense = None
        if self.dense:
            dense = self._dense_reward(self.songs[si], edit, ratio, self.reward_cfg)
            reward[e] = float(dense["total"])
        return FinishedEpisode(e, si, edit, dense, ratio)

    def _build(self, si: int, decisions: list[int], ratio: float, out_samples: int) -> EditResult:
        edit = build_edit(self.songs[si], decisions, self.crossfade_ms, ratio, self.cfg, guarded=True)
        if edit.edl.n_samples != out_samples:
            raise RuntimeError(f"vectorised env bug: env counted {out_samples} output samples, "
                               f"the edit program {edit.edl.n_samples}")
        return edit


class _LazyFinishedEpisode(FinishedEpisode):
    """A FinishedEpisode whose EditResult is built (by the edit program) on first access."""

    def __init__(self, env_index, song_index, edit, dense, target_ratio, _builder):
        self.env_index, self.song_index, self.dense, self.target_ratio = env_index, song_index, dense, target_ratio
        self._builder = _builder

    @cached_property
    def edit(self) -> EditResult:  # type: ignore[override]
        env, si, decisions, ratio, out_samples = self._builder
        return env._build(si, decisions, ratio, out_samples)
