"""Reward model: padding, determinism, windows, checkpoint refusal, training, and the validation gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from beatedit.editing.actions import Action
from beatedit.config import RewardConfig
from beatedit.audio.schema import N_FEATURES, SchemaMismatchError, col
from beatedit.audio.song import SongAnalysis
from models.checkpoint import CheckpointError
from models.reward_model import (RewardModel, RewardNormalizer, collate, load_reward_model, save_reward_model, score_batch,
                                 window_starts)
from models.train_reward import edit_ratio, gate, saturated_fraction, train_reward_model, validate_reward_model

TINY = RewardConfig(d_model=32, n_layers=2, n_heads=4, max_beats=64, window_stride=32, dropout=0.0, epochs=15, batch_size=16,
                    warmup_steps=2, lr=1e-3, patience=10, target_dropout=0.0, score_batch_size=32)


def make_song(song_id: str, n_beats: int = 48, seed: int = 0, meter: int = 4) -> SongAnalysis:
    """A synthetic but valid SongAnalysis: 120 BPM grid, bars of ``meter``, 8-bar phrases, random timbre."""
    rng = np.random.default_rng(seed)
    ibi = 0.5
    beat_times = np.arange(n_beats) * ibi
    feats = rng.normal(size=(n_beats, N_FEATURES)).astype(np.float32)
    feats[:, col("beat_duration")] = ibi
    feats[:, col("meter")] = meter
    bib = np.arange(n_beats) % meter
    feats[:, col("beat_in_bar")] = bib
    feats[:, col("is_downbeat")] = bib == 0
    feats[:, col("song_position")] = beat_times / (n_beats * ibi)
    bars = np.arange(0, n_beats, meter)
    phrases = np.arange(0, n_beats, 8 * meter)
    return SongAnalysis(song_id=song_id, source_path=f"/nonexistent/{song_id}.wav", source_hash="0" * 64, source_sr=22050,
                        source_channels=1, duration=n_beats * ibi, tempo=120.0, meter=meter, beat_times=beat_times,
                        bar_starts=bars, beat_in_bar=bib.astype(np.int64), phrase_starts=phrases,
                        section_starts=phrases[::2], features=feats)


def random_actions(rng, n: int, keep_share: float) -> np.ndarray:
    return np.where(rng.random(n) < keep_share, int(Action.KEEP), int(Action.CUT)).astype(np.int64)


def duration_pairs(songs: dict[str, SongAnalysis], splits: dict[str, str], per_song: int, noise: float, seed: int,
                   ood_share: float = 0.0) -> pd.DataFrame:
    """Pairs whose gold is duration fit (-|ratio - target|), choices sampled Bradley-Terry with ``noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    for sid, song in songs.items():
        targets = rng.uniform(0.4, 0.8, size=2)  # like the preferences stage: a few targets per song, many edits each
        for k in range(per_song):
            t = float(targets[k % 2])
            a, b = random_actions(rng, song.n_beats, rng.uniform(0.1, 1)), random_actions(rng, song.n_beats, rng.uniform(0.1, 1))
            ga, gb = -abs(edit_ratio(song, a) - t), -abs(edit_ratio(song, b) - t)
            p_a = 1 / (1 + np.exp(-(ga - gb) / noise))
            choice = 0 if rng.random() < p_a else 1
            ood = bool(rng.random() < ood_share)
            rows.append(dict(song_id=sid, split=splits[sid], actions_a=a.tolist(), actions_b=b.tolist(), target_ratio=t,
                             choice=choice, strength=abs(p_a - 0.5) * 2, p_a=p_a, gold_a=ga, gold_b=gb,
                             kind_a="random", kind_b="random", ood=ood, source="simulated"))
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is as fast, and immune to OpenMP oversubscription on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    songs = {f"s{i}": make_song(f"s{i}", n_beats=40 + 4 * i, seed=i) for i in range(8)}
    splits = {sid: ("validation" if i >= 6 else "train") for i, sid in enumerate(songs)}
    return songs, splits


def tiny_model(seed: int = 0, **kw) -> RewardModel:
    torch.manual_seed(seed)
    cfg = dict(d_model=32, n_layers=2, n_heads=4, max_beats=64, window_stride=32, dropout=0.0)
    cfg.update(kw)
    return RewardModel(**cfg).eval()


