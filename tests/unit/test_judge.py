"""The independent judge (beatedit.judge): audio-only components on synthetic songs with known edits.

The song: 120 BPM 4/4, a pickup swell before the first beat, sections of sine chords at
different levels (few harmonics, so a hard cut mid-waveform is an audible step), a noise hit on
every beat (louder on downbeats), and a final chord that rings out for two seconds.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import beatedit.judge as judge_pkg
from beatedit.judge import JudgeInputError, find_pieces, judge_edit, source_profile
from beatedit.judge.analysis import profile

SR = 22050
BPM = 120.0
BEAT = 60.0 / BPM
PICKUP = 0.25  # s of sound before the first beat
SECTIONS = ((0.15, 57), (0.3, 60), (0.6, 65), (0.3, 62), (0.6, 65), (0.2, 57))  # (level, chord root MIDI)
BEATS_PER_SECTION = 16
N_BEATS = BEATS_PER_SECTION * len(SECTIONS)
TAIL = 2.0  # s the last chord rings after the last beat


def _chord(root: int, t: np.ndarray) -> np.ndarray:
    x = np.zeros_like(t)
    for interval in (0, 4, 7):
        f = 440.0 * 2 ** ((root + interval - 69) / 12)
        x += np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)
    return x / 4.0


@functools.lru_cache(maxsize=1)
def song() -> np.ndarray:
    rng = np.random.default_rng(3)
    n = int((PICKUP + N_BEATS * BEAT + TAIL) * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    p0 = int(PICKUP * SR)
    y[:p0] = 0.1 * _chord(SECTIONS[0][1], t[:p0]) * np.linspace(0, 1, p0)  # the pickup swell
    for k, (level, root) in enumerate(SECTIONS):
        a = p0 + int(k * BEATS_PER_SECTION * BEAT * SR)
        b = p0 + int((k + 1) * BEATS_PER_SECTION * BEAT * SR)
        if k == len(SECTIONS) - 1:  # the last chord rings out: the natural decay
            env = np.ones(n - a)
            env[b - a:] = np.exp(-np.arange(n - b) / (0.4 * SR))
            y[a:] += level * _chord(root, t[a:]) * env
        else:
            y[a:b] += level * _chord(root, t[a:b])
    hit = int(0.06 * SR)
    env = np.exp(-np.arange(hit) / (0.012 * SR))
    for i in range(N_BEATS):
        p = p0 + int(round(i * BEAT * SR))
        level = SECTIONS[i // BEATS_PER_SECTION][0]
        y[p:p + hit] += (1.0 if i % 4 == 0 else 0.5) * level * env * rng.standard_normal(hit)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


@functools.lru_cache(maxsize=1)
def src_profile():
    return source_profile(song(), SR)


def beat(i: float) -> int:
    """Source sample of beat ``i`` (fractional beats are off the grid)."""
    return int(round((PICKUP + i * BEAT) * SR))


def splice(spans: list[tuple[int, int]], crossfade_s: float = 0.0) -> tuple[np.ndarray, list[int]]:
    """Source spans laid end to end, with an equal-power crossfade centred on each splice; and the splice samples."""
    y = song().astype(np.float64)
    out = np.concatenate([y[a:b] for a, b in spans])
    c = int(crossfade_s * SR)
    padded = np.pad(y, (c, c))
    splices, p = [], 0
    for k, (a, b) in enumerate(spans):
        if k:
            splices.append(p)
            if c:
                h1, h2 = c // 2, c - c // 2
                w = (np.arange(c) + 0.5) / c
                prev_end = spans[k - 1][1]
                out[p - h1:p + h2] = (padded[prev_end - h1 + c:prev_end + h2 + c] * np.cos(np.pi / 2 * w)
                                      + padded[a - h1 + c:a + h2 + c] * np.sin(np.pi / 2 * w))
        p += b - a
    return out.astype(np.float32), splices


def fade_out(x: np.ndarray, seconds: float) -> np.ndarray:
    x = x.copy()
    n = int(seconds * SR)
    x[-n:] *= np.linspace(1.0, 0.0, n)
    return x


def judge(x: np.ndarray, target: float | None = None):
    return judge_edit(x, src_profile(), SR, len(x) / SR if target is None else target)


# ----------------------------------------------------------------------------- components
def test_untouched_source_scores_the_maximum():
    y = song()
    s = judge(y)
    assert (s.seams, s.tempo, s.ending, s.start, s.length) == (1.0, 1.0, 1.0, 1.0, 1.0), s.components()
    assert s.total == pytest.approx(1.0) and s.n_seams == 0 and s.coverage == pytest.approx(1.0)
    assert s.start_report.real and s.end_report.real
    assert s.beat_period == pytest.approx(BEAT, rel=0.02)


def test_hard_splice_mid_beat_scores_lower_seams_than_crossfade_on_the_beat():
    good, _ = splice([(0, beat(40)), (beat(72), len(song()))], crossfade_s=0.01)
    bad, _ = splice([(0, beat(40.37)), (beat(72.71), len(song()))])
    sg, sb = judge(good), judge(bad)
    assert sg.n_seams == 1 and sb.n_seams == 1
    assert sg.seams >= 0.95 and sb.seams < sg.seams - 0.3, (sg.seam_reports, sb.seam_reports)
    rg, rb = sg.seam_reports[0], sb.seam_reports[0]
    assert rb.click < rg.click and rb.phase < rg.phase  # the step is heard, and the beat grid slips
    assert abs(rg.phase_slip) < 0.05 and abs(rb.phase_slip) > 0.2
    assert sb.tempo <= sg.tempo and sb.total < sg.total


def test_ending_real_beats_long_fade_beats_abrupt_stop():
    n = len(song())
    real, _ = splice([(0, beat(32)), (beat(64), n)], crossfade_s=0.01)
    length = len(real)
    long_fade = fade_out(song()[:length], 6.0)
    abrupt = song()[:length]  # stops mid-song, at full level
    s_real, s_fade, s_cut = judge(real), judge(long_fade), judge(abrupt)
    assert s_real.end_report.real and not s_fade.end_report.real and not s_cut.end_report.real
    assert s_real.ending == 1.0
    assert 0.3 <= s_fade.ending <= 0.5 and s_fade.end_report.fade_s == pytest.approx(6.0, abs=0.4)
    assert s_cut.ending < s_fade.ending < s_real.ending
    assert s_cut.ending <= 0.2


def test_start_real_beats_fade_in_and_late_start():
    y = song()
    late = y[beat(16):]
    fade_in = late.copy()
    m = int(3.0 * SR)
    fade_in[:m] *= np.linspace(0.0, 1.0, m)
    s_real, s_late, s_fade = judge(y), judge(late), judge(fade_in)
    assert s_real.start == 1.0 and not s_late.start_report.real
    assert s_late.start < 0.5 and s_fade.start < 0.5
    assert s_late.start_report.missing_s == pytest.approx(16 * BEAT + PICKUP, abs=0.2)
    # the sound before the first beat is part of the start: dropping only the pickup loses it
    s_no_pickup = judge(y[beat(0):])
    assert not s_no_pickup.start_report.real and s_no_pickup.start < 1.0


def test_wrong_length_scores_lower():
    y = song()
    exact = judge(y, len(y) / SR)
    near = judge(y, len(y) / SR + 0.5 * BEAT)
    far = judge(y, len(y) / SR - 6 * BEAT)
    assert exact.length == 1.0 > near.length > far.length == 0.0
    assert exact.total > near.total > far.total
    assert (exact.seams, exact.ending) == (near.seams, near.ending)


def test_gain_and_channels_do_not_change_the_verdict(tmp_path):
    """A loudness-normalised (scaled) or stereo render is the same edit."""
    x, _ = splice([(0, beat(24)), (beat(56), len(song()))], crossfade_s=0.02)
    base = judge(x)
    quiet = judge(0.4 * x)
    stereo = judge_edit(np.stack([x, x]), src_profile(), SR, len(x) / SR)
    path = tmp_path / "edit.wav"
    sf.write(path, np.stack([x, x]).T, SR, subtype="FLOAT")
    from_file = judge_edit(path, src_profile(), None, len(x) / SR)
    for s in (quiet, stereo, from_file):
        assert s.total == pytest.approx(base.total, abs=0.02), (s.components(), base.components())
        assert s.n_seams == base.n_seams == 1


def test_bad_input_is_a_clear_error():
    with pytest.raises(JudgeInputError, match="target_seconds"):
        judge_edit(song(), src_profile(), SR, 0.0)
    with pytest.raises(JudgeInputError, match="non-finite"):
        judge_edit(np.full(SR, np.nan), src_profile(), SR, 1.0)
    with pytest.raises(JudgeInputError, match="too short"):
        judge_edit(np.zeros(100), src_profile(), SR, 1.0)
    with pytest.raises(JudgeInputError, match="cannot read"):
        judge_edit("/nonexistent/edit.wav", src_profile(), SR, 1.0)


# ----------------------------------------------------------------------------- the seam finder
@pytest.mark.parametrize("spans_beats, crossfade_s", [
    ([(0, 24), (40, 56), (72, 96)], 0.0),  # on the beat, hard
    ([(0, 24), (40, 56), (72, 96)], 0.02),  # on the beat, crossfaded
    ([(0, 20.3), (36.55, 50), (65.2, 80.8), (88.1, 96)], 0.0),  # off the beat, hard
    ([(0, 12), (8, 30), (46, 52), (80, 96)], 0.01),  # a jump back (a loop) and a 6-beat piece
])
def test_seam_finder_locates_known_splices(spans_beats, crossfade_s):
    n = len(song())
    spans = [(0 if a == 0 else beat(a), n if b == 96 else beat(b)) for a, b in spans_beats]
    x, truth = splice(spans, crossfade_s)
    pieces = find_pieces(profile(x.astype(np.float64), SR), src_profile())
    found = [p.start for p in pieces[1:]]
    assert len(found) == len(truth), (found, truth)
    assert np.max(np.abs(np.array(found) - truth)) / SR <= 0.02, (found, truth)
    for p, (a, _b) in zip(pieces, spans):
        assert abs(p.start + p.offset - a) <= 0.02 * SR and p.match > 0.9


# ----------------------------------------------------------------------------- independence
def _beatedit_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports stay inside the package by construction
                names.append("beatedit.judge" + ("." + node.module if node.module else ""))
            elif node.module:
                names.append(node.module)
    return [n for n in names if n == "beatedit" or n.startswith("beatedit.")]


def test_judge_imports_no_other_beatedit_module():
    """The judge must share no code with the listener, dense reward or front end (or anything else here)."""
    files = sorted(Path(judge_pkg.__file__).parent.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "judge.py"}
    for f in files:
        for name in _beatedit_imports(f):
            assert name == "beatedit.judge" or name.startswith("beatedit.judge."), f"{f.name} imports {name}"
        text = f.read_text()
        for banned in ("prefect", "mlflow", "dvc", "torch", "models."):
            assert f"import {banned}" not in text and f"from {banned}" not in text, f"{f.name}: {banned}"
