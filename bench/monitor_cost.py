"""Cost of one over-optimisation monitor evaluation (models.ppo_monitor) with gold on audio seams vs feature seams.

    python bench/monitor_cost.py   (from a checkout with the pipeline's data; PYTHONPATH=<worktree> to time a worktree)
"""

from __future__ import annotations

import time


def main() -> None:
    import argparse

    import torch

    from beatedit.config import load_config
    from beatedit.paths import StagePaths
    from models.policy import load_policy
    from models.ppo_monitor import audio_for, baseline_golds, evaluate_policy, monitor_targets
    from models.reward_model import load_reward_model
    from tasks.rlhf import songs_by_split

    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    cfg = load_config(ap.parse_args().params)
    torch.set_num_threads(max(cfg.torch_threads, 1))
    paths = StagePaths.from_config(cfg)
    songs = songs_by_split(cfg)["validation"][: cfg.rlhf.n_eval_songs]
    policy, _ = load_policy(paths.policy_checkpoint)
    reference, _ = load_policy(paths.reference_checkpoint)
    rm, norm, _ = load_reward_model(paths.reward_checkpoint)
    targets = monitor_targets(songs, cfg)
    t0 = time.perf_counter()
    audio = audio_for(songs, cfg)
    t1 = time.perf_counter()
    base = baseline_golds(songs, targets, cfg, audio=audio)
    t2 = time.perf_counter()
    evaluate_policy(policy, reference, rm, norm, songs, targets, cfg, baselines=base, audio=audio)
    t3 = time.perf_counter()
    evaluate_policy(policy, reference, rm, norm, songs, targets, cfg, baselines=base)
    t4 = time.perf_counter()
    n_evals = cfg.rlhf.total_steps // (cfg.rlhf.n_envs * cfg.rlhf.rollout_steps) // cfg.rlhf.eval_interval + 1
    print(f"{len(songs)} songs: audio load {t1 - t0:.1f} s (once), baselines {t2 - t1:.1f} s (once)")
    print(f"one evaluation: audio seams {t3 - t2:.1f} s, feature seams {t4 - t3:.1f} s; {n_evals} evaluations per PPO run: "
          f"+{(t3 - t2 - (t4 - t3)) * n_evals / 60:.1f} min for audio seams")


if __name__ == "__main__":
    main()