# ----------------------------------------------------------------------------- model behaviour
def test_padding_does_not_change_a_score():
    m = tiny_model()
    song = make_song("p", 30, seed=1)
    acts = random_actions(np.random.default_rng(0), 30, 0.6)
    alone = score_batch(m, [(song.features, acts, 0.6)])[0]
    long_song = make_song("q", 60, seed=2)
    batched = score_batch(m, [(song.features, acts, 0.6), (long_song.features, random_actions(np.random.default_rng(1), 60, 0.5), 0.5)])
    assert batched[0] == pytest.approx(alone, abs=1e-5)
    # garbage in the padded region must not leak either
    f, a, p, t = collate([(song.features, acts, 0.6)])
    f2 = torch.cat([f, torch.randn(1, 20, N_FEATURES) * 100], 1)
    a2 = torch.cat([a, torch.full((1, 20), int(Action.LOOP_BAR))], 1)
    p2 = torch.cat([p, torch.ones(1, 20, dtype=torch.bool)], 1)
    with torch.no_grad():
        assert float(m(f2, a2, p2, t)) == pytest.approx(float(alone), abs=1e-5)
    # and the score does depend on the real beats
    acts_other = acts.copy()
    acts_other[5] = int(Action.LOOP_BEAT)
    assert score_batch(m, [(song.features, acts_other, 0.6)])[0] != pytest.approx(alone, abs=1e-6)


def test_scores_are_deterministic():
    song = make_song("d", 50, seed=3)
    acts = random_actions(np.random.default_rng(2), 50, 0.5)
    a = score_batch(tiny_model(seed=7), [(song.features, acts, 0.5)] * 3)
    b = score_batch(tiny_model(seed=7), [(song.features, acts, 0.5)] * 3)
    assert np.array_equal(a, b)  # bit-identical across model instances built from the same seed
    assert np.allclose(a, a[0], rtol=0, atol=1e-6)  # same item, other batch rows: equal up to float rounding
    assert not np.array_equal(a, score_batch(tiny_model(seed=8), [(song.features, acts, 0.5)] * 3))


def test_long_song_is_windowed_and_uses_every_beat():
    m = tiny_model(max_beats=500, window_stride=250)
    song = make_song("long", 1200, seed=4)
    acts = random_actions(np.random.default_rng(3), 1200, 0.7)
    base = score_batch(m, [(song.features, acts, 0.7)])[0]
    assert np.isfinite(base)
    starts = window_starts(1200, 500, 250)
    assert starts == [0, 250, 500, 700]
    covered = np.zeros(1200, int)
    for s in starts:
        covered[s:s + 500] += 1
    assert covered.min() >= 1
    for beat in (0, 600, 1199):  # first, middle and last beat all move the score
        f = song.features.copy()
        f[beat, col("mfcc_0")] += 5.0  # a timbre column: reaches the score only through the windows that hold the beat
        assert score_batch(m, [(f, acts, 0.7)])[0] != pytest.approx(base, abs=1e-7), beat
    # a long row batched with a short one gets the same score as alone (window layout is per row)
    short = make_song("short", 40, seed=5)
    both = score_batch(m, [(short.features, acts[:40], 0.5), (song.features, acts, 0.7)], batch_size=2)
    assert both[1] == pytest.approx(base, abs=1e-5)


