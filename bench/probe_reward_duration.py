"""Probe: does the learned reward track the listener on edit *length*, or just prefer longer edits?

For every song of the chosen splits and two targets, two families of edits are built at
``k x target`` for k in 0.8 .. 1.25 -- the heuristic editor and the fade editor -- and
scored with the trained reward model (normalised, as PPO sees it) and the simulated
listener (gold). A reward model fit for RL peaks where gold peaks (k ~ 1) and falls off
on both sides; one that keeps rising with k hands PPO a "make it longer" exploit.

    .venv/bin/python bench/probe_reward_duration.py [--reward artifacts/reward/model.pt] [--splits validation test]

Reads the pipeline's outputs (features, splits, reward checkpoint); prints one table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beatedit.config import load_config  # noqa: E402
from beatedit.editing.program import build_edit  # noqa: E402
from beatedit.editing.editors import fade_decisions, heuristic_decisions  # noqa: E402
from beatedit.judging.listener import score_edit  # noqa: E402
from models.reward_model import load_reward_model, score_batch  # noqa: E402
from tasks.rlhf import songs_by_split  # noqa: E402

FACTORS = (0.8, 0.9, 1.0, 1.1, 1.25)
TARGETS = (0.55, 0.7)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reward", default="artifacts/reward/model.pt")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--splits", nargs="+", default=["validation", "promotion"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.params)
    model, normalizer, _ = load_reward_model(args.reward)
    split_songs = songs_by_split(cfg)
    rows = []
    for split in args.splits:
        for song in split_songs[split]:
            for t in TARGETS:
                edits = {}
                for k in FACTORS:
                    tk = float(np.clip(t * k, 0.05, 1.0))
                    edits[("heuristic", k)] = build_edit(song, heuristic_decisions(song, tk, cfg.env), cfg.render.crossfade_ms, t, cfg.env)
                    edits[("fade", k)] = build_edit(song, fade_decisions(song, tk, cfg.env), cfg.render.crossfade_ms, t, cfg.env)
                raw = score_batch(model, [(song.features, e.beat_actions, t) for e in edits.values()], "cpu", 64)
                for (family, k), e, r in zip(edits, edits.values(), raw):
                    gold = score_edit(song, e, t, cfg=cfg.listener)
                    rows.append({"split": split, "editor": family, "k": k, "proxy": float(normalizer(r)), "gold": gold["total"],
                                 "gold_duration": gold["duration"], "ratio_error": gold["ratio"] - t})
    df = pd.DataFrame(rows)
    table = df.groupby(["editor", "k"])[["proxy", "gold", "gold_duration", "ratio_error"]].mean()
    print(f"{len(df)} edits of {df.groupby('split').size().to_dict()} (songs x 2 targets x 5 lengths x 2 editors)")
    print(table.round(3).to_string())
    for family in ("heuristic", "fade"):
        sub = table.loc[family]
        print(f"{family}: proxy argmax k = {sub['proxy'].idxmax()}, gold argmax k = {sub['gold'].idxmax()}")


if __name__ == "__main__":
    main()
