"""What the committed human votes change in the reward model: trained with them and without them, same seeds.

For each seed the reward model is trained twice on the preferences stage's pair table: once as the pipeline
does (human rows weighted ``reward.human_weight``) and once with the human rows removed. Both are scored on the
same figures: agreement with the strict human votes (for the model trained on them a fit figure, for the other one
what the model believed without them), validation accuracy / noise ceiling and ECE on the simulated listener's
held-out pairs (so a vote that pulls the model away from the listener shows up).

    .venv/bin/python bench/human_votes_effect.py [--seeds 0 1 2] [--epochs N]

Reads the pipeline's outputs (data/preferences/pairs.parquet, features); prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beatedit.config import load_config  # noqa: E402
from models.train_reward import train_reward_model, validate_reward_model  # noqa: E402
from tasks.reward import load_pairs, load_songs  # noqa: E402

FIGURES = ("human_agreement", "val_accuracy", "val_to_ceiling", "ece")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override reward.epochs (default: params.yaml's)")
    args = ap.parse_args()
    cfg = load_config(args.params)
    pairs = load_pairs(cfg)
    human = pairs["source"].eq("human")
    if not human.any():
        raise SystemExit("no human rows in the pair table: run the preferences stage with data/feedback/human_pairs.parquet")
    songs = load_songs(cfg, sorted(pairs["song_id"].unique()))
    print(f"pair table: {len(pairs)} rows, {int(human.sum())} human "
          f"({int((human & pairs['split'].eq('train')).sum())} in train), songs {len(songs)}")
    rows = []
    for seed in args.seeds:
        rc = dataclasses.replace(cfg.reward, seed=seed, **({"epochs": args.epochs} if args.epochs else {}))
        for label, table in (("with votes", pairs), ("without votes", pairs[~human].reset_index(drop=True))):
            model, _ = train_reward_model(table, songs, rc, progress=False)
            m = validate_reward_model(model, pairs, songs, rc)  # scored on the full table: the votes included
            rows.append({"seed": seed, "model": label, **{k: float(m[k]) for k in FIGURES}, "n_votes": m["n_human_votes"]})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    agg = df.groupby("model")[list(FIGURES)].agg(["mean", "std"])
    print("\n| reward model | " + " | ".join(FIGURES) + " |\n|---|" + "---|" * len(FIGURES))
    for model, r in agg.iterrows():
        cells = [f"{r[(k, 'mean')]:.3f} ± {np.nan_to_num(r[(k, 'std')]):.3f}" for k in FIGURES]
        print(f"| {model} ({len(args.seeds)} seeds) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
