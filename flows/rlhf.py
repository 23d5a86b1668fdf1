"""RLHF stage: behaviour-clone the reference, train the policy with PPO (or DPO), check it on held-out songs."""

from __future__ import annotations

from prefect import flow

from flows.common import load_stage_config, stage_main
from tasks import tracking
from tasks.rlhf import bc_task, dpo_task, heldout_task, ppo_task, rlhf_report_task, save_policy_task, songs_by_split


def _device(cfg) -> str:
    from models.ppo import default_device

    return str(default_device(cfg.device))


@flow(name="rlhf")
def rlhf(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """PPO (default) or DPO on learned + dense reward with a KL anchor; writes metrics/rlhf.json."""
    cfg = load_stage_config(params, overrides)
    device = _device(cfg)
    with tracking.stage_run("rlhf", cfg, list(overrides), tags={"algorithm": cfg.rlhf.algorithm, "device": device}):
        split = songs_by_split()
        policy, reference, bc_metrics = bc_task(cfg, split["train"], device)
        train_fn = ppo_task if cfg.rlhf.algorithm == "ppo" else dpo_task
        result = train_fn(cfg, policy, reference, split["train"], split["validation"], device)
        heldout = heldout_task(cfg, policy, reference, split["test"], cfg.rlhf.algorithm)
        registered = save_policy_task(cfg, policy, result, params)
        return rlhf_report_task(cfg, result, bc_metrics, heldout, registered)


if __name__ == "__main__":
    stage_main(rlhf)
