"""Frozen test set stage: another generated corpus (report.*) run through the same corpus, stems and features flows.

Only the final report (``flows.report``, `make report`) reads it; `make pipeline` never runs this stage
(``beatedit.paths.REPORT_STAGES``), so no training, checkpoint, tuning or promotion decision looks at it.
"""

from __future__ import annotations

import json

from prefect import flow

from beatedit.paths import StagePaths, frozen_testset_overrides
from flows.common import load_stage_config, stage_main
from flows.corpus import corpus
from flows.features import features
from flows.stems import stems
from tasks import tracking


@flow(name="frozen_testset")
def frozen_testset(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Generate report.n_songs songs with report.corpus_seed, separate and analyse them under report.data_dir."""
    cfg = load_stage_config(params, overrides)
    inner = [*overrides, *frozen_testset_overrides(cfg)]
    frozen = StagePaths.from_config(load_stage_config(params, inner))
    with tracking.stage_run("frozen_testset", cfg, list(overrides)):
        corpus(params, inner)
        stems(params, inner)
        features(params, inner)
        inner_metrics = {name: json.loads(frozen.metrics(name).read_text()) for name in ("corpus", "stems", "features")}
        metrics = {"songs": inner_metrics["features"]["songs"], "quarantined": inner_metrics["stems"]["quarantined"] + inner_metrics["features"]["quarantined"],
                   "corpus_seed": cfg.report.corpus_seed, "total_seconds": inner_metrics["corpus"]["total_seconds"],
                   **{k: v for k, v in inner_metrics["features"].items() if k.endswith("f_measure") or k == "tempo_accuracy"}}
        tracking.write_metrics(StagePaths.from_config(cfg).metrics("frozen_testset"), metrics)
        return metrics


if __name__ == "__main__":
    stage_main(frozen_testset)
