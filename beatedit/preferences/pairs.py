"""Preference pairs for the reward model: candidate edits per song, labelled by the simulated listener.

Per song (``song_pairs``, one call per song so a Prefect flow can map over songs):

1. ``targets_per_song`` edit targets are drawn in ``[env.target_min, env.target_max]``.
2. For each target, candidate edits (``generate_candidates``), each tagged with a ``kind``:
   - ``random``          ``editors.random_decisions`` (valid, length-aware, musically careless);
   - ``heuristic``       ``editors.heuristic_decisions`` at the target, and at targets a few
                         points off it (variations that are still good edits);
   - ``shifted_cut``     a good edit whose dropped span (one cut) is moved 1-2 beats, so both
                         of its splices land off the bar line (same length);
   - ``off_bar_splice``  a good edit with a short extra cut (1-3 beats) starting mid-bar,
                         the lost length put back by starting a later cut as much later;
   - ``over_loop``       a good edit with 3-6 loops / repeats added (LOOP_BEAT, LOOP_BAR,
                         REPEAT_PHRASE) and its ending moved earlier to stay near the target;
   - ``wrong_length``    the heuristic edit for a target 0.07-0.3 away (too long or too short
                         for this one; the near misses teach the reward model that overshooting
                         the target costs as much as undershooting it);
   - ``tail_fade``       ``editors.fade_decisions`` (the song from its start, faded out over one
                         bar) for a target up to 0.15 off this one: no splices, so pairs of two
                         of them differ in length (and lost material) alone;
   - ``search``          ``editors.search_decisions`` (the classical beat-level search: the song's
                         start and real ending, bar-line cuts, within one beat of the target), at
                         the target and at targets a few points off it;
   - ``structural``      whole sections in the song's order, always the first (intro) and the last
                         (outro), a random choice of the ones between whose length comes closest
                         to the target: the "intro + chorus + outro" edits editors make by hand;
   - ``policy``          ``sampler(song, target_ratio, rng) -> decisions`` when a sampler is
                         passed (e.g. the current policy).
   "Good edits" are the heuristic and search edits at the target (and policy samples when present).
   Perturbed edits are re-encoded from a per-beat plan with one canonical encoder
   (``encode_plan``: a dropped run uses CUT_TO_NEXT_PHRASE / CUT_TO_NEXT_BAR when it spans
   to that boundary, else CUT) so action ids carry no kind-specific fingerprint the reward
   model could learn instead of the music.
3. Every candidate gets the listener's gold score (``listener.score_edit``; with the mono
   source audio when given, so seams are judged on the rendered audio).
4. ``pairs_per_song`` pairs of distinct in-distribution candidates of the same target, in
   random A/B order, each labelled with ``listener.prefer`` (Bradley-Terry with the
   listener's ``noise``; ``preferences.use_listener_noise: false`` makes it the gold
   ordering, exact ties recorded as 0.5). Then ``ood_pairs_per_song`` pairs where at least
   one edit is of a held-out kind (``preferences.ood_kinds``): column ``ood`` is True, and
   the reward stage uses them only for evaluation, on any split.

Split: by song, never by pair: ``split_of(song_id)`` hashes ``"{split_seed}:{song_id}"``
(sha256) to a number in [0, 1) and cuts it at the cumulative ``split_fractions``. A song's
split depends only on its own id and the seed, so adding songs (or human votes) never moves
an existing song between train and validation.

Pair table (``merge_pairs``): the columns of ``beatedit.preferences.schema``, shared with the
human export (``beatedit.feedback.export``) so simulated and human rows concatenate as they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from beatedit.judging import listener
from beatedit.editing.actions import Action
from beatedit.config import CANDIDATE_KINDS, Config, EnvConfig
from beatedit.editing.program import EditResult, EditState, action_mask, apply_action, build_edit, song_grid
from beatedit.editing.editors import fade_decisions, heuristic_decisions, random_decisions
from beatedit.editing.search import search_decisions
from beatedit.audio.song import SongAnalysis
from beatedit.preferences.schema import COLUMN_NAMES, HUMAN_REQUIRED, HUMAN_UNKNOWN

SPLITS = ("train", "validation", "promotion")  # promotion: the champion/challenger decision's songs (was "test")
LEGACY_SPLITS = {"test": "promotion"}  # splits.csv written before the rename
Sampler = Callable[[SongAnalysis, float, np.random.Generator], Sequence[int]]


class PreferenceDataError(ValueError):
    """A human-vote file or pair table that cannot be used; the message names the file and the problem."""


# ----------------------------------------------------------------------------- split
def split_of(song_id: str, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> str:
    """'train' | 'validation' | 'promotion' for one song, from sha256(f"{seed}:{song_id}") alone."""
    u = int(hashlib.sha256(f"{seed}:{song_id}".encode()).hexdigest()[:15], 16) / 16 ** 15
    edges = np.cumsum(fractions)
    for name, edge in zip(SPLITS, edges):
        if u < edge:
            return name
    return SPLITS[-1]


def split_songs(song_ids: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict[str, str]:
    return {s: split_of(s, fractions, seed) for s in song_ids}


def song_rng(song_id: str, seed: int) -> np.random.Generator:
    """A generator seeded from (seed, song id): per-song results do not depend on mapping order."""
    return np.random.default_rng(int(hashlib.sha256(f"{seed}:{song_id}".encode()).hexdigest()[:16], 16))


# ----------------------------------------------------------------------------- plans and encoding
@dataclass
class Plan:
    """A per-beat description of an edit: which source beats are heard, loops, and how it ends."""

    keep: np.ndarray  # bool [n]: the beat is heard
    loops: dict[int, int]  # beat -> LOOP_BEAT / LOOP_BAR / REPEAT_PHRASE started there
    fade_in_at: int | None  # beat that fades in (first heard beat), or None
    fade_out_at: int | None  # beat where FADE_OUT starts, or None
    end_at: int | None  # beat where END is taken (edit stops before it), or None


def plan_of(song: SongAnalysis, decisions: Sequence[int]) -> Plan:
    """Replay ``decisions`` and describe the edit per beat."""
    g = song_grid(song)
    keep = np.zeros(g.n, bool)
    loops: dict[int, int] = {}
    fade_in = fade_out = end = None
    c = 0
    for a in decisions:
        a = int(a)
        if a in (Action.KEEP, Action.FADE_IN, Action.LOOP_BEAT):
            keep[c] = True
            if a == Action.LOOP_BEAT:
                loops[c] = a
            if a == Action.FADE_IN:
                fade_in = c
            c += 1
        elif a == Action.CUT:
            c += 1
        elif a == Action.CUT_TO_NEXT_BAR:
            c = int(g.next_bar[c])
        elif a == Action.CUT_TO_NEXT_PHRASE:
            c = int(g.next_phrase[c])
        elif a in (Action.LOOP_BAR, Action.REPEAT_PHRASE):
            dest = int(g.next_bar[c] if a == Action.LOOP_BAR else g.next_phrase[c])
            keep[c:dest] = True
            loops[c] = a
            c = dest
        elif a == Action.FADE_OUT:
            fade_out = c
            keep[c:int(g.fade_end[c])] = True
            break
        else:  # END
            end = c
            break
    return Plan(keep, loops, fade_in, fade_out, end)


#: the mask a plan is encoded under: a plan may skip the intro (the policy may not: ``EnvConfig.keep_start``), so
#: the reward model still sees what a lost start costs
PLAN_ENV = EnvConfig(keep_start=False)


def encode_plan(song: SongAnalysis, plan: Plan) -> list[int]:
    """Canonical legal decisions for a plan (illegal wishes degrade to KEEP / CUT, never fail)."""
    g = song_grid(song)
    keep = plan.keep
    n = g.n
    # first dropped-run end after each beat: a run [c, e) can be skipped whole if e is a bar/phrase start
    next_kept = np.full(n + 1, n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        next_kept[i] = i if keep[i] else next_kept[i + 1]
    stop = min(x for x in (plan.fade_out_at, plan.end_at, n) if x is not None)
    s = EditState()
    while not s.done:
        c = s.cursor
        m = action_mask(song, s, PLAN_ENV)
        if c == plan.fade_out_at and m[Action.FADE_OUT]:
            a = Action.FADE_OUT
        elif c == plan.end_at and m[Action.END]:
            a = Action.END
        elif c >= stop:  # the planned ending was not legal here: close as soon as possible
            a = Action.END if m[Action.END] else Action.FADE_OUT if m[Action.FADE_OUT] else Action.KEEP
        elif keep[c]:
            if c in plan.loops and m[plan.loops[c]]:
                a = plan.loops[c]
            elif c == plan.fade_in_at and m[Action.FADE_IN]:
                a = Action.FADE_IN
            else:
                a = Action.KEEP
        else:
            e = min(int(next_kept[c]), stop)
            if g.next_phrase[c] >= 0 and g.next_phrase[c] <= e and m[Action.CUT_TO_NEXT_PHRASE]:
                a = Action.CUT_TO_NEXT_PHRASE
            elif g.next_bar[c] >= 0 and g.next_bar[c] <= e and m[Action.CUT_TO_NEXT_BAR]:
                a = Action.CUT_TO_NEXT_BAR
            elif m[Action.CUT]:
                a = Action.CUT
            else:
                a = Action.KEEP
        s = apply_action(song, s, int(a))
    return list(s.decisions)


# ----------------------------------------------------------------------------- structural edits
def structural(song: SongAnalysis, target_ratio: float, rng: np.random.Generator, tries: int = 64) -> Plan | None:
    """Whole sections in order: the first and the last always, a random subset of the ones between
    (``tries`` draws) whose total comes closest to the target. Cuts fall on section starts."""
    n = song.n_beats
    starts = sorted({0, *(int(x) for x in song.section_starts if 0 < x < n)})
    if len(starts) < 3:
        return None
    bounds = np.asarray(song.beat_bounds, dtype=np.float64)
    spans = list(zip(starts, starts[1:] + [n]))
    secs = np.array([bounds[b] - bounds[a] for a, b in spans])
    target = target_ratio * float(song.duration)
    inner = np.arange(1, len(spans) - 1)
    best, best_err = None, np.inf
    for _ in range(tries):
        pick = inner[rng.random(len(inner)) < rng.uniform(0.2, 0.8)]
        chosen = np.concatenate([[0], pick, [len(spans) - 1]]).astype(int)
        err = abs(secs[chosen].sum() - target)
        if err < best_err:
            best, best_err = chosen, err
    keep = np.zeros(n, dtype=bool)
    for k in best:
        a, b = spans[int(k)]
        keep[a:b] = True
    return Plan(keep, {}, None, None, None)


# ----------------------------------------------------------------------------- perturbations
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _interior_drops(plan: Plan, n: int) -> list[tuple[int, int]]:
    stop = min(x for x in (plan.fade_out_at, plan.end_at, n) if x is not None)
    first = int(np.argmax(plan.keep)) if plan.keep.any() else n
    return [(a, b) for a, b in _runs(~plan.keep[:stop]) if a > first and b < stop]


def shifted_cut(song: SongAnalysis, plan: Plan, rng: np.random.Generator) -> Plan | None:
    """Move one dropped span by 1-2 beats (either way): same length, both splices off the bar line."""
    drops = _interior_drops(plan, song.n_beats)
    if not drops:
        return None
    a, b = drops[rng.integers(len(drops))]
    delta = int(rng.choice([-2, -1, 1, 2]))
    stop = min(x for x in (plan.fade_out_at, plan.end_at, song.n_beats) if x is not None)
    if a + delta <= 0 or b + delta >= stop:
        delta = -delta
        if a + delta <= 0 or b + delta >= stop:
            return None
    keep = plan.keep.copy()
    keep[a:b] = True
    keep[a + delta:b + delta] = False
    return Plan(keep, {k: v for k, v in plan.loops.items() if keep[k]}, plan.fade_in_at, plan.fade_out_at, plan.end_at)


def off_bar_splice(song: SongAnalysis, plan: Plan, rng: np.random.Generator) -> Plan | None:
    """Cut 1-3 beats starting mid-bar inside kept material; give the length back at another cut's start."""
    n = song.n_beats
    stop = min(x for x in (plan.fade_out_at, plan.end_at, n) if x is not None)
    bib = np.asarray(song.beat_in_bar)
    k = int(rng.integers(1, 4))
    cand = [i for i in range(1, stop - k) if bib[i] != 0 and plan.keep[i - 1:i + k + 1].all() and i not in plan.loops]
    if not cand:
        return None
    i = int(cand[rng.integers(len(cand))])
    keep = plan.keep.copy()
    keep[i:i + k] = False
    drops = [(a, b) for a, b in _interior_drops(plan, n) if b - a > k]
    if drops:  # restore the same number of beats at the start of another dropped span
        a, _ = drops[rng.integers(len(drops))]
        keep[a:a + k] = True
    return Plan(keep, dict(plan.loops), plan.fade_in_at, plan.fade_out_at, plan.end_at)


