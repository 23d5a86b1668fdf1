"""Features stage: beat / downbeat / phrase / section tracking and the 125-dim beat features."""

from __future__ import annotations

from prefect import flow

from flows.common import load_stage_config, quarantine_gate, run_with_runner, stage_main
from tasks import tracking
from tasks.frontend import analyse_song_task, features_report_task, song_files
from tasks.resilience import per_song, settle


@flow(name="features-per-song")
def features_flow(params: str, overrides: list[str]) -> dict:
    cfg = load_stage_config(params, overrides)
    with tracking.stage_run("features", cfg, overrides, tags={"stems_backend": cfg.stems.backend}):
        files = song_files(cfg)
        futures = per_song(analyse_song_task, cfg).map(files, cfg=cfg)
        metrics = features_report_task(settle(futures, files, "features"), cfg)
    quarantine_gate("features", metrics, cfg)
    return metrics


def features(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Analyse every song; write data/features/*.npz, index.parquet and metrics/features.json."""
    cfg = load_stage_config(params, overrides)
    return run_with_runner(features_flow, cfg, params=params, overrides=list(overrides))


if __name__ == "__main__":
    stage_main(features)
