"""Preferences stage: pairs of edits of the same song, labelled by the simulated listener (+ human votes)."""

from __future__ import annotations

from prefect import flow

from flows.common import load_stage_config, quarantine_gate, run_with_runner, stage_main
from tasks import tracking
from tasks.preferences import feature_files, merge_pairs_task, song_pairs_task
from tasks.resilience import per_song, settle


@flow(name="preferences-per-song")
def preferences_flow(params: str, overrides: list[str]) -> dict:
    cfg = load_stage_config(params, overrides)
    with tracking.stage_run("preferences", cfg, overrides):
        files = feature_files()
        futures = per_song(song_pairs_task, cfg).map(files, cfg=cfg)
        metrics = merge_pairs_task(settle(futures, files, "preferences"), cfg)
    quarantine_gate("preferences", {"songs": metrics["n_songs"], "quarantined": metrics["quarantined"]}, cfg)
    return metrics


def preferences(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Generate and label preference pairs; write data/preferences/pairs.parquet and metrics/preferences.json."""
    cfg = load_stage_config(params, overrides)
    return run_with_runner(preferences_flow, cfg, params=params, overrides=list(overrides))


if __name__ == "__main__":
    stage_main(preferences)
