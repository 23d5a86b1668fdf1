"""Run a trained policy through the editing env: song (+ target) -> ``EditResult``.

Used by the PPO monitor, evaluation, the CLI and the MLflow pyfunc. Many (song, target)
jobs are stepped together in one ``VecBeatEditEnv`` (one batched policy forward per
step); each job keeps the first episode its env finishes (the env auto-resets after it,
the extra steps are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from beatedit.editing.actions import N_ACTIONS
from beatedit.config import EnvConfig, RenderConfig
from beatedit.editing.program import EditResult
from beatedit.editing.env import VecBeatEditEnv
from beatedit.audio.song import SongAnalysis

from models.policy import ActorCritic, masked_kl


def finished_mask(finished, n_envs: int) -> np.ndarray:
    """bool [E]: which envs finished an episode this step (from the ``FinishedEpisode`` list, which the
    vectorised env builds before it auto-resets those envs)."""
    done = np.zeros(n_envs, dtype=bool)
    done[[f.env_index for f in finished]] = True
    return done


@dataclass
class PolicyEdit:
    edit: EditResult
    kl: float  # sum over decisions of KL(policy || reference) along the trajectory (0 without a reference)
    n_decisions: int


def song_table(songs: Sequence[SongAnalysis]) -> tuple[list[SongAnalysis], list[int]]:
    """(distinct songs in first-seen order, each job's index into them): one env table for many jobs."""
    uniq: dict[int, int] = {}
    table: list[SongAnalysis] = []
    for s in songs:
        if id(s) not in uniq:
            uniq[id(s)] = len(table)
            table.append(s)
    return table, [uniq[id(s)] for s in songs]


def sample_actions(logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row from log-probabilities [E, A] (probability-0 actions are never drawn)."""
    p = np.exp(logp.astype(np.float64))
    p /= p.sum(1, keepdims=True)
    c = np.cumsum(p, 1)
    u = rng.random(len(p))[:, None]
    hit = c > u
    a = hit.argmax(1)
    none = ~hit.any(1)  # u beyond the last cumulative value by rounding: the last action with p > 0
    if none.any():
        a[none] = (p[none] > 0).cumsum(1).argmax(1)
    return a


@torch.no_grad()
def edit_songs(policy: ActorCritic, songs: Sequence[SongAnalysis], target_ratios: Sequence[float],
               env_cfg: EnvConfig | None = None, greedy: bool = True, rng: np.random.Generator | None = None, *,
               reference: ActorCritic | None = None, render_cfg: RenderConfig | None = None,
               crossfade_ms: float | None = None, device: str | torch.device = "cpu",
               temperature: float = 1.0) -> list[PolicyEdit]:
    """Edit ``songs[i]`` at ``target_ratios[i]`` (same lengths; a song may appear several times).

    ``greedy``: argmax of the masked policy; otherwise sample with ``rng`` (numpy) from the policy's
    distribution at ``temperature`` (logits / temperature; 1 = the policy itself).
    ``reference``: also accumulate the exact per-step KL(policy || reference) along the path.
    ``crossfade_ms`` (or ``render_cfg.crossfade_ms``): the EDL's splice crossfade.
    """
    songs = list(songs)
    if len(songs) != len(target_ratios):
        raise ValueError(f"edit_songs: {len(songs)} songs but {len(target_ratios)} targets")
    if not songs:
        return []
    if not greedy and rng is None:
        rng = np.random.default_rng()
    if not temperature > 0:
        raise ValueError(f"edit_songs: temperature must be > 0, got {temperature}")
    env_cfg = env_cfg or EnvConfig()
    if crossfade_ms is not None:
        render_cfg = RenderConfig(crossfade_ms=float(crossfade_ms))
    table, song_indices = song_table(songs)  # one env per job over the distinct songs
    env = VecBeatEditEnv(table, len(songs), env_cfg, seed=0, render_cfg=render_cfg, dense=False, build_edits=True)
    obs, mask = env.reset(song_indices=song_indices, target_ratios=list(target_ratios))
    was_training = policy.training
    policy.eval()
    out: list[PolicyEdit | None] = [None] * len(songs)
    kl = np.zeros(len(songs))
    steps = np.zeros(len(songs), dtype=np.int64)
    try:
        while any(o is None for o in out):
            o_t = torch.as_tensor(obs, device=device)
            m_t = torch.as_tensor(mask, device=device)
            logp = policy.log_probs(o_t, m_t)
            if reference is not None:
                kl += masked_kl(logp, reference.log_probs(o_t, m_t), m_t).double().cpu().numpy()
            logp_np = logp.float().cpu().numpy()
            actions = logp_np.argmax(1) if greedy else sample_actions(logp_np / temperature, rng)
            steps += 1
            obs, mask, _, _, finished = env.step(actions)
            for f in finished:
                e = f.env_index
                if out[e] is None:
                    out[e] = PolicyEdit(f.edit, float(kl[e]), int(steps[e]))
    finally:
        policy.train(was_training)
    return out  # type: ignore[return-value]


def edit_song(policy: ActorCritic, song: SongAnalysis, target_ratio: float, env_cfg: EnvConfig | None = None,
              greedy: bool = True, rng: np.random.Generator | None = None, *, render_cfg: RenderConfig | None = None,
              crossfade_ms: float | None = None, device: str | torch.device = "cpu") -> EditResult:
    """One edit of ``song`` at ``target_ratio`` by the policy (greedy by default)."""
    return edit_songs(policy, [song], [target_ratio], env_cfg, greedy, rng, render_cfg=render_cfg,
                      crossfade_ms=crossfade_ms, device=device)[0].edit


# ---------------------------------------------------------------------- replaying known edits
def decisions_from_beat_actions(song: SongAnalysis, beat_actions: Sequence[int], env_cfg: EnvConfig | None = None
                                ) -> list[int]:
    """Recover an edit's decision sequence from its per-source-beat actions.

    ``beat_actions[i]`` is the action that governed source beat ``i`` (``beatedit.editing.actions``),
    and the action chosen with the cursor on beat ``c`` governs beat ``c`` itself (END
    governs the beats after the edit's end). So, replaying with the edit program: the
    decision at cursor ``c`` is ``beat_actions[c]``; it moves the cursor, and so on until
    the episode ends. The replay must reproduce ``beat_actions`` exactly, else ``ValueError``.
    """
    from beatedit.editing.program import EditState, _apply_inplace, song_grid

    env_cfg = env_cfg or EnvConfig()
    ba = np.asarray(beat_actions, dtype=np.int64)
    g = song_grid(song)
    if len(ba) != g.n:
        raise ValueError(f"song {song.song_id}: {len(ba)} beat actions for {g.n} beats")
    s = EditState()
    while not s.done:
        if s.cursor >= g.n:
            raise ValueError(f"song {song.song_id}: beat actions run past the song's end")
        _apply_inplace(g, s, int(ba[s.cursor]), env_cfg.max_loops_per_episode)
    if not np.array_equal(np.asarray(s.beat_actions, dtype=np.int64), ba):
        raise ValueError(f"song {song.song_id}: beat actions are not the trace of any decision sequence "
                         f"(first mismatch at beat {int(np.argmax(np.asarray(s.beat_actions) != ba))})")
    return list(s.decisions)


def replay_trajectories(songs: Sequence[SongAnalysis], target_ratios: Sequence[float],
                        decisions: Sequence[Sequence[int]], env_cfg: EnvConfig | None = None,
                        env: VecBeatEditEnv | None = None, song_indices: Sequence[int] | None = None
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(obs [n_k, D] float32, mask [n_k, 10] bool) seen along each known decision list.

    Stepped together in one ``VecBeatEditEnv`` (pass ``env`` + ``song_indices`` to reuse
    one built over a song table; its ``n_envs`` must equal the number of jobs). Every
    decision must be legal where it is taken and the last one must end the episode.
    """
    n = len(decisions)
    if not (len(target_ratios) == n and (env is not None or len(songs) == n)):
        raise ValueError("replay_trajectories: songs, targets and decision lists must have the same length")
    if n == 0:
        return []
    if env is None:
        table, song_indices = song_table(songs)
        env = VecBeatEditEnv(table, n, env_cfg or EnvConfig(), seed=0, dense=False, build_edits=False)
    elif env.n_envs != n or song_indices is None:
        raise ValueError(f"replay_trajectories: env has {env.n_envs} envs for {n} jobs (and needs song_indices)")
    lens = np.array([len(d) for d in decisions], dtype=np.int64)
    T = int(lens.max())
    acts = np.zeros((n, T), dtype=np.int64)  # KEEP after a job's end: always legal in the auto-reset episode
    for k, d in enumerate(decisions):
        acts[k, :len(d)] = d
    obs_buf = np.empty((T, n, env.obs_dim), dtype=np.float32)
    mask_buf = np.empty((T, n, N_ACTIONS), dtype=bool)
    obs, mask = env.reset(song_indices=list(song_indices), target_ratios=list(target_ratios))
    ar = np.arange(n)
    for t in range(T):
        obs_buf[t], mask_buf[t] = obs, mask
        live = t < lens
        if not mask[ar[live], acts[live, t]].all():
            k = int(ar[live][~mask[ar[live], acts[live, t]]][0])
            raise ValueError(f"replay: decision {t} ({acts[k, t]}) of job {k} is illegal there")
        obs, mask, _, _, finished = env.step(acts[:, t])
        done = finished_mask(finished, n)
        ending = live & (t == lens - 1)
        if (done[ending] == False).any() or (done[live & (t < lens - 1)]).any():  # noqa: E712
            raise ValueError("replay: a decision list does not end exactly where its episode ends")
    return [(obs_buf[:lens[k], k].copy(), mask_buf[:lens[k], k].copy()) for k in range(n)]
