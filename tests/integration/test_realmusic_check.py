"""The features stage's real-music check (tasks/frontend.realmusic_check) in a real Prefect flow + MLflow store."""

from __future__ import annotations

import json

import pytest

from beatedit.config import Config
from beatedit.corpus.realmusic import Piece, fluidsynth_available

_MISSING = fluidsynth_available()


@pytest.mark.slow
@pytest.mark.skipif(_MISSING is not None, reason=f"real-music rendering unavailable: {_MISSING}")
def test_realmusic_check_writes_metrics_csv_and_plot(prefect_harness, mlflow_store, in_tmp_repo, monkeypatch):
    import beatedit.corpus.realmusic as rm
    from prefect import flow

    from beatedit.paths import StagePaths
    from tasks import tracking
    from tasks.frontend import realmusic_check

    two = (Piece("bach/bwv10.7", 92.0, 10, 19, percussion="none", collection="bach"),
           Piece("ryansMammoth/IrishWashWomanJig.abc", 116.0, None, 73, percussion="kit", collection="folk"))
    monkeypatch.setattr(rm, "VALIDATION_PIECES", two)  # two pieces instead of 47: the wiring, not the figures
    cfg = Config()

    @flow(name="realmusic-check-test")
    def run() -> dict:
        with tracking.stage_run("features", cfg, []):
            return realmusic_check(cfg, StagePaths.from_config(cfg))

    out = run()
    assert out["realmusic_pieces"] == 2 and out["realmusic_render_failures"] == 0
    assert {"realmusic_beat_f_measure", "realmusic_downbeat_f_measure", "realmusic_meter_accuracy", "realmusic_amlt",
            "realmusic_bach_beat_f_measure", "realmusic_folk_librosa_beat_f_measure"} <= set(out)
    json.dumps(out)
    plots = in_tmp_repo / "plots" / "features"
    assert (plots / "realmusic_beat_f.png").stat().st_size > 0
    head = (plots / "realmusic.csv").read_text().splitlines()[0].split(",")
    assert {"piece", "group", "beat_f_measure", "librosa_beat_f_measure"} <= set(head)
