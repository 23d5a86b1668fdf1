"""What one frozen-test item costs in the final report (`make report`), to size report.targets_per_song.

Measures, on songs of the main corpus (data/features, the rlhf stage's policy and the reward model):
the batched greedy policy edit, best-of-8, the listener with audio seams and the independent judge per edit, and
prints the estimated scoring time of the report for report.n_songs x report.targets_per_song items.

    python -m bench.report_cost [--songs 6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--songs", type=int, default=6)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()

    import torch

    from beatedit.config import load_config
    from beatedit.paths import StagePaths
    from models.heldout import editors_for, scorer, song_targets
    from models.policy import load_policy
    from models.report import batched_best_of_editor, batched_policy_editor
    from models.reward_model import load_reward_model
    from tasks.reward import load_songs

    cfg = load_config(args.params)
    torch.set_num_threads(max(cfg.torch_threads, 1))
    paths = StagePaths.from_config(cfg)
    songs = list(load_songs(cfg).values())[: args.songs]
    policy, _ = load_policy(paths.policy_checkpoint)
    reward_model, _, _ = load_reward_model(paths.reward_checkpoint)
    targets = song_targets(songs, cfg, cfg.report.seed, 1)
    t0 = time.perf_counter()
    greedy = batched_policy_editor(policy, songs, targets, cfg)
    t_policy = (time.perf_counter() - t0) / len(songs)
    t0 = time.perf_counter()
    batched_best_of_editor(policy, reward_model, songs, targets, 8, cfg, seed=0)
    t_best8 = (time.perf_counter() - t0) / len(songs)
    base = editors_for(cfg)
    listener, judged = scorer(cfg, judge=False), scorer(cfg, judge=True)
    t_listener, t_judge = [], []
    for s in songs:
        t = targets[s.song_id][0]
        for edit in (greedy(s, t), base["search"](s, t), base["fade"](s, t), base["heuristic"](s, t)):
            a = time.perf_counter()
            listener(s, edit, t)
            b = time.perf_counter()
            judged(s, edit, t)
            c = time.perf_counter()
            t_listener.append(b - a)
            t_judge.append(c - b - (b - a))
    lst, jdg = float(np.median(t_listener)), float(np.median(t_judge))
    n_seeds, n_items = len(cfg.report.seeds), cfg.report.n_songs * cfg.report.targets_per_song
    judged_editors = n_seeds + 3
    best_editors = n_seeds * len(cfg.report.best_of)
    per_item = n_seeds * t_policy + n_seeds * t_best8 * len(cfg.report.best_of) / 2 + judged_editors * (lst + jdg) + best_editors * lst
    print(f"per song: batched greedy policy edit {t_policy:.3f} s, best-of-8 {t_best8:.3f} s")
    print(f"per edit (median): listener with audio seams {lst:.3f} s, independent judge {jdg:.3f} s")
    print(f"report scoring estimate: {n_items} items x ({judged_editors} judged + {best_editors} listener-only editors) "
          f"= {per_item:.2f} s/item -> {n_items * per_item / 60:.1f} min")


if __name__ == "__main__":
    main()
