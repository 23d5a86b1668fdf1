"""The generated corpus: determinism, exact ground truth, stems that sum to the mix, audible structure."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from beatedit.config import ConfigError, CorpusConfig, default_params_yaml, load_config
from beatedit.corpus.generator import HARD_TRAITS, STEM_NAMES, corpus_songs, generate_corpus, generate_song, plan_song

# two ordinary songs and one hard one (hard_000 of seed 7: slow 2/2 with drums)
SMALL = CorpusConfig(n_songs=3, min_seconds=20.0, max_seconds=30.0, sample_rate=22050, seed=7, hard_share=0.34)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The small corpus twice with the same seed, once with another seed."""
    roots = {}
    for name, cfg in (("a", SMALL), ("b", SMALL), ("other", CorpusConfig(**{**SMALL.__dict__, "seed": 8}))):
        root = tmp_path_factory.mktemp(name) / "corpus"
        roots[name] = (root, generate_corpus(cfg, root, progress=False))
    return roots


def test_layout_and_manifest(corpora):
    root, manifest = corpora["a"]
    assert [m["song_id"] for m in manifest] == ["song_000", "song_001", "hard_000"]
    assert [m["traits"] for m in manifest] == [[], [], ["slow_cut_time"]]
    assert json.loads((root / "manifest.json").read_text()) == manifest
    for m in manifest:
        info = sf.info(m["path"])
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, SMALL.sample_rate)
        assert Path(m["path"]) == root / "audio" / f"{m['song_id']}.wav"
        for stem in STEM_NAMES:
            sinfo = sf.info(root / "stems" / m["song_id"] / f"{stem}.flac")
            assert (sinfo.format, sinfo.subtype, sinfo.channels, sinfo.frames) == ("FLAC", "PCM_16", 1, info.frames)
        truth = json.loads((root / "truth" / f"{m['song_id']}.json").read_text())
        assert truth["song_id"] == m["song_id"]
        assert abs(info.frames / SMALL.sample_rate - truth["duration"]) < 2 / SMALL.sample_rate
        assert SMALL.min_seconds <= m["duration"] <= SMALL.max_seconds
        assert (m["tempo"], m["meter"], m["key"], m["traits"]) == (truth["tempo"], truth["meter"], truth["key"], truth["traits"])
        assert [s["label"] for s in m["sections"]] == [s["label"] for s in truth["sections"]]


def test_same_seed_gives_byte_identical_files(corpora):
    (root_a, man_a), (root_b, man_b) = corpora["a"], corpora["b"]
    files_a, files_b = _files(root_a), _files(root_b)
    assert sorted(files_a) == sorted(files_b)
    assert len([f for f in files_a if f.endswith(".flac")]) == 3 * len(STEM_NAMES)
    for name in files_a:
        if name != "manifest.json":  # the manifest holds each root's own paths
            assert files_a[name] == files_b[name], name
    strip = lambda man, root: json.dumps(man).replace(str(root), "ROOT")  # noqa: E731
    assert strip(man_a, root_a) == strip(man_b, root_b)


def test_other_seed_gives_other_songs(corpora):
    root_a, root_o = corpora["a"][0], corpora["other"][0]
    for name in ("song_000", "song_001", "hard_000"):
        assert (root_a / "audio" / f"{name}.wav").read_bytes() != (root_o / "audio" / f"{name}.wav").read_bytes()
        assert json.loads((root_a / "truth" / f"{name}.json").read_text())["beats"] != json.loads(
            (root_o / "truth" / f"{name}.json").read_text())["beats"]


def test_stems_sum_exactly_to_the_mix(corpora):
    root, manifest = corpora["a"]
    for m in manifest:
        mix, sr = sf.read(m["path"], dtype="int16")
        total = np.zeros(len(mix), dtype=np.int64)
        for stem in STEM_NAMES:
            x, sr_stem = sf.read(root / "stems" / m["song_id"] / f"{stem}.flac", dtype="int16")
            assert sr_stem == sr and len(x) == len(mix)
            if stem == "drums" and "no_drums" in m["traits"]:
                assert not x.any(), f"{m['song_id']} has no drums but its drums stem is not silent"
            else:
                assert np.sqrt(np.mean(x.astype(float) ** 2)) > 100, f"{m['song_id']}/{stem} is (nearly) silent"
            total += x
        np.testing.assert_array_equal(total, mix.astype(np.int64))
        assert np.abs(mix).max() > 3000  # not a trivially quiet mix


