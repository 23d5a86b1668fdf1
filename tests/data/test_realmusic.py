"""Real music nobody here wrote: music21 corpus pieces rendered with FluidSynth, beats from the score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from beatedit.config import Config
from beatedit.corpus.realmusic import TEST_PIECES, build_real_music, evaluate_real_music, fluidsynth_available, score_beats

_MISSING = fluidsynth_available()


def test_score_beats_handle_pickups_and_split_bars():
    """Ground truth straight from the score: a pickup bar has no downbeat; beats are evenly spaced."""
    from beatedit.corpus.realmusic import Piece, _score

    beats, downs, meter, beat_q = score_beats(_score(Piece("bach/bwv1.6", 84.0, measures=4)), 84.0)
    assert meter == 4 and beat_q == 1.0
    assert np.allclose(np.diff(beats), 60 / 84.0)
    assert beats[0] == 0.0 and downs[0] == pytest.approx(60 / 84.0)  # one-beat pickup
    assert np.allclose(np.diff(downs), 4 * 60 / 84.0)
    beats, downs, meter, _ = score_beats(_score(Piece("bach/bwv11.6", 104.0)), 104.0)
    assert meter == 3 and np.allclose(np.diff(downs), 3 * 60 / 104.0)  # the bar split over two measure objects


@pytest.mark.skipif(_MISSING is not None, reason=f"real-music rendering unavailable: {_MISSING}")
def test_rendered_pieces_are_tracked(tmp_path):
    songs = build_real_music(tmp_path / "real", TEST_PIECES)
    assert [s.meter for s in songs] == [4, 3]
    for s in songs:
        truth = json.loads((tmp_path / "real" / f"{s.name}.truth.json").read_text())
        assert truth["beats"] == s.beats and s.duration > s.beats[-1]
    rows = evaluate_real_music(songs, Config(), tmp_path / "stems")
    for r in rows:
        assert r["beat_f_measure"] >= 0.9, r
        assert r["est_meter"] == r["meter"], r
        assert r["downbeat_f_measure"] >= 0.8, r
