"""Preferences stage: pairs of edits of the same song, labelled by the simulated listener (+ human votes)."""

from __future__ import annotations

from prefect import flow

from flows.common import per_song_stage, run_with_runner, stage_main
from tasks.preferences import feature_files, merge_pairs_task, song_pairs_task


@flow(name="preferences-per-song")
def preferences_flow(params: str, overrides: list[str]) -> dict:
    return per_song_stage("preferences", params, overrides, feature_files, song_pairs_task, merge_pairs_task, songs_key="n_songs")


def preferences(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Generate and label preference pairs; write preferences.out_dir (pairs.parquet, splits.csv) and metrics/preferences.json."""
    return run_with_runner(preferences_flow, params, overrides)


if __name__ == "__main__":
    stage_main(preferences)