# time signature -> (meter, pulses per beat, tempo range of the beat)
SIGNATURES = {"4/4": (4, 2, (70, 170)), "3/4": (3, 2, (70, 170)), "6/8": (2, 3, (45, 100)), "9/8": (3, 3, (45, 100)),
              "12/8": (4, 3, (45, 100)), "2/2": (2, 4, (50, 80))}


def _check_truth(t: dict, cfg: CorpusConfig) -> None:
    beats = np.asarray(t["beats"])
    n, m, tempo, drift = len(beats), t["meter"], t["tempo"], abs(t["tempo_drift"])
    hard = t["song_id"].startswith("hard_")
    assert bool(t["traits"]) == hard and set(t["traits"]) <= set(HARD_TRAITS)
    meter, sub, (lo, hi) = SIGNATURES[t["time_signature"]]
    assert (m, t["subdivision"]) == (meter, sub) and lo <= tempo <= hi and n == t["n_beats"]
    assert ("compound" in t["traits"]) == (sub == 3) and ("slow_cut_time" in t["traits"]) == (sub == 4)
    if not hard:
        assert t["time_signature"] in ("4/4", "3/4")
    rit_section, rit_final = t["ritardando"]
    expressive = "expressive" in t["traits"]
    assert expressive == (rit_final > 0) == (t["timing_jitter_ms"] > 0)
    if expressive:  # a stronger drift, a ritardando into section ends and a stronger one into the end, jitter of a few ms
        assert 0.05 <= drift <= 0.1 and 0.06 <= rit_section <= 0.15 and 0.15 <= rit_final <= 0.35 and 3 <= t["timing_jitter_ms"] <= 12
    else:
        assert drift <= 0.05 and rit_section == 0
    # beats strictly increasing, inside the song, starting soon after t=0
    assert np.all(np.diff(beats) > 0) and 0 < beats[0] < 1.0 and beats[-1] < t["duration"]
    assert cfg.min_seconds <= t["duration"] <= cfg.max_seconds
    # beat spacing matches the tempo up to the drift (a linear ramp over +-drift/2) and the ritardando
    ibi = np.diff(beats)
    period = 60.0 / tempo
    assert np.all(ibi >= period / (1 + drift / 2) - 1e-5) and np.all(ibi <= (1 + rit_final) * period / (1 - drift / 2) + 1e-5)
    if expressive:  # a section's last beat is slower than a bar before; the song's end slows down more
        assert all(ibi[s["end_beat"] - 1] > ibi[s["end_beat"] - 1 - m] * (1 + rit_section / 2) for s in t["sections"][:-1])
        assert ibi[-1] > ibi[-1 - 2 * m] * (1 + rit_final / 3)
    else:
        assert abs((n - 1) - tempo * (beats[-1] - beats[0]) / 60) <= n * drift**2 / 10 + drift + 0.01  # n = tempo x span / 60
        assert abs(n - tempo * t["duration"] / 60) <= tempo * 1.5 / 60 + 1  # the song adds < 1.5 s before/after its beats
        if drift == 0:
            np.testing.assert_allclose(ibi, period, atol=1e-5)
        else:  # the real beat times are listed: the spacing changes monotonically
            assert abs(ibi[-1] / ibi[0] - 1) > drift / 2
    # a downbeat every `meter` beats, beat_in_bar counting 0..meter-1
    assert t["bars"] == list(range(0, n, m)) and n % m == 0
    assert t["beat_in_bar"] == [i % m for i in range(n)]
    np.testing.assert_allclose(t["downbeats"], beats[::m])
    # phrases and sections on bar lines; sections contiguous, made of 4/8-bar phrases, labelled
    bars = set(t["bars"])
    assert set(t["phrase_starts"]) <= bars and set(t["section_starts"]) <= set(t["phrase_starts"])
    np.testing.assert_allclose(t["phrase_start_times"], beats[t["phrase_starts"]])
    np.testing.assert_allclose(t["section_start_times"], beats[t["section_starts"]])
    secs = t["sections"]
    assert [s["start_beat"] for s in secs] == t["section_starts"] and secs[0]["start_beat"] == 0
    assert secs[-1]["end_beat"] == n
    for s, nxt in zip(secs, secs[1:] + [None]):
        assert s["label"] in ("intro", "verse", "chorus", "bridge", "outro")
        assert s["bars"] % 4 == 0 and s["end_beat"] - s["start_beat"] == s["bars"] * m
        assert s["start_time"] == pytest.approx(beats[s["start_beat"]], abs=1e-6)
        if nxt is not None:
            assert s["end_beat"] == nxt["start_beat"] and s["end_time"] == nxt["start_time"]
        inside = [p for p in t["phrase_starts"] if s["start_beat"] <= p < s["end_beat"]]
        lengths = np.diff(inside + [s["end_beat"]]) // m
        assert set(lengths.tolist()) <= {4, 8}
    labels = [s["label"] for s in secs]
    assert "verse" in labels and "chorus" in labels


