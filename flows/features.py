"""Features stage: beat / downbeat / phrase / section tracking and the 125-dim beat features."""

from __future__ import annotations

from prefect import flow

from flows.common import per_song_stage, run_with_runner, stage_main
from tasks.frontend import analyse_song_task, features_report_task, song_files


@flow(name="features-per-song")
def features_flow(params: str, overrides: list[str]) -> dict:
    return per_song_stage("features", params, overrides, song_files, analyse_song_task, features_report_task,
                          tags=lambda cfg: {"stems_backend": cfg.stems.backend})


def features(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Analyse every song; write features.out_dir (*.npz, index.parquet) and metrics/features.json."""
    return run_with_runner(features_flow, params, overrides)


if __name__ == "__main__":
    stage_main(features)
