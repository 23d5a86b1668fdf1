"""Promotion: set alias `champion` on the evaluated candidate when it beat the incumbent; or roll back."""

from __future__ import annotations

from prefect import flow

from beatedit.paths import StagePaths
from flows.common import load_stage_config
from tasks import registry, tracking
from tasks.evaluate import promote_task


@flow(name="promote")
def promote_flow(params: str = "params.yaml") -> dict:
    """Apply the last evaluation's decision (evaluate.out_dir/decision.json) to the registry."""
    cfg = load_stage_config(params, [])
    tracking.configure(cfg)
    return promote_task(StagePaths.from_config(cfg).eval_decision)


@flow(name="rollback")
def rollback_flow(params: str = "params.yaml", expected_champion: str | None = None) -> dict:
    """Restore `previous-champion` as `champion` (policy and its reward model); with
    `expected_champion`, only if that version is still the champion (compare-and-set)."""
    tracking.configure(load_stage_config(params, []))
    d = registry.rollback(expected_champion=expected_champion)
    return {"promoted": d.promoted, "reason": d.reason, "policy_version": d.policy_version}


def promote(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    return promote_flow(params=params)


if __name__ == "__main__":
    result = promote_flow()
    print(("PROMOTED: " if result["promoted"] else "NOT PROMOTED: ") + result["reason"])