def over_loop(song: SongAnalysis, plan: Plan, rng: np.random.Generator) -> Plan | None:
    """Add 3-6 loops / repeats on kept material and end earlier by about the added length."""
    g = song_grid(song)
    n = g.n
    stop = min(x for x in (plan.fade_out_at, plan.end_at, n) if x is not None)
    loops = dict(plan.loops)
    want = int(rng.integers(3, 7))
    added = 0
    kept_idx = np.flatnonzero(plan.keep[:stop])
    covered = np.zeros(n + 1, bool)  # beats already inside a loop span
    for k0, a0 in loops.items():
        covered[k0:k0 + 1 if a0 == Action.LOOP_BEAT else int(g.next_bar[k0] if a0 == Action.LOOP_BAR else g.next_phrase[k0])] = True
    for _ in range(8 * want):
        if want == 0 or len(kept_idx) == 0:
            break
        c = int(kept_idx[rng.integers(len(kept_idx))])
        if c in loops:
            continue
        options = [(Action.LOOP_BEAT, c + 1)]
        if g.loop_bar_ok[c]:
            options.append((Action.LOOP_BAR, int(g.next_bar[c])))
        if g.repeat_phrase_ok[c]:
            options.append((Action.REPEAT_PHRASE, int(g.next_phrase[c])))
        a, dest = options[rng.integers(len(options))]
        if dest > stop or not plan.keep[c:dest].all() or covered[c:dest].any():
            continue
        covered[c:dest] = True
        loops[int(c)] = int(a)
        added += dest - c
        want -= 1
    if len(loops) == len(plan.loops):
        return None
    keep = plan.keep.copy()
    new_stop = stop
    kept_after = np.flatnonzero(keep[:stop])
    if added and len(kept_after) > added:  # end `added` kept beats earlier, on a bar start
        cut_from = int(kept_after[-added])
        bars = np.flatnonzero(g.is_bar_start[:n])
        bars = bars[bars <= cut_from]
        new_stop = int(bars[-1]) if len(bars) and bars[-1] > kept_after[0] else cut_from
        loops = {k: v for k, v in loops.items() if k < new_stop}
        keep[new_stop:] = False
    fade = new_stop if plan.fade_out_at is not None else None
    end = new_stop if plan.fade_out_at is None else None
    if fade is not None:
        keep[new_stop:int(g.fade_end[new_stop]) if new_stop < n else n] = True
    return Plan(keep, loops, plan.fade_in_at, fade, end)


