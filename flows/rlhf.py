"""RLHF stage: behaviour-clone the reference, train the policy with PPO (or DPO), check it on held-out songs."""

from __future__ import annotations

from prefect import flow

from flows.common import apply_torch_threads, load_stage_config, stage_main
from tasks import tracking
from tasks.rlhf import (
    bc_task,
    dpo_task,
    fresh_policy,
    heldout_task,
    ppo_task,
    rlhf_report_task,
    save_policy_task,
    songs_by_split,
    training_figures,
)


def _device(cfg) -> str:
    from models.device import resolve_device

    return str(resolve_device(cfg.device))


@flow(name="rlhf")
def rlhf(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """PPO (default) or DPO on learned + dense reward with a KL anchor; writes metrics/rlhf.json.

    With ``rlhf.compare_algorithms`` the other algorithm is trained too, from the same BC reference, and
    both are checked on the same held-out songs (``ppo_*`` / ``dpo_*`` keys); only ``rlhf.algorithm``'s
    policy is saved and registered."""
    cfg = load_stage_config(params, overrides)
    apply_torch_threads(cfg)
    device = _device(cfg)
    with tracking.stage_run("rlhf", cfg, list(overrides), tags={"algorithm": cfg.rlhf.algorithm, "device": device}):
        split = songs_by_split(cfg)
        policy, reference, bc_metrics = bc_task(cfg, split["train"], device)
        trainers = {"ppo": ppo_task, "dpo": dpo_task}
        primary = cfg.rlhf.algorithm
        other_policy = fresh_policy(reference) if cfg.rlhf.compare_algorithms else None
        result = trainers[primary](cfg, policy, reference, split["train"], split["validation"], device)
        heldout = heldout_task(cfg, policy, reference, split["promotion"], primary)
        other: dict = {}
        if other_policy is not None:
            second = "dpo" if primary == "ppo" else "ppo"
            other_result = trainers[second](cfg, other_policy, reference, split["train"], split["validation"], device)
            other = training_figures(second, other_result) | heldout_task(cfg, other_policy, reference, split["promotion"], second,
                                                                          primary=False)
        registered = save_policy_task(cfg, policy, result, params, heldout, split)
        return rlhf_report_task(cfg, result, bc_metrics, heldout, registered, other)


if __name__ == "__main__":
    stage_main(rlhf)
