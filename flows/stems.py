"""Stems stage: separate every song (content-addressed cache), quarantine what cannot be read."""

from __future__ import annotations

from prefect import flow

from flows.common import per_song_stage, run_with_runner, stage_main
from tasks.frontend import separate_song_task, song_files, stems_report_task


@flow(name="stems-per-song")
def stems_flow(params: str, overrides: list[str]) -> dict:
    return per_song_stage("stems", params, overrides, song_files, separate_song_task, stems_report_task,
                          tags=lambda cfg: {"stems_backend": cfg.stems.backend})


def stems(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Separate stems for every song in the corpus manifest; write metrics/stems.json."""
    return run_with_runner(stems_flow, params, overrides)


if __name__ == "__main__":
    stage_main(stems)
