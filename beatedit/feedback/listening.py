"""The pipeline's listening set: blind A/B pairs of held-out edits for the feedback page.

The evaluate stage calls ``build_listening_set`` on its results table (one row per
(song, target, editor), with the EDL, the per-beat actions and the learned reward). Every pair
puts the evaluation's *candidate* against one opponent on the same (song, target): the champion
(when the registry had one), the search editor, the radio fade and the heuristic.

Which pairs (``select_listening_pairs``): the songs whose closest candidate pair has the smallest
reward margin ``|r_a - r_b|`` (the reward model is least sure there: the queue's active learning,
``beatedit.feedback.queue``), at most ``n_songs`` of them; in those songs, every candidate-vs-champion
pair first, then the other pairs by ascending margin, up to ``max_pairs``. So the candidate and the
champion are always among them, and the rest is where a human vote teaches the reward model most.

What it writes (``out_dir``)::

    pairs.json                      the manifest (``write_pair_manifest``), with each pair's original
    <song>/original.wav             the unedited song, for reference on the page
    <song>/<k>_<editor>.wav + .edl.json   one render per (target k, editor), ``write_edit``

The page never shows file names, kinds or models (audio goes through issue tokens); A and B are
swapped at random per rater and issue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from beatedit.editing.edl import EDL

from .queue import MANIFEST_NAME, pair_from_renders, write_pair_manifest

CANDIDATE = "candidate"
OPPONENTS = ("champion", "search", "fade", "heuristic")
REQUIRED_COLUMNS = ("song_id", "item", "editor", "target_ratio", "edl", "beat_actions")


def seam_times(edl: EDL | str) -> list[float]:
    """Output time (seconds) of every splice of an edit: where a listener should check the seam."""
    e = EDL.from_json(edl) if isinstance(edl, str) else edl
    return [round(p / e.source_sr, 3) for p in e.splice_positions()]


def _margin(a: pd.Series, b: pd.Series) -> float | None:
    if "learned_reward" not in a.index or pd.isna(a["learned_reward"]) or pd.isna(b["learned_reward"]):
        return None
    return abs(float(a["learned_reward"]) - float(b["learned_reward"]))


def select_listening_pairs(df: pd.DataFrame, n_songs: int, max_pairs: int, opponents: Sequence[str] = OPPONENTS) -> list[dict]:
    """Candidate-vs-opponent pairs to render: ``[{song_id, item, a: row, b: row, margin}]`` (a = candidate).

    ``df`` is the evaluate stage's results table. Raises ValueError naming a missing column."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"evaluation results lack column(s) {missing} needed for the listening set")
    if n_songs < 1 or max_pairs < 1:
        return []
    pairs = []
    for item, g in df.groupby("item", sort=True):
        by = {r["editor"]: r for _, r in g.iterrows()}
        if CANDIDATE not in by:
            continue
        seen = {by[CANDIDATE]["edl"]}  # an opponent that made the same edit (or one already paired) teaches nothing
        for opp in opponents:
            if opp in by and by[opp]["edl"] not in seen:
                seen.add(by[opp]["edl"])
                pairs.append({"song_id": by[CANDIDATE]["song_id"], "item": item, "opponent": opp, "a": by[CANDIDATE], "b": by[opp],
                              "margin": _margin(by[CANDIDATE], by[opp])})
    if not pairs:
        return []
    inf = float("inf")
    key = lambda p: (p["margin"] if p["margin"] is not None else inf, p["item"], p["opponent"])  # noqa: E731
    song_rank: dict[str, float] = {}
    for p in pairs:
        song_rank[p["song_id"]] = min(song_rank.get(p["song_id"], inf), key(p)[0])
    songs = sorted(song_rank, key=lambda s: (song_rank[s], s))[:n_songs]
    mine = [p for p in pairs if p["song_id"] in songs]
    champion = sorted((p for p in mine if p["opponent"] == "champion"), key=key)
    rest = sorted((p for p in mine if p["opponent"] != "champion"), key=key)
    return (champion + rest)[:max_pairs]


