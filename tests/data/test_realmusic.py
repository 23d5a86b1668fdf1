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


def test_validation_set_spans_the_meters_and_mostly_has_no_percussion():
    from beatedit.corpus.realmusic import VALIDATION_PIECES

    assert len(VALIDATION_PIECES) >= 40 and len({p.name for p in VALIDATION_PIECES}) == len(VALIDATION_PIECES)
    assert sum(p.percussion == "none" for p in VALIDATION_PIECES) >= len(VALIDATION_PIECES) / 2
    assert "woodblock" not in {p.percussion for p in VALIDATION_PIECES}  # a click on every beat makes tracking trivial
    assert {p.tempo_curve for p in VALIDATION_PIECES} >= {"rit", "accel", "drift"} and any(p.swing > 0.5 for p in VALIDATION_PIECES)
    assert len({p.group for p in VALIDATION_PIECES}) >= 5 and len({p.program for p in VALIDATION_PIECES}) >= 5
    assert all(60 <= p.bpm <= 180 for p in VALIDATION_PIECES)


def test_tempo_maps_and_swing_keep_beats_on_their_ticks():
    from beatedit.corpus.realmusic import Piece, _swing_tick, _tempo_factors

    f = _tempo_factors(Piece("x", 100.0, tempo_curve="rit"), 40)
    assert f[0] == 1.0 and f[-1] == pytest.approx(0.75) and np.all(np.diff(f) <= 0)
    assert _tempo_factors(Piece("x", 100.0, tempo_curve="accel"), 9)[[0, -1]] == pytest.approx([0.85, 1.1])
    with pytest.raises(ValueError, match="tempo_curve"):
        _tempo_factors(Piece("x", 100.0, tempo_curve="fast"), 4)
    tpq = 480
    assert [_swing_tick(t, tpq, 2 / 3) for t in (0, 240, 480, 960 + 240)] == [0, 320, 480, 960 + 320]


@pytest.mark.skipif(_MISSING is not None, reason=f"real-music rendering unavailable: {_MISSING}")
def test_compound_meter_truth_is_the_dotted_quarter_and_tempo_map_is_in_the_audio(tmp_path):
    """A 6/8 jig without percussion and with a ritardando: beats every dotted quarter, meter 2, the
    beat period growing to 1/0.75 of the start; the render is cached (same key -> not rendered again)."""
    from beatedit.corpus.realmusic import Piece, evaluate_validation, summarise_validation

    p = Piece("ryansMammoth/IrishWashWomanJig.abc", 120.0, 8, 73, percussion="none", tempo_curve="rit", collection="folk")
    (s,) = build_real_music(tmp_path, [p], sr=22050)
    assert s.meter == 2
    ibi = np.diff(s.beats)
    assert ibi[0] == pytest.approx(0.5) and ibi[-1] > 0.6
    assert np.allclose(np.diff(s.downbeats)[:2], 1.0)
    mtime = (tmp_path / f"{s.name}.wav").stat().st_mtime_ns
    build_real_music(tmp_path, [p], sr=22050)
    assert (tmp_path / f"{s.name}.wav").stat().st_mtime_ns == mtime
    rows, tim = evaluate_validation([s], {s.name: "folk"}, Config(), tmp_path / "stems")
    summ = summarise_validation(rows)
    assert summ["realmusic_pieces"] == 1 and 0.0 <= summ["realmusic_folk_beat_f_measure"] <= 1.0
    assert {"librosa_beat_f_measure", "amlt", "meter_accuracy"} <= set(rows[0]) and tim["audio_s"] > 0


def test_a_bad_piece_is_reported_not_fatal(tmp_path):
    from beatedit.corpus.realmusic import Piece, RenderFailure

    if _MISSING is not None:
        pytest.skip(_MISSING)
    fails: list = []
    songs = build_real_music(tmp_path, [Piece("josquin/milleRegrets.abc", 80.0, percussion="none")], failures=fails)
    assert songs == [] and isinstance(fails[0], RenderFailure) and "needs Piece.number" in fails[0].error


def test_halves_consistency_flags_octave_errors_and_phase_slips():
    from beatedit.corpus.realmusic import halves_consistency

    a = np.arange(0, 60, 0.5)  # 120 BPM
    same = halves_consistency(a, a + 100.0)
    assert same["tempo_agree"] == 1.0 and same["octave_error"] == 0.0 and same["stability"] == 1.0
    half = halves_consistency(a, np.arange(0, 60, 1.0))
    assert half["tempo_agree"] == 0.0 and half["octave_error"] == 1.0
    slipped = np.concatenate([a[:60], a[60:] + 0.25])  # one half-beat phase slip
    assert halves_consistency(slipped, slipped)["stability"] < 1.0