def test_window_score_is_the_beat_weighted_average_of_window_scores():
    m = tiny_model(max_beats=64, window_stride=32)
    song = make_song("w", 100, seed=6)
    acts = random_actions(np.random.default_rng(4), 100, 0.6)
    f, a, p, t = collate([(song.features, acts, 0.6)])
    with torch.no_grad():
        total = float(m(f, a, p, t))
        from models.reward_model import edit_inputs
        edit = edit_inputs(f, a, p, t)
        starts = window_starts(100, 64, 32)  # [0, 32, 36]
        cover = np.zeros(100)
        for s in starts:
            cover[s:s + 64] += 1
        manual = 0.0
        for s in starts:
            sl = slice(s, s + 64)
            w = (1.0 / cover[sl]).sum() / 100
            manual += w * float(m._encode(f[:, sl], a[:, sl], edit[:, sl], p[:, sl]))
    assert total == pytest.approx(manual, abs=1e-5)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_refusals(tmp_path):
    m = tiny_model(seed=3)
    song = make_song("c", 40, seed=7)
    acts = random_actions(np.random.default_rng(5), 40, 0.5)
    path = save_reward_model(tmp_path / "rm.pt", m, RewardNormalizer(1.5, 2.0))
    m2, norm, payload = load_reward_model(path)
    assert norm == RewardNormalizer(1.5, 2.0)
    assert score_batch(m2, [(song.features, acts)])[0] == score_batch(m, [(song.features, acts)])[0]

    bad = torch.load(path, weights_only=False)
    bad["schema_version"] = "beatfeat-v0"
    torch.save(bad, tmp_path / "old_schema.pt")
    with pytest.raises(SchemaMismatchError, match=r"old_schema\.pt.*beatfeat-v0"):
        load_reward_model(tmp_path / "old_schema.pt")

    bad = torch.load(path, weights_only=False)
    bad["action_vocab"] = "actions-v0:KEEP,CUT"
    torch.save(bad, tmp_path / "old_vocab.pt")
    with pytest.raises(CheckpointError, match=r"old_vocab\.pt.*action vocabulary"):
        load_reward_model(tmp_path / "old_vocab.pt")

    bad = torch.load(path, weights_only=False)
    bad["kind"] = "policy"
    torch.save(bad, tmp_path / "policy.pt")
    with pytest.raises(CheckpointError, match=r"policy\.pt.*'policy'"):
        load_reward_model(tmp_path / "policy.pt")


# ----------------------------------------------------------------------------- training
def test_loss_falls_and_training_is_seeded(corpus):
    songs, splits = corpus
    df = duration_pairs(songs, splits, per_song=24, noise=0.02, seed=0)
    logged = []
    model, hist = train_reward_model(df, songs, TINY, log=lambda d, step: logged.append((step, d)), device="cpu", progress=False)
    assert len(logged) == len(hist) >= 2
    assert hist[-1]["train_loss"] < 0.8 * hist[0]["train_loss"], [h["train_loss"] for h in hist]
    assert max(h["val_accuracy"] for h in hist) > 0.65  # 48 validation pairs of a learnable duration rule
    assert isinstance(model.normalizer, RewardNormalizer) and model.normalizer.std > 0
    _, hist2 = train_reward_model(df, songs, TINY, device="cpu", progress=False)
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in hist2]


def test_learns_that_too_long_is_as_wrong_as_too_short(corpus):
    """The duration fit is not monotone in length: on validation songs the trained model must rank an edit
    on the target above both a clearly longer and a clearly shorter one (a model that only learned
    "longer is better" -- what PPO then exploits -- fails this)."""
    songs, splits = corpus
    df = duration_pairs(songs, splits, per_song=32, noise=0.02, seed=1)
    model, _ = train_reward_model(df, songs, TINY, device="cpu", progress=False)
    rng = np.random.default_rng(5)
    wins = []
    for sid in [s for s, split in splits.items() if split == "validation"]:
        song = songs[sid]
        for target in (0.45, 0.6):
            def edit_of(ratio: float) -> np.ndarray:
                return random_actions(rng, song.n_beats, ratio)
            on, short, long = edit_of(target), edit_of(target - 0.25), edit_of(min(target + 0.3, 1.0))
            s_on, s_short, s_long = score_batch(model, [(song.features, a, target) for a in (on, short, long)], "cpu", 8)
            wins.append(s_on > s_short and s_on > s_long)
    assert np.mean(wins) >= 0.75, wins


# ----------------------------------------------------------------------------- the gate
class ConstantModel(nn.Module):
    """The failure the gate exists for: the same score (-10) for every input."""

    def forward(self, features, actions, pad_mask=None, target_ratio=None):
        return torch.full((features.shape[0],), -10.0)


class SaturatedModel(nn.Module):
    """Informative sign, saturated magnitude: +-10 like a clamped / tanh-saturated head."""

    def forward(self, features, actions, pad_mask=None, target_ratio=None):
        kept = ((actions == 0) & ~pad_mask).float().sum(1) / (~pad_mask).float().sum(1)
        return 10.0 * torch.sign(target_ratio - kept + 1e-3)


class DurationFitModel(nn.Module):
    """A good scorer for duration-fit pairs: the gate must be passable."""

    def forward(self, features, actions, pad_mask=None, target_ratio=None):
        kept = ((actions == 0) & ~pad_mask).float().sum(1) / (~pad_mask).float().sum(1)
        return -(kept - target_ratio).abs() / 0.05


GATE = RewardConfig()  # the default thresholds


