"""Target lengths as users type them, and the exact-length time-stretch."""

from __future__ import annotations

import numpy as np
import pytest

from beatedit.editing.stretch import StretchError, stretch_to_length
from beatedit.editing.target import format_seconds, parse_duration, target_ratio_for


@pytest.mark.parametrize("text,seconds", [("30", 30.0), ("30.5", 30.5), ("90s", 90.0), ("2m", 120.0),
                                          ("1m05s", 65.0), ("1:05", 65.0), ("0:01:05", 65.0), (" 1:05.5 ", 65.5),
                                          (45, 45.0)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "-3", "0", "1:75", "", "nan", "inf", "s", "1:2:3:4", "3 apples"])
def test_bad_durations_are_clear_errors(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_ratio_needs_a_shorter_target():
    assert target_ratio_for(30, 60) == 0.5
    with pytest.raises(ValueError, match="not shorter than the song"):
        target_ratio_for(61, 60)
    assert format_seconds(65.25) == "1:05.2" or format_seconds(65.25) == "1:05.3"


def test_stretch_lands_on_the_sample_and_keeps_the_pitch():
    sr = 22050
    t = np.arange(int(10.2 * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :].repeat(2, axis=0)
    out, factor = stretch_to_length(y, sr, 10 * sr)
    assert out.shape == (2, 10 * sr) and factor == pytest.approx(1.02, abs=1e-4)
    spec = np.abs(np.fft.rfft(out[0, sr:3 * sr]))
    assert abs(np.fft.rfftfreq(2 * sr, 1 / sr)[spec.argmax()] - 440) < 2  # pitch preserved
    with pytest.raises(StretchError, match="speed change"):
        stretch_to_length(y, sr, 8 * sr)  # 27% is no longer a small stretch