# ----------------------------------------------------------------------------- candidates
@dataclass
class Candidate:
    kind: str
    decisions: list[int]
    edit: EditResult
    target_ratio: float
    gold: float = float("nan")


def _kind_counts(cfg: Config, n_total: int, with_policy: bool) -> dict[str, int]:
    pc = cfg.preferences
    weights = {k: getattr(pc, f"weight_{k}") for k in CANDIDATE_KINDS}
    if not with_policy:
        weights["policy"] = 0.0
    ind = {k: w for k, w in weights.items() if k not in pc.ood_kinds and w > 0}
    ood = {k: w for k, w in weights.items() if k in pc.ood_kinds and w > 0}
    total_w = sum(ind.values())
    if total_w <= 0:
        raise ValueError("preferences: every in-distribution candidate kind has weight 0")
    counts = {k: max(1, int(round(n_total * w / total_w))) for k, w in ind.items()}
    counts.update({k: max(1, int(round(n_total * w / total_w))) for k, w in ood.items()})
    return counts


def generate_candidates(song: SongAnalysis, target_ratio: float, cfg: Config, rng: np.random.Generator,
                        n_candidates: int, sampler: Sampler | None = None) -> list[Candidate]:
    """Distinct candidate edits of one song for one target, tagged by kind (see the module docstring)."""
    xf, env = cfg.render.crossfade_ms, cfg.env
    counts = _kind_counts(cfg, n_candidates, sampler is not None)
    out: list[Candidate] = []
    seen: set[tuple] = set()

    def add(kind: str, decisions: Sequence[int] | None) -> bool:
        if decisions is None:
            return False
        key = tuple(int(d) for d in decisions)
        if key in seen:
            return False
        edit = build_edit(song, key, xf, target_ratio, env)
        seen.add(key)
        out.append(Candidate(kind, list(key), edit, target_ratio))
        return True

    good = heuristic_decisions(song, target_ratio, env)
    goods = [good]
    add("heuristic", good)
    if counts.get("search", 0):
        best = search_decisions(song, target_ratio, env)
        goods.append(best)
        add("search", best)
    if sampler is not None:
        for _ in range(4 * counts.get("policy", 0)):
            if sum(c.kind == "policy" for c in out) >= counts["policy"]:
                break
            d = list(sampler(song, target_ratio, rng))
            if add("policy", d):
                goods.append(d)
    lo, hi = 0.05, 1.0

    def variant(kind: str) -> Sequence[int] | None:
        base = plan_of(song, goods[rng.integers(len(goods))])
        if kind == "random":
            return random_decisions(song, target_ratio, rng, env)
        if kind == "heuristic":
            t = float(np.clip(target_ratio + rng.choice([-1, 1]) * rng.uniform(0.02, 0.06), lo, hi))
            return heuristic_decisions(song, t, env)
        if kind == "search":
            t = float(np.clip(target_ratio + rng.choice([-1, 1]) * rng.uniform(0.02, 0.06), lo, hi))
            return search_decisions(song, t, env)
        if kind == "structural":
            p = structural(song, target_ratio, rng)
            return encode_plan(song, p) if p is not None else None
        if kind == "tail_fade":
            t = float(np.clip(target_ratio + rng.uniform(-0.15, 0.15), lo, hi))
            return fade_decisions(song, t, env)
        if kind == "wrong_length":
            t = target_ratio + rng.choice([-1, 1]) * rng.uniform(0.07, 0.3)
            if not lo <= t <= hi:
                t = target_ratio - (t - target_ratio)
            return heuristic_decisions(song, float(np.clip(t, lo, hi)), env)
        fn = {"shifted_cut": shifted_cut, "off_bar_splice": off_bar_splice, "over_loop": over_loop}[kind]
        p = fn(song, base, rng)
        return encode_plan(song, p) if p is not None else None

    for kind, k in counts.items():
        if kind == "policy":
            continue
        have = sum(c.kind == kind for c in out)
        for _ in range(6 * k):
            if have >= k:
                break
            have += add(kind, variant(kind))
    return out


