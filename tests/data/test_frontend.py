"""Front end: feature schema, stems + cache, beat / downbeat / phrase tracking, the 125 features, truth metrics.

Known synthetic signals must land in the right columns; real generated songs must be tracked
against their ground truth; bad input must raise AudioError with its reason.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf

from beatedit.audio import schema
from beatedit.audio.io import AudioError, write_wav
from beatedit.audio.beats import BeatGrid, grid_from_downbeats, track_beats
from beatedit.config import Config, CorpusConfig, FeaturesConfig, StemsConfig
from beatedit.audio.analysis import analyse_song
from beatedit.audio.features import extract_features
from beatedit.audio.frames import analyse_frames
from beatedit.audio.song import SongAnalysis
from beatedit.audio.stems import STEM_NAMES, StemBackendError, StemCache, separate
from beatedit.audio.truth import beat_f_measure, downbeat_f_measure, phrase_f_measure, song_beat_metrics, stem_sdr

SR = 22050
C = schema.col


# ----------------------------------------------------------------------------- synthetic music
def _kick(n: int) -> np.ndarray:
    t = np.arange(n) / SR
    return np.sin(2 * np.pi * np.cumsum(50 + 110 * np.exp(-t * 35)) / SR) * np.exp(-t * 14)


def _noise_hit(rng, n: int, decay: float) -> np.ndarray:
    t = np.arange(n) / SR
    return rng.standard_normal(n) * np.exp(-t * decay)


def _note(freq: float, n: int, harmonics: int = 4, decay: float = 1.0) -> np.ndarray:
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, harmonics + 1))
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * decay)
    env[-256:] *= np.linspace(1, 0, 256)
    return x * env


def synth_song(bpm: float, meter: int, bars: int, seed: int = 0, start: float = 0.3):
    """Kick on downbeats, snare on the other beats, hats on eighths, bass + a new chord every bar."""
    rng = np.random.default_rng(seed)
    ibi = 60.0 / bpm
    n_beats = bars * meter
    y = np.zeros(int((start + (n_beats + 2) * ibi) * SR))
    prog = [(60, 64, 67), (57, 60, 64), (65, 69, 72), (55, 59, 62)]
    beats = start + ibi * np.arange(n_beats)

    def add(x, at, gain):
        i = int(round(at * SR))
        y[i:i + len(x)] += gain * x[: len(y) - i]

    for b, t in enumerate(beats):
        pos, bar = b % meter, b // meter
        if pos == 0:
            add(_kick(int(0.3 * SR)), t, 0.9)
            chord = prog[bar % 4]
            add(_note(440 * 2 ** ((chord[0] - 24 - 69) / 12), int(ibi * meter * SR * 0.95), 3, 0.8), t, 0.4)
            for p in chord:
                add(_note(440 * 2 ** ((p - 69) / 12), int(ibi * meter * SR * 0.98), 4, 0.6), t, 0.12)
        else:
            add(_noise_hit(rng, int(0.15 * SR), 30), t, 0.25)
        for h in (0.0, 0.5):
            add(np.diff(_noise_hit(rng, int(0.04 * SR) + 1, 90)), t + h * ibi, 0.05)
    y = (0.8 * y / np.abs(y).max()).astype(np.float32)
    return y, beats, beats[::meter]


@pytest.fixture(scope="module")
def song44():
    return synth_song(112.0, 4, 16, seed=1)


@pytest.fixture(scope="module")
def song34():
    return synth_song(138.0, 3, 16, seed=2)


# ----------------------------------------------------------------------------- schema
def test_schema_has_125_unique_documented_columns():
    assert schema.N_FEATURES == 125 == len(schema.COLUMNS) == len(set(schema.COLUMN_NAMES))
    for c in schema.COLUMNS:
        assert c.name and c.unit and c.description
        assert c.source in {"mix", "mix_harmonic", "drums", "bass", "other", "grid"}
    assert schema.COLUMN_NAMES[schema.col("rms")] == "rms"
    with pytest.raises(KeyError, match="no_such"):
        schema.col("no_such")


def _song(n: int = 40) -> SongAnalysis:
    bt = 0.5 * np.arange(n) + 0.25
    grid = grid_from_downbeats(bt, 120.0, 4, np.arange(0, n, 4))
    return SongAnalysis("s", "s.wav", "0" * 64, 22050, 1, float(bt[-1] + 0.5), 120.0, 4, bt, grid.bar_starts, grid.beat_in_bar,
                        grid.phrase_starts, grid.section_starts, np.zeros((n, schema.N_FEATURES), np.float32))


def test_song_file_with_another_schema_version_is_refused(tmp_path):
    path = tmp_path / "s.npz"
    _song().save(path)
    assert SongAnalysis.load(path).schema_version == schema.SCHEMA_VERSION
    # rewrite the stored meta with another schema version
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta["schema_version"] = "beatfeat-v0"
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = tmp_path / "old.npz"
    np.savez(bad, **arrays)
    with pytest.raises(schema.SchemaMismatchError, match="beatfeat-v0"):
        SongAnalysis.load(bad)


# ----------------------------------------------------------------------------- features of known signals
def _fixed_grid(n_beats: int, ibi: float, meter: int = 4, start: float = 0.0) -> BeatGrid:
    bt = start + ibi * np.arange(n_beats)
    return grid_from_downbeats(bt, 60.0 / ibi, meter, np.arange(0, n_beats, meter))


def _features(y, grid, cfg=FeaturesConfig()):
    stems = separate(y, SR, StemsConfig())
    return extract_features(y, SR, stems, grid, cfg)


def test_louder_beat_has_higher_rms_columns():
    ibi, n = 0.5, 16
    rng = np.random.default_rng(0)
    y = np.zeros(int((n + 1) * ibi * SR), np.float32)
    for b in range(n):
        i = int(b * ibi * SR)
        y[i:i + int(ibi * SR)] = 0.1 * rng.standard_normal(int(ibi * SR)) * (3.0 if b == 9 else 1.0)
    F = _features(y, _fixed_grid(n, ibi))
    rms = F[:, C("rms")]
    assert np.argmax(rms) == 9 and rms[9] > 2.5 * np.median(rms)
    assert np.argmax(F[:, C("rms_db")]) == 9 and F[9, C("rms_db")] - np.median(F[:, C("rms_db")]) > 8.0
    assert F[9, C("rms_delta_db")] > 8.0 and F[10, C("rms_delta_db")] < -8.0 and F[0, C("rms_delta_db")] == 0.0
    for k in range(4):
        assert np.argmax(F[:, C(f"rms_sub_{k}")]) == 9
    assert np.all(np.isfinite(F)) and F.dtype == np.float32 and F.shape == (n, 125)


def test_c_major_triad_peaks_at_c_e_g():
    t = np.arange(int(4.0 * SR)) / SR
    y = sum(0.2 * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in (60, 64, 67)).astype(np.float32)
    F = _features(y, _fixed_grid(8, 0.5))
    chroma = F[:, [C(f"chroma_{p}") for p in schema._PITCH]]
    top3 = {schema._PITCH[i] for i in np.argsort(chroma[2:6].mean(0))[-3:]}
    assert top3 == {"C", "E", "G"}
    assert chroma.max() <= 1.0 + 1e-6 and chroma.min() >= 0.0
    # an A-minor triad moves the peaks: A, C, E
    y2 = sum(0.2 * np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in (57, 60, 64)).astype(np.float32)
    chroma2 = _features(y2, _fixed_grid(8, 0.5))[:, [C(f"chroma_{p}") for p in schema._PITCH]]
    assert {schema._PITCH[i] for i in np.argsort(chroma2[2:6].mean(0))[-3:]} == {"A", "C", "E"}


def test_stem_columns_follow_the_stems():
    """A kick-only passage then a bass-only passage: drums_share high then bass_share high."""
    ibi = 0.5
    y = np.zeros(int(16.5 * ibi * SR), np.float32)
    for b in range(8):
        i = int(b * ibi * SR)
        y[i:i + int(0.2 * SR)] += 0.8 * np.diff(np.concatenate([[0], np.random.default_rng(b).standard_normal(int(0.2 * SR))]))[: int(0.2 * SR)] * np.exp(-np.arange(int(0.2 * SR)) / SR * 40)
    t = np.arange(int(8 * ibi * SR)) / SR
    y[int(8 * ibi * SR): int(8 * ibi * SR) + len(t)] += (0.4 * np.sin(2 * np.pi * 82.4 * t)).astype(np.float32)
    F = _features(y, _fixed_grid(16, ibi))
    assert F[1:7, C("drums_share")].mean() > 0.6 > F[9:15, C("drums_share")].mean()
    assert F[9:15, C("bass_share")].mean() > 0.6 > F[1:7, C("bass_share")].mean()
    assert F[9:15, C("bass_centroid")].mean() < 0.3  # kHz: a low sine
    shares = F[:, [C("drums_share"), C("bass_share"), C("other_share")]]
    assert np.allclose(shares.sum(1), 1.0, atol=1e-3)


@pytest.mark.parametrize("which", ["song44", "song34"])
def test_tracker_finds_beats_meter_downbeats_and_beat_in_bar(request, which):
    y, beats, downbeats = request.getfixturevalue(which)
    meter = 4 if which == "song44" else 3
    stems = separate(y, SR, StemsConfig())
    grid = track_beats(y, SR, stems, FeaturesConfig())
    grid.validate()
    assert beat_f_measure(grid.beat_times, beats) >= 0.95
    assert grid.meter == meter
    assert downbeat_f_measure(grid.downbeat_times, downbeats) >= 0.9
    F = extract_features(y, SR, stems, grid, FeaturesConfig())
    bib = F[:, C("beat_in_bar")]
    first = grid.bar_starts[0]
    idx = np.arange(len(bib))
    assert np.array_equal(bib[first:], (idx[first:] - first) % meter)  # counts 0..meter-1 from each downbeat
    assert set(np.unique(bib)) == set(range(meter))
    assert np.array_equal(np.flatnonzero(F[:, C("is_downbeat")]), grid.bar_starts)
    assert np.all(F[:, C("meter")] == meter)
    # structure invariants
    assert set(grid.section_starts) <= set(grid.phrase_starts) <= set(grid.bar_starts)
    assert np.all(F[grid.phrase_starts, C("is_phrase_start")] == 1) and F[:, C("is_phrase_start")].sum() == len(grid.phrase_starts)
    assert 0.0 <= F[:, C("phrase_position")].min() and F[:, C("phrase_position")].max() < 1.0
    true_bpm = 60.0 / np.diff(beats).mean()
    assert np.median(F[:, C("local_tempo")]) == pytest.approx(true_bpm, rel=0.02)
    assert np.mean(np.abs(F[:, C("local_tempo")] / true_bpm - 1) < 0.05) > 0.9


def test_features_stay_finite_across_digital_silence(song44):
    y, beats, _ = song44
    y = y.copy()
    y[int(6 * SR): int(9 * SR)] = 0.0
    F = _features(y, grid_from_downbeats(beats, 112.0, 4, np.arange(0, len(beats), 4)))
    assert np.all(np.isfinite(F))
    silent = (beats > 6.2) & (beats < 8.4)
    assert np.all(F[silent, C("rms_db")] == -80.0) and np.all(F[silent, C("rms")] == 0.0)


# ----------------------------------------------------------------------------- stems and cache
def test_hpss_stems_sum_to_the_mix_and_sort_content(song44):
    y, _, _ = song44
    stems = separate(y, SR, StemsConfig())
    assert set(stems) == set(STEM_NAMES) and all(len(v) == len(y) and v.dtype == np.float32 for v in stems.values())
    assert np.max(np.abs(sum(stems.values()) - y)) < 1e-4  # masks sum to one
    t = np.arange(2 * SR) / SR
    low = (0.5 * np.sin(2 * np.pi * 70 * t)).astype(np.float32)
    s = separate(low, SR, StemsConfig())
    energy = {k: float(np.sum(v.astype(np.float64) ** 2)) for k, v in s.items()}
    assert energy["bass"] > 0.8 * np.sum(low.astype(np.float64) ** 2) and energy["bass"] == max(energy.values())  # a low steady tone is bass


def test_block_processing_equals_whole_signal():
    """Blocks + context give the same stems as separating any prefix on its own (no seams at block edges)."""
    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal(int(50 * SR))).astype(np.float32)  # > 2 blocks of 20 s
    full = separate(y, SR, StemsConfig())
    part = separate(y[: int(25 * SR)], SR, StemsConfig())
    for k in STEM_NAMES:
        # identical away from the prefix's end (where its own edge differs)
        assert np.max(np.abs(full[k][: int(24 * SR)] - part[k][: int(24 * SR)])) < 1e-5


def test_stem_cache_second_call_hits_and_keys_on_params(tmp_path, song44):
    y, _, _ = song44
    wav = tmp_path / "song.wav"
    write_wav(wav, y, SR, subtype="FLOAT")
    cache = StemCache(tmp_path / "stems")
    cfg = StemsConfig()
    a, hit_a = cache.get_or_compute(wav, cfg, SR)
    b, hit_b = cache.get_or_compute(wav, cfg, SR)
    assert (hit_a, hit_b) == (False, True)
    for k in STEM_NAMES:
        assert np.array_equal(a[k], b[k])  # fresh stems are stored precision too: a hit changes nothing
    index = json.loads((tmp_path / "stems" / "index.json").read_text())
    (key, entry), = index.items()
    assert entry["backend"] == "hpss" and entry["source"] == str(wav) and entry["sr"] == SR
    stored = np.load(cache.entry_dir(key) / "drums.npy")
    assert stored.dtype == np.float16
    # other parameters -> another entry; other audio bytes -> another entry
    _, hit_c = cache.get_or_compute(wav, dataclasses.replace(cfg, bass_cutoff_hz=120.0), SR)
    assert hit_c is False
    wav2 = tmp_path / "song2.wav"
    write_wav(wav2, 0.5 * y, SR, subtype="FLOAT")
    assert cache.get_or_compute(wav2, cfg, SR)[1] is False
    assert len(json.loads((tmp_path / "stems" / "index.json").read_text())) == 3


def test_demucs_without_weights_says_where_to_put_them(tmp_path):
    cfg = StemsConfig(backend="demucs", demucs_model_dir=str(tmp_path / "demucs_weights"))
    with pytest.raises(StemBackendError, match="demucs_weights") as info:
        separate(np.zeros(SR, np.float32), SR, cfg)
    assert "never downloads" in str(info.value)
    (tmp_path / "demucs_weights").mkdir()
    (tmp_path / "demucs_weights" / "htdemucs.yaml").write_text("models: [955717e8]\n")
    with pytest.raises(StemBackendError, match="pip install demucs"):
        separate(np.zeros(SR, np.float32), SR, cfg)


# ----------------------------------------------------------------------------- a generated corpus song end to end
@pytest.fixture(scope="module")
def corpus_song(tmp_path_factory):
    from beatedit.corpus.generator import generate_corpus

    root = tmp_path_factory.mktemp("corpus")
    manifest = generate_corpus(CorpusConfig(n_songs=2, min_seconds=25.0, max_seconds=35.0, sample_rate=SR, seed=5), root, progress=False)
    return root, manifest


def test_analyse_song_on_generated_songs_meets_truth(corpus_song, tmp_path):
    root, manifest = corpus_song
    cfg = Config()
    cache = StemCache(tmp_path / "stems")
    for rec in manifest:
        song = analyse_song(rec["path"], cfg, cache)
        truth = json.loads((root / "truth" / f"{rec['song_id']}.json").read_text())
        m = song_beat_metrics(song, truth)
        assert m["beat_f_measure"] >= 0.95, m
        assert m["downbeat_f_measure"] >= 0.85, m
        assert m["meter_accuracy"] == 1.0 and m["tempo_accuracy"] == 1.0
        assert song.stems_backend == "hpss" and song.source_sr == SR and song.extra["stems_cache_hit"] is False
        F = song.features
        assert F.shape == (song.n_beats, 125) and np.all(np.isfinite(F))
        # no zero-padded column: every column varies over the song except the song-constant meter (and, in a
        # song this short, possibly the phrase length)
        constant = [schema.COLUMN_NAMES[j] for j in range(125) if np.ptp(F[:, j]) == 0]
        assert "meter" in constant and set(constant) <= {"meter", "phrase_length_bars"}, constant
        path = tmp_path / f"{song.song_id}.npz"
        song.save(path)
        again = SongAnalysis.load(path)
        assert np.array_equal(again.features, F) and again.source_hash == song.source_hash
    # the second analysis hits the stem cache and gives identical features
    song2 = analyse_song(manifest[0]["path"], cfg, cache)
    assert song2.extra["stems_cache_hit"] is True
    assert np.array_equal(song2.features, SongAnalysis.load(tmp_path / f"{manifest[0]['song_id']}.npz").features)


def test_too_few_beats_is_too_short(tmp_path):
    y, _, _ = synth_song(100.0, 4, 3, seed=4)  # 12 beats < min_beats 32
    path = tmp_path / "short.wav"
    write_wav(path, y, SR)
    with pytest.raises(AudioError) as info:
        analyse_song(path, Config(), StemCache(tmp_path / "stems"))
    assert info.value.reason == "too_short" and "short.wav" in str(info.value)
    tiny = tmp_path / "tiny.wav"
    write_wav(tiny, y[: SR], SR)
    with pytest.raises(AudioError, match="too_short"):
        analyse_song(tiny, Config(), StemCache(tmp_path / "stems"))


# ----------------------------------------------------------------------------- truth metrics
def test_truth_metrics_can_fail():
    ref = 0.5 * np.arange(40) + 0.3
    assert beat_f_measure(ref, ref) == 1.0
    assert beat_f_measure(ref + 0.05, ref) == 1.0 and beat_f_measure(ref + 0.1, ref) == 0.0  # +-70 ms
    assert beat_f_measure(ref[::2], ref) == pytest.approx(2 / 3, abs=0.02)  # half tempo
    assert phrase_f_measure(ref[::8] + 0.45, ref[::8], beat_period=0.5) == 1.0  # within one beat
    assert phrase_f_measure(ref[::8] + 0.8, ref[::8], beat_period=0.5) == 0.0
    x = np.random.default_rng(0).standard_normal(10000)
    assert stem_sdr(x, x) > 60 and stem_sdr(np.zeros_like(x), x) == pytest.approx(0.0, abs=1e-6)
    assert stem_sdr(x + 0.1 * x, x) == pytest.approx(20.0, abs=1e-6)


def test_a_silent_reference_stem_has_no_sdr(tmp_path):
    """A no_drums hard song's drums stem is silent: its SDR (about -100 dB whatever the estimate) is left out."""
    from beatedit.audio.truth import corpus_stem_sdr

    sr = 8000
    x = np.random.default_rng(0).standard_normal(sr).astype(np.float32) * 0.1
    for name, sig in (("drums", np.zeros_like(x)), ("bass", x), ("harmony", x), ("lead", 0.5 * x)):
        sf.write(tmp_path / f"{name}.flac", sig, sr, subtype="PCM_16")
    est = {"drums": 0.01 * x, "bass": x, "other": 1.5 * x}
    sdr = corpus_stem_sdr(est, tmp_path, sr)
    assert set(sdr) == {"bass", "other"} and sdr["bass"] > 30 and sdr["other"] > 30
    sf.write(tmp_path / "drums.flac", x, sr, subtype="PCM_16")
    assert set(corpus_stem_sdr(est, tmp_path, sr)) == {"drums", "bass", "other"}


