"""Audio loading: formats, odd rates and channel counts, bounded memory, and one AudioError reason per kind of bad file."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from beatedit.audio.io import AUDIO_EXTENSIONS, AudioError, audio_info, file_sha256, load_audio, load_mono, write_wav


def _tone(sr: int, seconds: float, freq: float = 440.0, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x * (0.5 + 0.5 * c) for c in range(channels)]).astype(np.float32)


def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


@pytest.mark.parametrize("src_sr,channels", [(48000, 2), (11025, 1), (44100, 2), (22050, 1)])
def test_odd_rates_and_channels_load_and_resample(tmp_path, src_sr, channels):
    path = tmp_path / f"tone_{src_sr}_{channels}.wav"
    write_wav(path, _tone(src_sr, 2.0, 440.0, channels), src_sr, subtype="FLOAT")
    audio, sr = load_audio(path)
    assert sr == src_sr and audio.shape == (channels, 2 * src_sr) and audio.dtype == np.float32
    y = load_mono(path, 22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == 2 * 22050  # exactly round(n * 22050 / src_sr)
    assert abs(_peak_hz(y, 22050) - 440.0) < 2.0  # still a 440 Hz tone after downmix + resampling
    # downmix = channel mean: amplitude of the mono tone is the mean of the channel amplitudes
    expected_amp = 0.5 * np.mean([0.5 + 0.5 * c for c in range(channels)])
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(expected_amp, rel=0.02)


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_every_supported_format_round_trips(tmp_path, ext):
    path = tmp_path / f"x{ext}"
    write_wav(path, _tone(44100, 1.5, 330.0, 2), 44100)
    y = load_mono(path, 22050)
    assert abs(len(y) - int(1.5 * 22050)) <= 1200  # mp3 frames may pad the end a little
    assert abs(_peak_hz(y, 22050) - 330.0) < 2.0
    assert audio_info(path)[:2] == (44100, 2)


def _bad(tmp_path, name: str, writer) -> str:
    path = tmp_path / name
    writer(path)
    return str(path)


@pytest.mark.parametrize("reason,name,writer", [
    ("undecodable", "garbage.wav", lambda p: p.write_bytes(b"RIFF\x00\x01this is not audio at all" * 50)),
    ("undecodable", "missing.wav", lambda p: None),
    ("empty", "zero_bytes.flac", lambda p: p.write_bytes(b"")),
    ("empty", "no_frames.wav", lambda p: sf.write(str(p), np.zeros((0, 1), np.float32), 22050)),
    ("silent", "silence.wav", lambda p: sf.write(str(p), np.zeros(22050 * 3, np.float32), 22050)),
    ("silent", "near_silence.wav", lambda p: sf.write(str(p), np.full(22050, 1e-6, np.float32), 22050, subtype="FLOAT")),
    ("nonfinite", "nan.wav", lambda p: sf.write(str(p), np.where(np.arange(22050) == 12345, np.nan, 0.1).astype(np.float32), 22050, subtype="FLOAT")),
    ("nonfinite", "inf.wav", lambda p: sf.write(str(p), np.where(np.arange(22050) == 5, np.inf, 0.1).astype(np.float32), 22050, subtype="FLOAT")),
    ("unsupported", "notes.txt", lambda p: p.write_text("hello")),
])
def test_bad_files_raise_audio_error_with_reason_and_file(tmp_path, reason, name, writer):
    path = _bad(tmp_path, name, writer)
    for load in (lambda: load_mono(path, 22050), lambda: load_audio(path)):
        with pytest.raises(AudioError) as info:
            load()
        assert info.value.reason == reason
        assert name in str(info.value)  # the message names the file
        assert isinstance(info.value, ValueError)


def test_nonfinite_reports_where(tmp_path):
    path = _bad(tmp_path, "nan_late.wav", lambda p: sf.write(str(p), np.where(np.arange(44100) == 33075, np.nan, 0.1).astype(np.float32), 22050, subtype="FLOAT"))
    with pytest.raises(AudioError, match=r"1\.500 s"):
        load_mono(path, 22050)


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, _tone(8000, 5.0), 8000)
    with pytest.raises(AudioError) as info:
        load_mono(path, 22050, max_seconds=4.0)
    assert info.value.reason == "too_long"
    assert load_mono(path, 22050, max_seconds=6.0).shape == (5 * 22050,)


def test_silent_files_accepted_when_asked(tmp_path):
    path = _bad(tmp_path, "silence.wav", lambda p: sf.write(str(p), np.zeros(2205, np.float32), 22050))
    assert np.all(load_mono(path, 22050, silence_dbfs=None) == 0)


def test_load_mono_memory_is_bounded_by_blocks(tmp_path):
    """A 3-minute 48 kHz stereo file: peak allocation stays well under its decoded float32 size."""
    sr, seconds = 48000, 180.0
    path = tmp_path / "long_stereo.wav"
    n = int(sr * seconds)
    with sf.SoundFile(str(path), "w", sr, 2, subtype="PCM_16") as f:  # written in chunks too
        for start in range(0, n, sr * 10):
            t = np.arange(start, min(n, start + sr * 10)) / sr
            x = 0.3 * np.sin(2 * np.pi * 220 * t)
            f.write(np.stack([x, x], axis=1))
    decoded_bytes = n * 2 * 4
    tracemalloc.start()
    y = load_mono(path, 22050)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(y) == int(seconds * 22050)
    assert peak < 0.5 * decoded_bytes, f"peak {peak / 1e6:.1f} MB vs decoded {decoded_bytes / 1e6:.1f} MB"


def test_write_wav_refuses_nan_and_clips_pcm(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "bad.wav", np.array([0.0, np.nan], np.float32), 22050)
    write_wav(tmp_path / "loud.wav", np.array([[2.0, -2.0, 0.5]], np.float32), 22050)
    back, _ = sf.read(str(tmp_path / "loud.wav"))
    assert back.max() <= 1.0 and back.min() >= -1.0 and back[2] == pytest.approx(0.5, abs=1e-4)


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "x.wav"
    write_wav(path, _tone(22050, 0.5), 22050)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