def test_ground_truth_is_consistent(corpora):
    root, manifest = corpora["a"]
    assert len(manifest) == SMALL.n_songs
    for m in manifest:
        _check_truth(json.loads((root / "truth" / f"{m['song_id']}.json").read_text()), SMALL)


def test_default_corpus_plans_cover_the_spec():
    """Plans only (cheap): every default-sized song is consistent, and the corpus varies as specified."""
    cfg = CorpusConfig()
    truths = [plan_song(i, cfg) for i in range(48)]
    for t in truths:
        _check_truth(t, cfg)
    tempi = [t["tempo"] for t in truths]
    assert min(tempi) < 90 and max(tempi) > 150
    share_3_4 = np.mean([t["meter"] == 3 for t in truths])
    assert 0.1 <= share_3_4 <= 0.45
    assert any(t["swing"] > 0 for t in truths) and any(t["tempo_drift"] != 0 for t in truths)
    assert len({t["key"] for t in truths}) >= 8
    full = [t for t in truths if [s["label"] for s in t["sections"]][:3] == ["intro", "verse", "chorus"]]
    assert len(full) == len(truths)
    assert any("bridge" in [s["label"] for s in t["sections"]] for t in truths)


def test_default_corpus_has_a_quarter_of_hard_songs_after_the_ordinary_ones():
    ids = [sid for sid, _, _ in corpus_songs(CorpusConfig())]
    assert ids == [f"song_{i:03d}" for i in range(36)] + [f"hard_{i:03d}" for i in range(12)]
    assert [sid for sid, _, _ in corpus_songs(CorpusConfig(hard_share=0.0))] == [f"song_{i:03d}" for i in range(48)]
    assert [sid for sid, _, _ in corpus_songs(CorpusConfig(n_songs=5, hard_share=1.0))] == [f"hard_{i:03d}" for i in range(5)]


def test_hard_plans_cover_every_trait():
    """Plans only: 200 hard songs are consistent and draw every trait at about the intended rates."""
    cfg = CorpusConfig()
    truths = [plan_song(i, cfg, hard=True) for i in range(200)]
    for t in truths:
        _check_truth(t, cfg)
        assert t["traits"], t["song_id"]
    share = {trait: np.mean([trait in t["traits"] for t in truths]) for trait in HARD_TRAITS}
    assert 0.4 <= share["no_drums"] <= 0.65 and 0.3 <= share["compound"] <= 0.55
    assert 0.2 <= share["slow_cut_time"] <= 0.4 and 0.3 <= share["expressive"] <= 0.55
    assert {t["time_signature"] for t in truths} == {"4/4", "3/4", "6/8", "9/8", "12/8", "2/2"}
    assert any(t["swing"] > 0 for t in truths) and any(0 < abs(t["tempo_drift"]) < 0.05 for t in truths)
    assert plan_song(0, cfg, hard=True) != plan_song(0, CorpusConfig(seed=cfg.seed + 1), hard=True)
    assert plan_song(0, cfg, hard=True)["beats"] != plan_song(0, cfg)["beats"]  # its own stream, not song_000's


# the in-memory int16 mix + stems (sorted by name) of song_000 of SMALL written by generator version 1 (before hard songs)
SONG_000_V1_SHA256 = "f5ef1b9833eaf3898acda5f1d13a8c9aa0a12d233fcd64223dde3066b75e0dcd"


