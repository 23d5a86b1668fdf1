"""The renderer: every action is heard as documented, lengths are exact, bad EDLs are refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from beatedit.editing.actions import Action
from beatedit.config import RenderConfig
from beatedit.editing.program import beat_sample_bounds, build_edit
from beatedit.editing.editors import edit_with
from beatedit.editing.edl import EDL, EDLError, Segment
from beatedit.editing.render import render, write_edit
from tests.worldkit import dominant_beat, make_world_song

A = Action
XF = 20.0


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    return make_world_song(tmp_path_factory.mktemp("st"), meter=4, n_bars=12, pickup=1, sr=44100, channels=2)


@pytest.fixture(scope="module")
def mono(tmp_path_factory):
    return make_world_song(tmp_path_factory.mktemp("mo"), meter=3, n_bars=12, sr=22050, channels=1, seed=2)


def heard_beats(song, edit, out):
    """The source beat heard in the middle of each output beat (by its pitch), in output order."""
    B = beat_sample_bounds(song)
    heard, pos = [], 0
    for b, _, _ in edit.output_beats:
        n = int(B[b + 1] - B[b])
        mid = out[0, pos + n // 4: pos + 3 * n // 4]
        heard.append(dominant_beat(mid, song.source_sr, song.n_beats))
        pos += n
    return heard


def out_start(song, edit, k):
    """Output sample where output beat k starts."""
    B = beat_sample_bounds(song)
    return int(sum(B[b + 1] - B[b] for b, _, _ in edit.output_beats[:k]))


# ----------------------------------------------------------------------------- each action, heard
def test_keep_all_reproduces_the_source(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP] * song.n_beats, XF)
    out = render(e.edl, y)
    assert out.dtype == np.float32 and out.shape == (2, B[-1] - B[0])
    np.testing.assert_array_equal(out, y[:, B[0]:B[-1]])
    # loading from edl.source_path gives the same
    np.testing.assert_array_equal(render(e.edl), out)


@pytest.mark.parametrize("decisions, expected", [
    ([A.KEEP] * 3 + [A.CUT] + [A.KEEP] * 5 + [A.END], [0, 1, 2, 4, 5, 6, 7, 8]),
    ([A.KEEP] * 2 + [A.CUT_TO_NEXT_BAR] + [A.KEEP] * 4 + [A.END], [0, 1, 5, 6, 7, 8]),
    ([A.KEEP] * 2 + [A.CUT_TO_NEXT_PHRASE] + [A.KEEP] * 4 + [A.END], [0, 1, 17, 18, 19, 20]),
    ([A.KEEP] * 3 + [A.LOOP_BEAT] + [A.KEEP] + [A.END], [0, 1, 2, 3, 3, 4]),
    ([A.KEEP] + [A.LOOP_BAR] + [A.END], [0, 1, 2, 3, 4, 1, 2, 3, 4]),
    ([A.KEEP] + [A.REPEAT_PHRASE] + [A.END], [0] + list(range(1, 17)) * 2),
    ([A.KEEP] * 5 + [A.FADE_OUT], [0, 1, 2, 3, 4, 5, 6, 7, 8]),
])
def test_each_action_is_heard(stereo, decisions, expected):
    song, y = stereo
    e = build_edit(song, decisions, XF)
    out = render(e.edl, y)
    assert out.shape[1] == e.edl.n_samples
    assert [b for b, _, _ in e.output_beats] == expected
    assert heard_beats(song, e, out) == expected


def test_loop_beat_plays_the_same_samples_twice(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP] * 3 + [A.LOOP_BEAT, A.KEEP, A.END], 0.0)  # hard cuts: exact copies
    out = render(e.edl, y)
    p3, p3b = out_start(song, e, 3), out_start(song, e, 4)
    n3 = B[4] - B[3]
    np.testing.assert_array_equal(out[:, p3:p3 + n3], y[:, B[3]:B[4]])
    np.testing.assert_array_equal(out[:, p3b:p3b + n3], y[:, B[3]:B[4]])


def test_fade_in_ramps_from_silence(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.FADE_IN] + [A.KEEP] * 4 + [A.END], XF)
    out = render(e.edl, y)
    n0 = B[1] - B[0]
    ramp = np.arange(n0) / n0
    np.testing.assert_allclose(out[:, :n0], y[:, B[0]:B[1]] * ramp, atol=1e-6)
    assert out[0, 0] == 0.0
    np.testing.assert_array_equal(out[:, n0:], y[:, B[1]:B[5]])  # then full level, no crossfade (contiguous)
    # after a cut: the faded-in beat enters through the splice's crossfade and ramps up
    e = build_edit(song, [A.KEEP, A.CUT, A.FADE_IN, A.KEEP, A.KEEP, A.END], XF)
    out = render(e.edl, y)
    p, n2 = out_start(song, e, 1), B[3] - B[2]
    h = e.edl.segments[1].crossfade_samples
    seg = out[0, p + h:p + n2]
    src = y[0, B[2] + h:B[3]] * (np.arange(h, n2) / n2)
    np.testing.assert_allclose(seg, src, atol=1e-6)


def test_fade_out_ramps_to_silence(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP] * 6 + [A.FADE_OUT], XF)  # beats 6..6+meter-1 fade (one bar's worth of beats)
    end = 6 + song.meter
    out = render(e.edl, y)
    p = out_start(song, e, 6)
    n = B[end] - B[6]
    assert out.shape[1] == p + n
    np.testing.assert_allclose(out[:, p:], y[:, B[6]:B[end]] * (1 - np.arange(n) / n), atol=1e-6)
    rms = [np.sqrt(np.mean(out[0, p + k * n // 3: p + (k + 1) * n // 3] ** 2)) for k in range(3)]
    assert rms[0] > rms[1] > rms[2]


def test_end_stops_the_audio(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP] * 5 + [A.END], XF)
    out = render(e.edl, y)
    assert out.shape[1] == B[5] - B[0]
    np.testing.assert_array_equal(out, y[:, B[0]:B[5]])


def test_splice_is_a_centred_equal_power_crossfade(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP] * 3 + [A.CUT_TO_NEXT_BAR] + [A.KEEP] * 4 + [A.END], XF)
    out = render(e.edl, y)
    c = e.edl.segments[1].crossfade_samples
    assert c == round(XF * song.source_sr / 1000)
    h1, h2 = c // 2, c - c // 2
    p = e.edl.splice_positions()[0]
    assert p == B[3] - B[0]  # the splice is where the EDL says: after beats 0..2
    t = (np.arange(c) + 0.5) / c
    a = y[:, B[3] - h1:B[3] + h2]  # outgoing material continues past its end
    b = y[:, B[5] - h1:B[5] + h2]  # incoming starts before its start
    np.testing.assert_allclose(out[:, p - h1:p + h2], a * np.cos(np.pi / 2 * t) + b * np.sin(np.pi / 2 * t), atol=1e-6)
    np.testing.assert_array_equal(out[:, :p - h1], y[:, B[0]:B[3] - h1])
    np.testing.assert_array_equal(out[:, p + h2:], y[:, B[5] + h2:B[9]])


def test_crossfade_override_zero_is_a_hard_cut(stereo):
    song, y = stereo
    B = beat_sample_bounds(song)
    e = build_edit(song, [A.KEEP, A.CUT, A.KEEP, A.KEEP, A.KEEP, A.END], XF)
    out = render(e.edl, y, crossfade_ms=0)
    np.testing.assert_array_equal(out, np.concatenate([y[:, B[0]:B[1]], y[:, B[2]:B[5]]], axis=1))


# ----------------------------------------------------------------------------- lengths, channels, rates
@pytest.mark.parametrize("which", ["stereo", "mono"])
def test_length_and_channels_match_the_source(which, request):
    song, y = request.getfixturevalue(which)
    rng = np.random.default_rng(4)
    for _ in range(15):
        e = edit_with("random", song, float(rng.uniform(0.3, 1.0)), rng)
        out = render(e.edl, y)
        assert out.shape == (song.source_channels, e.edl.n_samples)
        assert np.all(np.isfinite(out))
    out = render(e.edl)  # from the file: same rate and channel count
    assert out.shape == (song.source_channels, e.edl.n_samples)
    assert sf.info(song.source_path).samplerate == e.edl.source_sr == song.source_sr


def test_mono_array_may_be_1d(mono):
    song, y = mono
    e = edit_with("heuristic", song, 0.5)
    np.testing.assert_array_equal(render(e.edl, y[0]), render(e.edl, y))


# ----------------------------------------------------------------------------- bad EDLs
def _edl(song, segments):
    return EDL(source_path=song.source_path, source_sr=song.source_sr, source_channels=song.source_channels,
               source_samples=int(round(song.duration * song.source_sr)), segments=segments, song_id=song.song_id)


def test_bad_edls_are_rejected_with_clear_errors(stereo):
    song, y = stereo
    N = int(round(song.duration * song.source_sr))
    with pytest.raises(EDLError, match="outside the song"):
        render(_edl(song, [Segment(1000, N + 10)]), y)
    with pytest.raises(EDLError, match="outside the song"):
        render(_edl(song, [Segment(-5, 1000)]), y)
    with pytest.raises(EDLError, match="non-positive length"):
        render(_edl(song, [Segment(1000, 400)]), y)
    with pytest.raises(EDLError, match="non-positive length"):
        render(_edl(song, [Segment(1000, 1000)]), y)
    with pytest.raises(EDLError, match="overlaps"):
        render(_edl(song, [Segment(0, 5000), Segment(20000, 20300, crossfade_samples=800)]), y)
    with pytest.raises(EDLError, match="invalid gains"):
        render(_edl(song, [Segment(0, 5000, gain_end=float("nan"))]), y)
    with pytest.raises(EDLError, match="no segments"):
        render(_edl(song, []), y)
    good = _edl(song, [Segment(0, 5000), Segment(20000, 30000, crossfade_samples=800)])
    assert render(good, y).shape == (2, 15000)
    with pytest.raises(EDLError, match="channel"):
        render(good, y[:1])
    with pytest.raises(EDLError, match="reads up to sample"):
        render(good, y[:, :25000])
    with pytest.raises(EDLError, match="cannot read"):
        render(dataclasses.replace(good, source_path="/nonexistent/x.wav"))
    with pytest.raises(EDLError, match="Hz"):
        render(dataclasses.replace(good, source_sr=48000, source_samples=int(round(song.duration * 48000))))


# ----------------------------------------------------------------------------- writing
def test_write_edit_writes_wav_and_edl_side_by_side(stereo, tmp_path):
    song, y = stereo
    e = edit_with("random", song, 0.6, np.random.default_rng(0))
    wav, js = write_edit(e.edl, tmp_path / "out.wav", y, RenderConfig(wav_subtype="FLOAT"))
    assert wav == tmp_path / "out.wav" and js == tmp_path / "out.edl.json"
    data, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == song.source_sr and data.shape == (e.edl.n_samples, 2)
    np.testing.assert_array_equal(data.T, render(e.edl, y))
    back = EDL.load(js)
    assert back.segments == e.edl.segments and back.source_path == e.edl.source_path
    assert json.loads(js.read_text())["meta"]["render"]["wav_subtype"] == "FLOAT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.edl.json", "out.wav"]


def test_write_edit_leaves_nothing_half_written(stereo, tmp_path):
    song, y = stereo
    e = edit_with("heuristic", song, 0.6)
    write_edit(e.edl, tmp_path / "out.wav", y)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    bad = dataclasses.replace(e.edl, segments=[Segment(0, 10**9)])
    with pytest.raises(EDLError):
        write_edit(bad, tmp_path / "out.wav", y)
    with pytest.raises(EDLError):
        write_edit(e.edl, tmp_path / "out.wav", y[:1])  # wrong source: fails before anything is written
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # old files intact, no temporaries
    (tmp_path / "blocked.wav").mkdir()  # the final rename fails: the temporaries are cleaned up
    with pytest.raises(OSError):
        write_edit(e.edl, tmp_path / "blocked.wav", y)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert not (tmp_path / "blocked.edl.json").exists()  # refused up front: no orphan EDL beside the folder


def test_loudness_normalisation(stereo, tmp_path):
    import pyloudnorm as pyln

    song, y = stereo
    e = edit_with("heuristic", song, 0.8)
    out = render(e.edl, y, target_lufs=-23.0)
    assert pyln.Meter(song.source_sr).integrated_loudness(out.T.astype(np.float64)) == pytest.approx(-23.0, abs=0.1)
    loud = render(e.edl, y, target_lufs=0.0)  # would clip: the peak limiter holds it at 1.0
    assert np.max(np.abs(loud)) <= 1.0 + 1e-6
    _, js = write_edit(e.edl, tmp_path / "n.wav", y, RenderConfig(target_lufs=0.0))
    info = json.loads(js.read_text())["meta"]["render"]
    assert info["peak_limited"] is True and info["target_lufs"] == 0.0


def test_a_source_a_few_samples_shorter_than_analysed_renders_with_silence_there(stereo):
    """An OGG/MP3 decodes a few samples shorter than the length its analysis measured (resampling rounds up):
    the edit that keeps the song's real ending reads to the analysed end; those samples play as silence, while
    a source clearly too short is still refused."""
    song, y = stereo
    e = build_edit(song, [A.KEEP] * song.n_beats, XF)
    short = y[:, :-3]
    out = render(e.edl, short)
    assert out.shape[1] == e.edl.n_samples and np.all(out[:, -3:] == 0) and np.array_equal(out[:, :-3], short)
    with pytest.raises(EDLError):
        render(e.edl, y[:, : y.shape[1] // 2])
