"""Stems stage: separate every song (content-addressed cache), quarantine what cannot be read."""

from __future__ import annotations

from prefect import flow

from flows.common import load_stage_config, quarantine_gate, run_with_runner, stage_main
from tasks import tracking
from tasks.frontend import separate_song_task, song_files, stems_report_task
from tasks.resilience import per_song, settle


@flow(name="stems-per-song")
def stems_flow(params: str, overrides: list[str]) -> dict:
    cfg = load_stage_config(params, overrides)
    with tracking.stage_run("stems", cfg, overrides, tags={"stems_backend": cfg.stems.backend}):
        files = song_files(cfg)
        futures = per_song(separate_song_task, cfg).map(files, cfg=cfg)
        metrics = stems_report_task(settle(futures, files, "stems"), cfg)
    quarantine_gate("stems", metrics, cfg)
    return metrics


def stems(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Separate stems for every song in the corpus manifest; write metrics/stems.json."""
    cfg = load_stage_config(params, overrides)
    return run_with_runner(stems_flow, cfg, params=params, overrides=list(overrides))


if __name__ == "__main__":
    stage_main(stems)