def test_ordinary_songs_do_not_depend_on_hard_share(tmp_path):
    """Listeners' votes refer to song_NNN: hard songs are appended without changing an ordinary song's bytes."""
    song = generate_song(0, SMALL)
    h = hashlib.sha256(song.mix.tobytes())
    for name in sorted(song.stems):
        h.update(song.stems[name].tobytes())
    assert h.hexdigest() == SONG_000_V1_SHA256
    roots = {}
    for share in (0.0, 0.5):
        cfg = CorpusConfig(**{**SMALL.__dict__, "n_songs": 2, "hard_share": share})
        roots[share] = tmp_path / str(share)
        ids = [m["song_id"] for m in generate_corpus(cfg, roots[share], progress=False)]
        assert ids == (["song_000", "song_001"] if share == 0 else ["song_000", "hard_000"])
    files = ["audio/song_000.wav", "truth/song_000.json"] + [f"stems/song_000/{s}.flac" for s in STEM_NAMES]
    for f in files:
        assert (roots[0.0] / f).read_bytes() == (roots[0.5] / f).read_bytes(), f


def test_hard_songs_render_their_traits():
    """Audio-level checks of each trait on short songs: silent drums, ternary / quarter subdivisions, jittered onsets."""
    cfg = CorpusConfig(n_songs=4, min_seconds=20.0, max_seconds=30.0, seed=8, hard_share=0.75)
    songs = {sid: generate_song(i, cfg, hard) for sid, i, hard in corpus_songs(cfg) if hard}
    assert {sid: s.truth["traits"] for sid, s in songs.items()} == {
        "hard_000": ["no_drums", "slow_cut_time"], "hard_001": ["compound"], "hard_002": ["expressive"]}
    for s in songs.values():
        _check_truth(s.truth, cfg)
        np.testing.assert_array_equal(sum(x.astype(np.int32) for x in s.stems.values()), s.mix.astype(np.int32))
    assert not songs["hard_000"].stems["drums"].any() and _rms(songs["hard_000"].stems["bass"]) > 100
    sr = cfg.sample_rate

    def onset_share(x: np.ndarray, beats: np.ndarray, fraction: float) -> float:
        """Share of beats with an attack (a sharp rise of the 10 ms envelope) at beat + fraction of the beat."""
        env = np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(int(0.01 * sr)) / int(0.01 * sr), mode="same"))
        hits = 0
        for b0, b1 in zip(beats[:-1], beats[1:]):
            at = int((b0 + fraction * (b1 - b0)) * sr)
            hits += env[at + int(0.012 * sr)] > 2 * env[at - int(0.012 * sr)] + 50
        return hits / (len(beats) - 1)

    compound = songs["hard_001"]
    beats = np.asarray(compound.truth["beats"])
    # hats on the eighths (a third of the beat), the bass's ternary lilt on the last eighth; nothing in between eighths
    share = {f: onset_share(compound.stems["bass"], beats, f) for f in (1 / 2, 2 / 3)}
    assert onset_share(compound.stems["drums"], beats, 1 / 3) > 0.3 and share[2 / 3] > 0.3 > 0.05 > share[1 / 2]
    cut = songs["hard_000"]
    beats = np.asarray(cut.truth["beats"])
    assert cut.truth["meter"] == 2 and 50 <= cut.truth["tempo"] <= 80
    assert onset_share(cut.stems["bass"], beats, 1 / 2) > 0.5  # quarter motion inside the half-note beat

    def kick_offsets(s) -> np.ndarray:
        """Onset of the downbeat kick (first sample above 30% of the window's peak) minus the true downbeat, s."""
        x = np.abs(s.stems["drums"].astype(np.float64))
        out = []
        for t in s.truth["downbeats"]:
            w = x[int((t - 0.03) * sr): int((t + 0.05) * sr)]
            out.append(np.argmax(w > 0.3 * w.max()) / sr - 0.03)
        return np.asarray(out)

    again = generate_song(2, cfg, hard=True)  # the jitter is seeded: the same config renders the same bytes
    assert np.array_equal(again.mix, songs["hard_002"].mix) and again.truth == songs["hard_002"].truth
    steady, expressive = kick_offsets(compound), kick_offsets(songs["hard_002"])
    assert np.std(steady) < 0.001 and np.abs(steady).max() < 0.003
    jitter = songs["hard_002"].truth["timing_jitter_ms"] / 1000
    assert 0.5 * jitter < np.std(expressive) < 1.5 * jitter and np.abs(expressive).max() <= 0.021


