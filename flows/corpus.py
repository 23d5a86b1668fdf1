"""Corpus stage: synthesise the default corpus with ground truth (or index the user's folder)."""

from __future__ import annotations

from prefect import flow

from flows.common import load_stage_config, stage_main
from tasks import tracking
from tasks.corpus import corpus_metrics_task, generate_corpus_task, index_user_folder_task


@flow(name="corpus")
def corpus(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Generate the default corpus (data.corpus_dir) or index data.audio_dir; write metrics/corpus.json."""
    cfg = load_stage_config(params, overrides)
    with tracking.stage_run("corpus", cfg, list(overrides)):
        generated = cfg.data.use_generated_corpus
        manifest = generate_corpus_task(cfg) if generated else index_user_folder_task(cfg)
        return corpus_metrics_task(cfg, manifest, generated)


if __name__ == "__main__":
    stage_main(corpus)