def _score(song: SongAnalysis, cands: list[Candidate], audio_mono, sr, cfg: Config) -> None:
    for c in cands:
        c.gold = float(listener.score_edit(song, c.edit, c.target_ratio, audio=audio_mono, sr=sr, cfg=cfg.listener)["total"])


def _row(song: SongAnalysis, split: str, a: Candidate, b: Candidate, cfg: Config, rng: np.random.Generator, ood: bool) -> dict:
    noise = cfg.listener.noise if cfg.preferences.use_listener_noise else 0.0
    choice, p_a = listener.prefer(a.gold, b.gold, noise, rng)
    choice_f = 0.5 if (noise == 0 and p_a == 0.5) else float(choice)
    dur = song.duration
    return {
        "song_id": song.song_id, "split": split, "edl_a": a.edit.edl.to_json(), "edl_b": b.edit.edl.to_json(),
        "actions_a": a.edit.beat_actions.astype(np.int64).tolist(), "actions_b": b.edit.beat_actions.astype(np.int64).tolist(),
        "target_ratio": float(a.target_ratio), "choice": choice_f, "strength": abs(p_a - 0.5) * 2, "p_a": float(p_a),
        "gold_a": a.gold, "gold_b": b.gold, "kind_a": a.kind, "kind_b": b.kind,
        "rater": f"listener(noise={noise:g})", "source": "simulated", "timestamp": pd.NaT, "ood": bool(ood),
        "ratio_a": a.edit.duration / dur, "ratio_b": b.edit.duration / dur,
    }