def test_frozen_testset_gets_the_same_hard_share(tmp_path):
    import yaml

    from beatedit.paths import frozen_testset_overrides

    data = yaml.safe_load(default_params_yaml())
    data["data"]["corpus"]["hard_share"] = 0.4
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    frozen = load_config(path, frozen_testset_overrides(cfg))
    assert frozen.data.corpus.hard_share == 0.4 and frozen.data.corpus.seed == cfg.report.corpus_seed
    n_hard = sum(hard for _, _, hard in corpus_songs(frozen.data.corpus))
    assert n_hard == cfg.report.n_songs - round(cfg.report.n_songs * 0.6)


def test_plan_matches_the_rendered_song():
    assert generate_song(1, SMALL).truth == plan_song(1, SMALL)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_chorus_is_louder_than_verse(corpora):
    root, manifest = corpora["a"]
    for m in manifest:
        mix, sr = sf.read(m["path"], dtype="int16")
        truth = json.loads((root / "truth" / f"{m['song_id']}.json").read_text())
        level = {}
        for s in truth["sections"]:
            seg = mix[int(s["start_time"] * sr): int(s["end_time"] * sr)]
            level.setdefault(s["label"], []).append(_rms(seg))
        chorus_db, verse_db = 20 * np.log10(np.mean(level["chorus"])), 20 * np.log10(np.mean(level["verse"]))
        assert chorus_db > verse_db + 2.0, (m["song_id"], chorus_db, verse_db)


def test_every_downbeat_has_the_strongest_drum_hit(corpora):
    root, manifest = corpora["a"]
    for m in manifest:
        if "no_drums" in m["traits"]:
            continue
        drums, sr = sf.read(root / "stems" / m["song_id"] / "drums.flac", dtype="int16")
        truth = json.loads((root / "truth" / f"{m['song_id']}.json").read_text())
        win = int(0.03 * sr)
        energy = np.array([_rms(drums[int(b * sr): int(b * sr) + win]) for b in truth["beats"]])
        before = np.array([_rms(drums[max(int(b * sr) - win, 0): int(b * sr)]) for b in truth["beats"]])
        down = np.asarray(truth["beat_in_bar"]) == 0
        assert np.all(energy[down] > 2 * before[down])  # a sharp onset on every downbeat
        assert energy[down].mean() > 1.3 * energy[~down].mean()


def test_librosa_finds_the_tempo():
    librosa = pytest.importorskip("librosa")
    index = next(i for i in range(20) if plan_song(i, SMALL)["meter"] == 4)
    song = generate_song(index, SMALL)
    y = song.mix.astype(np.float32) / 32768.0
    tempo, _ = librosa.beat.beat_track(y=y, sr=song.sample_rate)
    found, true = float(np.atleast_1d(tempo)[0]), song.truth["tempo"]
    assert min(abs(found / (true * k) - 1) for k in (0.5, 1.0, 2.0)) < 0.04, (found, true)


def test_a_smaller_corpus_replaces_a_larger_one(tmp_path):
    cfg = CorpusConfig(n_songs=2, min_seconds=10.0, max_seconds=14.0, seed=3)
    generate_corpus(CorpusConfig(**{**cfg.__dict__, "n_songs": 3}), tmp_path, progress=False)
    manifest = generate_corpus(cfg, tmp_path, progress=False)
    assert len(manifest) == 2
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == ["song_000.wav", "song_001.wav"]
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == ["song_000", "song_001"]
    assert sorted(p.name for p in (tmp_path / "truth").iterdir()) == ["song_000.json", "song_001.json"]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"n_songs": 0}, "n_songs"), ({"min_seconds": 90.0, "max_seconds": 60.0}, "min_seconds"), ({"sample_rate": 4000}, "sample_rate"),
     ({"seed": -1}, "seed"), ({"hard_share": 1.5}, "hard_share"), ({"hard_share": -0.1}, "hard_share")],
)
def test_bad_corpus_config_is_named(tmp_path, change, field):
    cfg = CorpusConfig(**{**SMALL.__dict__, **change})
    assert field in (cfg.check() or "")
    with pytest.raises(ValueError, match=field):
        generate_corpus(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match=field):
        generate_song(0, cfg)
    assert not any(tmp_path.iterdir())  # nothing written
    # the params.yaml loader calls the same check and names the key and the file
    import yaml

    data = yaml.safe_load(default_params_yaml())
    data["data"]["corpus"].update(change)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"params.yaml: data\.corpus(: |\.).*{field}"):  # the key's range or the section's check
        load_config(path)


def test_default_config_is_valid():
    assert CorpusConfig().check() is None
    assert CorpusConfig().sample_rate == 22050