def test_frame_analysis_is_independent_of_block_size(song44, monkeypatch):
    import beatedit.audio.frames as frames_mod

    y, _, _ = song44
    stems = separate(y, SR, StemsConfig())
    a = analyse_frames(y, SR, stems, FeaturesConfig())
    monkeypatch.setattr(frames_mod, "_BLOCK_FRAMES", 97)
    b = analyse_frames(y, SR, stems, FeaturesConfig())
    for name in ("mel_db", "chroma", "contrast", "rms", "onset", "centroid", "rolloff"):
        assert np.allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-4), name


def test_duple_contrast_separates_two_from_four_beats_per_bar():
    """features.meter2_ratio: folded by 2, a 2/4 bar's downbeats line up (contrast ~1.5x the one folded by 4);
    a 4/4 bar with a weak third beat gives about half."""
    from beatedit.audio.beats import _fold_contrast
    from beatedit.config import FeaturesConfig

    two = np.tile([1.0, 0.0], 32)
    four = np.tile([1.0, 0.0, 0.2, 0.0], 16)
    r2 = _fold_contrast(two, 2)[0] / _fold_contrast(two, 4)[0]
    r4 = _fold_contrast(four, 2)[0] / _fold_contrast(four, 4)[0]
    assert r2 == pytest.approx(1.5) and r4 < 0.7 and r4 < FeaturesConfig().meter2_ratio < r2
