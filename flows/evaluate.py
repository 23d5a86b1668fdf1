"""Evaluate stage: the candidate policy vs random / heuristic / BC reference / champion on held-out songs."""

from __future__ import annotations

from prefect import flow

from beatedit.paths import StagePaths
from flows.common import apply_torch_threads, load_stage_config, stage_main
from tasks import tracking
from tasks.evaluate import (compare_task, listening_set_task, load_candidate_task, load_champion_task, promote_task, render_examples_task,
                            report_task)


@flow(name="evaluate")
def evaluate(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Listener win rates with bootstrap CIs, dense components, renders; promotes when promote.auto and it wins."""
    cfg = load_stage_config(params, overrides)
    apply_torch_threads(cfg)
    paths = StagePaths.from_config(cfg)
    with tracking.stage_run("evaluate", cfg, list(overrides)):
        cand = load_candidate_task(cfg)
        champion, champion_version = load_champion_task(cand["policy_version"])
        df, summary = compare_task(cfg, cand, champion)
        metrics = report_task(cfg, df, summary, cand, champion_version)
        render_examples_task(cfg, df)
        listening = listening_set_task(cfg, df, cand, champion_version) if cfg.evaluate.listening_songs > 0 else {"pairs": 0, "seconds": 0.0}
        metrics["listening_pairs"] = listening["pairs"]
        promoted = promote_task(paths.eval_decision) if cfg.promote.auto else {"promoted": False, "reason": "promote.auto is false; run `beatedit promote`"}
        metrics.update(promoted=promoted["promoted"], promotion_reason=promoted["reason"])
        tracking.write_metrics(paths.metrics("evaluate"), metrics)
        return metrics


if __name__ == "__main__":
    stage_main(evaluate)
