"""Best-of-N vs the policy's greedy edit, under the learned reward (proxy) and the simulated listener (gold).

A quality measurement of ``models.best_of`` (not a timing): the policy's greedy edit is the peer. For every
held-out ("test" split) song of a pipeline run and three targets, N policy samples are ranked by the reward
model with the target; the best one is compared with the greedy edit by the listener (features only, no audio).
With an over-optimisable reward model, a higher proxy can come with a lower gold: this shows it per temperature.

    .venv/bin/python bench/best_of_gold.py --run-dir /work/main   # reads data/, artifacts/ of that checkout
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from beatedit.audio.song import SongAnalysis
from beatedit.config import load_config
from beatedit.judging.listener import score_edit
from models.best_of import best_of_n_many
from models.policy import load_policy
from models.policy_edit import edit_songs
from models.reward_model import load_reward_model, score_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=".", help="checkout whose data/ and artifacts/ to read (default .)")
    ap.add_argument("--targets", default="0.5,0.6,0.7")
    ap.add_argument("--settings", default="1:1.0,8:1.0,8:0.5,8:0.3,8:0.1", help="N:temperature pairs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.run_dir)
    cfg = load_config(root / "params.yaml")
    pairs = pd.read_parquet(root / "data/preferences/pairs.parquet", columns=["song_id", "split"]).drop_duplicates()
    test = sorted(pairs[pairs.split == "test"].song_id.unique())
    songs = [SongAnalysis.load(root / "data/features" / f"{s}.npz") for s in test]
    policy, _ = load_policy(root / "artifacts/rlhf/policy.pt")
    rm, _, _ = load_reward_model(root / "artifacts/reward/model.pt")
    jobs = [(s, float(t)) for s in songs for t in args.targets.split(",")]
    greedy = edit_songs(policy, [s for s, _ in jobs], [t for _, t in jobs], cfg.env, greedy=True, crossfade_ms=cfg.render.crossfade_ms)
    g_rm = score_batch(rm, [(s.features, e.edit.beat_actions, t) for (s, t), e in zip(jobs, greedy)])
    g_gold = np.array([score_edit(s, e.edit, t, cfg=cfg.listener)["total"] for (s, t), e in zip(jobs, greedy)])
    print(f"{len(songs)} test songs x {len(jobs) // max(1, len(songs))} targets = {len(jobs)} jobs")
    print("| edit | reward model (proxy) | listener total (gold) | gold win rate vs greedy |\n|---|---|---|---|")
    print(f"| greedy (peer) | {g_rm.mean():+.4f} | {g_gold.mean():.4f} | - |")
    for setting in args.settings.split(","):
        n, temp = int(setting.split(":")[0]), float(setting.split(":")[1])
        ranked = best_of_n_many(policy, rm, jobs, n, cfg.env, seed=0, crossfade_ms=cfg.render.crossfade_ms, temperature=temp)
        gold = np.array([score_edit(s, r[0].edit, t, cfg=cfg.listener)["total"] for (s, t), r in zip(jobs, ranked)])
        win = np.mean(np.where(gold > g_gold, 1.0, np.where(gold == g_gold, 0.5, 0.0)))
        print(f"| best-of-{n}, T={temp} | {np.mean([r[0].score for r in ranked]):+.4f} | {gold.mean():.4f} | {win:.3f} |")


if __name__ == "__main__":
    main()