def song_pairs(song: SongAnalysis, audio_mono: np.ndarray | None, sr: int | None, cfg_all: Config,
               rng: np.random.Generator | None = None, split: str | None = None, sampler: Sampler | None = None) -> list[dict]:
    """All labelled pairs of one song (rows of the pair table). ``rng`` defaults to ``song_rng(song_id, seed)``,
    ``split`` to ``split_of(song_id)``."""
    pc = cfg_all.preferences
    rng = rng if rng is not None else song_rng(song.song_id, pc.seed)
    split = split or split_of(song.song_id, pc.split_fractions, pc.split_seed)
    rows: list[dict] = []
    per_target = max(4, pc.candidates_per_song // pc.targets_per_song)
    n_in = [pc.pairs_per_song // pc.targets_per_song + (k < pc.pairs_per_song % pc.targets_per_song)
            for k in range(pc.targets_per_song)]
    n_ood = [pc.ood_pairs_per_song // pc.targets_per_song + (k < pc.ood_pairs_per_song % pc.targets_per_song)
             for k in range(pc.targets_per_song)]
    for k in range(pc.targets_per_song):
        target = float(rng.uniform(cfg_all.env.target_min, cfg_all.env.target_max))
        cands = generate_candidates(song, target, cfg_all, rng, per_target, sampler)
        _score(song, cands, audio_mono, sr, cfg_all)
        ind = [c for c in cands if c.kind not in pc.ood_kinds]
        ood = [c for c in cands if c.kind in pc.ood_kinds]
        all_pairs = [(i, j) for i in range(len(ind)) for j in range(i + 1, len(ind))]
        for t in rng.permutation(len(all_pairs))[:n_in[k]]:
            i, j = all_pairs[t]
            a, b = (ind[i], ind[j]) if rng.random() < 0.5 else (ind[j], ind[i])
            rows.append(_row(song, split, a, b, cfg_all, rng, ood=False))
        if ood and n_ood[k]:
            pool = ind + ood
            ood_pairs = [(o, p) for o in ood for p in pool if p is not o]
            for t in rng.permutation(len(ood_pairs))[:n_ood[k]]:
                a, b = ood_pairs[t]
                if rng.random() < 0.5:
                    a, b = b, a
                rows.append(_row(song, split, a, b, cfg_all, rng, ood=True))
    return rows


# ----------------------------------------------------------------------------- merging
def load_human_votes(path: str | Path, cfg_all: Config | None = None) -> pd.DataFrame:
    """Human A/B votes (same table; source=human). Split: ``preferences.human_split`` ("train": every human pair
    trains the reward model; "by_song": recomputed from the song id like simulated rows).

    Beyond ``HUMAN_REQUIRED`` a hand-written file may leave columns out: ``p_a`` / ``strength`` then follow
    from the choice, the rest take placeholders and ``HUMAN_UNKNOWN``.
    """
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise PreferenceDataError(f"{path}: unreadable human votes ({exc})") from exc
    missing = [c for c in HUMAN_REQUIRED if c not in df.columns]
    if missing:
        raise PreferenceDataError(f"{path}: human votes lack column(s) {missing}")
    bad = ~df["choice"].isin([0, 1, 0.5])
    if bad.any():
        raise PreferenceDataError(f"{path}: row(s) {np.flatnonzero(bad.to_numpy())[:5].tolist()} have a choice outside 0, 1, 0.5")
    pc = (cfg_all or Config()).preferences
    df = df.copy()
    if pc.human_split == "train":  # votes on the listening set (held-out songs) still teach the next reward model
        df["split"] = "train"
    else:
        df["split"] = [split_of(s, pc.split_fractions, pc.split_seed) for s in df["song_id"]]
    df["source"] = "human"
    df["choice"] = df["choice"].astype(float)
    if "p_a" not in df.columns:
        df["p_a"] = np.where(df["choice"] == 0.5, 0.5, 1.0 - df["choice"])
    if "strength" not in df.columns:
        df["strength"] = (df["p_a"] - 0.5).abs() * 2
    defaults = {"edl_a": "", "edl_b": "", "kind_a": "human", "kind_b": "human", "rater": "unknown", "timestamp": pd.NaT,
                **HUMAN_UNKNOWN}
    for col, v in defaults.items():
        if col not in df.columns:
            df[col] = v
    return df


def merge_pairs(list_of_lists: Sequence[Sequence[dict]], human_path: str | Path | None = None,
                cfg_all: Config | None = None) -> pd.DataFrame:
    """One pair table from per-song row lists (+ human votes when ``human_path`` exists)."""
    rows = [r for rows in list_of_lists for r in rows]
    df = pd.DataFrame(rows, columns=list(COLUMN_NAMES))
    if human_path is not None and Path(human_path).exists():
        human = load_human_votes(human_path, cfg_all)[list(COLUMN_NAMES)]
        if len(human):  # the committed table is empty until votes are exported: nothing to add
            df = pd.concat([df, human], ignore_index=True) if len(df) else human.reset_index(drop=True)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    df["choice"] = df["choice"].astype(float)
    df["ood"] = df["ood"].astype(bool)
    return df


def drop_human_rows_without_features(df: pd.DataFrame, has_features: Callable[[str], bool]) -> tuple[pd.DataFrame, int]:
    """(the table without human pairs whose song has no beat features anywhere, how many were left out): a vote on a
    song nobody analysed (an upload exported without its analysis) cannot train a reward model that reads features."""
    if not len(df):
        return df, 0
    human = df["source"] == "human"
    missing = {s for s in set(df.loc[human, "song_id"]) if not has_features(s)}
    drop = human & df["song_id"].isin(missing)
    return df[~drop].reset_index(drop=True), int(drop.sum())


def preference_metrics(df: pd.DataFrame) -> dict:
    """Counts for ``metrics/preferences.json``: per source, split, kind; songs per split; label statistics."""
    m: dict = {"n_pairs": int(len(df)), "n_songs": int(df["song_id"].nunique()) if len(df) else 0}
    for col in ("source", "split"):
        m.update({f"pairs_{col}_{k}": int(v) for k, v in df[col].value_counts().sort_index().items()})
    for split in SPLITS:
        m[f"songs_{split}"] = int(df.loc[df["split"] == split, "song_id"].nunique())
        m[f"pairs_{split}_ood"] = int((df["ood"] & (df["split"] == split)).sum())
    kinds = pd.concat([df["kind_a"], df["kind_b"]]).value_counts().sort_index()
    m.update({f"edits_kind_{k}": int(v) for k, v in kinds.items()})
    m["pairs_ood"] = int(df["ood"].sum())
    m["tie_fraction"] = float((df["choice"] == 0.5).mean()) if len(df) else 0.0
    m["a_preferred_fraction"] = float((df["choice"] == 0).mean()) if len(df) else 0.0
    m["mean_strength"] = float(df["strength"].mean()) if len(df) else 0.0
    sim = df[df["source"] == "simulated"]
    if len(sim):
        gold_order = np.sign(sim["gold_a"] - sim["gold_b"])
        strict = (sim["choice"] != 0.5) & (gold_order != 0)
        agree = (gold_order[strict] == np.where(sim["choice"][strict] == 0, 1, -1)).mean() if strict.any() else float("nan")
        m["listener_noise_agreement"] = float(agree)  # share of simulated choices that follow the gold ordering
    return m