@pytest.fixture(scope="module")
def gate_pairs(corpus):
    songs, splits = corpus
    return duration_pairs(songs, splits, per_song=40, noise=0.05, seed=1, ood_share=0.3)


def test_gate_rejects_a_constant_model(corpus, gate_pairs):
    songs, _ = corpus
    m = validate_reward_model(ConstantModel(), gate_pairs, songs, GATE, device="cpu")
    assert m["val_accuracy"] == 0.5 and m["score_std"] == 0.0 and m["saturated_fraction"] == 1.0
    failures = gate(m, GATE)
    assert any(f.startswith("score_std") for f in failures)
    assert any(f.startswith("saturated_fraction") for f in failures)
    assert any(f.startswith("val_accuracy") for f in failures)
    assert any(f.startswith("val_to_ceiling") for f in failures)
    assert failures == gate(m, GATE) and all(isinstance(f, str) for f in failures)  # the messages the stage fails with


def test_gate_rejects_a_saturated_model(corpus, gate_pairs):
    songs, _ = corpus
    m = validate_reward_model(SaturatedModel(), gate_pairs, songs, GATE, device="cpu")
    assert m["score_std"] > 1.0  # plenty of spread: only the saturation check can catch it
    assert m["saturated_fraction"] > 0.9
    assert any(f.startswith("saturated_fraction") for f in gate(m, GATE))


def test_gate_passes_a_good_scorer_and_reports_the_ceiling(corpus, gate_pairs):
    songs, _ = corpus
    m = validate_reward_model(DurationFitModel(), gate_pairs, songs, GATE, device="cpu")
    assert gate(m, GATE) == [], m
    assert 0.75 < m["noise_ceiling"] <= 1.0
    assert m["val_accuracy"] >= 0.9 * m["noise_ceiling"]
    for key in ("val_accuracy", "noise_ceiling", "ood_accuracy", "score_std", "saturated_fraction", "ece", "spearman_gold",
                "baseline_accuracy"):
        assert np.isfinite(m[key]), key


def test_saturated_fraction_definition():
    assert saturated_fraction(np.zeros(10)) == 1.0
    s = np.r_[0.0, 0.004, np.linspace(0.02, 0.98, 100), 0.996, 1.0]  # two near the ends besides the ends themselves
    assert saturated_fraction(s) == pytest.approx(2 / 102)
    assert saturated_fraction(np.linspace(0.0, 1.0, 50)) == 0.0  # evenly spread: only the two ends, which do not count
    assert saturated_fraction(np.linspace(0.0, 1.0, 1001)) == pytest.approx(0.02, abs=0.002)  # why the default is 0.05
    assert saturated_fraction(np.linspace(0.0, 1.0, 1001)) < RewardConfig().max_saturated_fraction
    s = np.r_[np.full(50, -10.0), np.linspace(-5, 5, 50)]
    assert saturated_fraction(s) == pytest.approx(49 / 98)


def test_calibration_scales_scores_without_reordering_them():
    """Temperature scaling folded into the output layers: every score times one scalar fitted on the
    training pairs, so order (accuracy, Spearman) is unchanged and the BT probabilities get calibrated."""
    import pandas as pd

    from models.reward_model import RewardModel
    from models.train_reward import calibrate, pair_scores

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    from tests.rlhfkit import rl_song

    song = rl_song(seed=3)
    n = song.n_beats
    model = RewardModel(d_model=32, n_layers=1, n_heads=2).eval()
    rows = []
    for k in range(60):
        a, b = rng.integers(0, 10, n), rng.integers(0, 10, n)
        rows.append({"song_id": song.song_id, "actions_a": a.tolist(), "actions_b": b.tolist(), "target_ratio": 0.6,
                     "choice": float(rng.integers(0, 2))})
    df = pd.DataFrame(rows)
    songs = {song.song_id: song}
    ra0, rb0 = pair_scores(model, df, songs)
    # labels that agree with the model 90% of the time: a well-ranked but miscalibrated model
    df["choice"] = np.where((ra0 > rb0) ^ (rng.random(len(df)) < 0.1), 0.0, 1.0)
    s = calibrate(model, df, songs)
    ra1, rb1 = pair_scores(model, df, songs)
    np.testing.assert_allclose(ra1, s * ra0, rtol=1e-4, atol=1e-5)
    assert np.array_equal(np.argsort(ra1), np.argsort(ra0))
    assert s > 1.0  # confident labels: the tiny initial score gaps are stretched
