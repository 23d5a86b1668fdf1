"""Reward stage: train (or load) the reward model on the preference pairs, gate it, register it."""

from __future__ import annotations

from prefect import flow

from flows.common import apply_torch_threads, load_stage_config, stage_main
from flows.errors import StageFailed
from tasks import tracking
from tasks.reward import (champion_accuracy_task, load_pairs, load_reward_task, load_songs, reward_report_task, save_and_register_task,
                          train_reward_task, validate_reward_task)


class RewardGateFailed(StageFailed):
    exit_code = 4


@flow(name="reward")
def reward(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Train/validate the reward model; fail with the gate's messages when a threshold is missed."""
    cfg = load_stage_config(params, overrides)
    apply_torch_threads(cfg)
    with tracking.stage_run("reward", cfg, list(overrides)):
        pairs = load_pairs(cfg)
        songs = load_songs(cfg, sorted(set(pairs["song_id"])))
        if cfg.reward.checkpoint:
            model, history = load_reward_task(cfg.reward.checkpoint), []
        else:
            model, history = train_reward_task(cfg, pairs, songs)
        metrics = validate_reward_task(cfg, model, pairs, songs)
        from models.train_reward import gate

        failures = gate(metrics, cfg)
        registered = None
        if not failures:
            champion = champion_accuracy_task(cfg, pairs, songs)
            if champion is not None:
                metrics["champion_human_agreement"] = champion["human_agreement"]
            registered = save_and_register_task(cfg, model, metrics, True, None if champion is None else float(champion["val_accuracy"]))
        report = reward_report_task(cfg, metrics, history, failures, registered)
    if failures:
        raise RewardGateFailed("reward model failed the validation gate:\n  - " + "\n  - ".join(failures))
    return report


if __name__ == "__main__":
    stage_main(reward)