def _pair_id(song_id: str, k: int, opponent: str, edl_a: str, edl_b: str) -> str:
    """Content-addressed and readable: a re-rendered pair with other edits gets a new id (the store refuses reused ids)."""
    import hashlib

    h = hashlib.sha256(json.dumps([song_id, edl_a, edl_b]).encode()).hexdigest()[:12]
    return f"{_slug(song_id)[:40]}-{k}-{_slug(opponent)[:16]}-{h}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80] or "song"


def build_listening_set(df: pd.DataFrame, sources: Mapping[str, str], out_dir: str | Path, *, n_songs: int, max_pairs: int,
                        render_cfg=None, models: Mapping[str, str] | None = None, split: str | None = None) -> dict:
    """Render the chosen pairs into ``out_dir`` and write its ``pairs.json``; returns a summary
    ``{pairs, songs, renders, kinds}``. ``sources[song_id]`` is the song's audio file (the
    renderer's source and the page's original). ``models[editor]`` names the model version
    recorded (never shown) for an editor. An existing ``out_dir`` is replaced file by file and
    its manifest rewritten, so a re-run never serves stale pairs."""
    from beatedit.audio.io import load_audio, write_wav
    from beatedit.editing.render import write_edit

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select_listening_pairs(df, n_songs, max_pairs)
    models = dict(models or {})
    rendered: dict[tuple[str, str], str] = {}
    item_index: dict[str, int] = {}
    records, songs = [], {}
    for p in chosen:
        song_id = p["song_id"]
        if song_id not in sources:
            raise ValueError(f"{song_id}: no source audio for the listening set")
        folder = _slug(song_id)
        if song_id not in songs:
            source, sr = load_audio(sources[song_id])
            (out / folder).mkdir(parents=True, exist_ok=True)
            write_wav(out / folder / "original.wav", source, sr)
            songs[song_id] = source
        k = item_index.setdefault(p["item"], sum(1 for it in item_index if it.startswith(f"{song_id}@")))
        for row in (p["a"], p["b"]):
            key = (p["item"], row["editor"])
            if key not in rendered:
                rel = f"{folder}/{k}_{row['editor']}.wav"
                write_edit(EDL.from_json(row["edl"]), out / rel, source=songs[song_id], cfg=render_cfg)
                rendered[key] = rel
        a, b = p["a"], p["b"]
        rec = pair_from_renders(out, rendered[(p["item"], a["editor"])], rendered[(p["item"], b["editor"])],
                                actions_a=list(a["beat_actions"]), actions_b=list(b["beat_actions"]), kind_a=str(a["editor"]),
                                kind_b=str(b["editor"]), model_a=models.get(str(a["editor"]), ""), model_b=models.get(str(b["editor"]), ""),
                                target_ratio=float(a["target_ratio"]), song_id=song_id, reward_margin=p["margin"], split=split,
                                pair_id=_pair_id(song_id, k, p["opponent"], a["edl"], b["edl"]))
        rec["original"] = f"{folder}/original.wav"
        records.append(rec)
    write_pair_manifest(out, records)
    kinds: dict[str, int] = {}
    for p in chosen:
        kinds[p["opponent"]] = kinds.get(p["opponent"], 0) + 1
    return {"pairs": len(records), "songs": len(songs), "renders": len(rendered), "kinds": kinds, "manifest": str(out / MANIFEST_NAME)}


def listening_set_summary(render_dir: str | Path) -> dict:
    """Pairs and songs of an existing listening set (for messages)."""
    raw = json.loads((Path(render_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    return {"pairs": len(raw), "songs": len({r["song_id"] for r in raw})}


__all__ = ["build_listening_set", "select_listening_pairs", "seam_times", "listening_set_summary", "OPPONENTS"]
