"""`beatedit edit --variations N / --best-of N`: policy samples ranked by the reward model, on a song outside
the corpus; bad counts, editors and models are clear errors with nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from app.cli import main
from beatedit.config import Config
from tests.songkit import write_outside_song


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict:
    from models.policy import policy_for_env, save_policy
    from models.reward_model import RewardModel, save_reward_model

    tmp = tmp_path_factory.mktemp("variations")
    cfg = Config()
    torch.manual_seed(0)
    policy = save_policy(tmp / "policy.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    torch.manual_seed(1)
    reward = save_reward_model(tmp / "reward.pt", RewardModel(d_model=16, n_layers=1, n_heads=2))
    return {"song": write_outside_song(tmp / "outside.wav", seed=999), "policy": str(policy), "reward": str(reward),
            "cache": str(tmp / "cache")}


def run(kit, out: Path, *extra: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["edit", str(kit["song"]), "--duration", "20", "-o", str(out), "--model", kit["policy"],
              "--reward-model", kit["reward"], *extra])
    return exc.value.code


def segments(edl_path: Path) -> list:
    return json.loads(Path(edl_path).read_text())["segments"]


def test_variations_are_ranked_distinct_files_within_a_beat(kit, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    out = tmp_path / "edit.wav"
    assert run(kit, out, "--variations", "3") == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    rows = re.findall(r"(\d)\. (\S+)\s+score ([+-]\d+\.\d+)\s+\S+ \((\d+\.\d+) s", printed)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert [r[1] for r in rows] == [str(tmp_path / f"edit.{k}.wav") for k in (1, 2, 3)]
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    edls = []
    for k, (_, wav, _, seconds) in enumerate(rows, start=1):
        info = sf.info(wav)
        assert abs(info.frames / info.samplerate - float(seconds)) < 1e-3  # the printed length is the file's
        assert abs(float(seconds) - 20.0) < 1.0  # the length guard: within a beat (< 1 s at >= 60 BPM) of the target
        edls.append(segments(tmp_path / f"edit.{k}.edl.json"))
    assert len({json.dumps(e) for e in edls}) == 3  # distinct edits


def test_best_of_keeps_the_top_sample(kit, tmp_path, monkeypatch, capsys):
    """--best-of 12 writes the edit --variations 1 --best-of 12 ranks first (same seed, same 12 samples)."""
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    assert run(kit, tmp_path / "best.wav", "--best-of", "12", "--seed", "3") == 0
    assert run(kit, tmp_path / "var.wav", "--variations", "1", "--best-of", "12", "--seed", "3") == 0
    assert segments(tmp_path / "best.edl.json") == segments(tmp_path / "var.1.edl.json")
    # the flag reaches the sampler (the test's policy is untrained, its logits near uniform: only a low temperature
    # changes what the same random draws pick)
    assert run(kit, tmp_path / "cold.wav", "--best-of", "12", "--seed", "3", "--temperature", "0.05") == 0
    assert segments(tmp_path / "cold.edl.json") != segments(tmp_path / "best.edl.json")
    assert run(kit, tmp_path / "other.wav", "--best-of", "12", "--seed", "4") == 0  # seeded: another seed, other samples
    assert segments(tmp_path / "other.edl.json") != segments(tmp_path / "best.edl.json")
    capsys.readouterr()


@pytest.mark.parametrize("extra,message", [
    (["--variations", "0"], "--variations: must be a whole number from 1 to 16"),
    (["--variations", "17"], "--variations: must be a whole number from 1 to 16"),
    (["--best-of", "0"], "--best-of: must be a whole number from 1 to 256"),
    (["--best-of", "-3"], "--best-of: must be a whole number from 1 to 256"),
    (["--best-of", "4", "--editor", "search"], "--editor search has nothing to sample"),
    (["--variations", "2", "--reward-model", "POLICY"], "--reward-model:"),
    (["--best-of", "2", "--reward-model", "/nonexistent/reward.pt"], "--reward-model: cannot load model"),
    (["--best-of", "2", "--temperature", "0"], "--temperature: must lie in [0.01, 10]"),
    (["--variations", "2", "--temperature", "nan"], "--temperature: must lie in [0.01, 10]"),
])
def test_bad_sampling_flags_are_clear_errors_and_write_nothing(kit, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    extra = [kit["policy"] if x == "POLICY" else x for x in extra]
    out = tmp_path / "x.wav"
    with pytest.raises(SystemExit) as exc:
        main(["edit", str(kit["song"]), "--duration", "20", "-o", str(out), "--model", kit["policy"],
              "--reward-model", kit["reward"], *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


def test_variations_refuse_an_output_that_is_the_input(kit, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    src = tmp_path / "song.2.wav"
    shutil.copy(kit["song"], src)
    with pytest.raises(SystemExit) as exc:  # song.wav -> song.1.wav, song.2.wav: the second is the input
        main(["edit", str(src), "--duration", "20", "-o", str(tmp_path / "song.wav"), "--model", kit["policy"],
              "--reward-model", kit["reward"], "--variations", "2"])
    assert exc.value.code == 2
    assert "is the input file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.2.wav"]
    assert np.isfinite(sf.read(src)[0]).all()


# ----------------------------------------------------------------------------- --keep
def edl_keeps(edl_path: Path, start_s: float, end_s: float) -> bool:
    edl = json.loads(Path(edl_path).read_text())
    sr = edl["source_sr"]
    return any(s["start_sample"] <= start_s * sr and s["end_sample"] >= end_s * sr for s in edl["segments"])


@pytest.mark.parametrize("editor", ["search", "policy"])
def test_keep_region_stays_whole_in_the_written_edit(kit, tmp_path, monkeypatch, capsys, editor):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    out = tmp_path / "kept.wav"
    region = (8.0, 14.0)
    code = run(kit, out, "--editor", editor, "--keep", f"0:{region[0]:02.0f}-0:{region[1]:02.0f}")
    err = capsys.readouterr().err
    if editor == "policy" and code == 2:  # the policy is not constrained step by step: a clear refusal is allowed
        assert "could not keep the region" in err and not out.exists()
        return
    assert code == 0, err
    assert edl_keeps(out.with_suffix(".edl.json"), *region)
    assert abs(sf.info(out).duration - 20.0) < 1.0


@pytest.mark.parametrize("extra,message", [
    (["--editor", "search", "--keep", "0:14-0:08"], "before or where it starts"),
    (["--editor", "search", "--keep", "0:10-5:00"], "ends after the song"),
    (["--editor", "search", "--keep", "0:02-0:08", "--keep", "0:06-0:10"], "overlap"),
    (["--editor", "search", "--keep", "0:00-0:25"], "longer than the target"),
    (["--editor", "search", "--keep", "noon-dusk"], "is not a length"),
    (["--editor", "heuristic", "--keep", "0:02-0:08"], "the heuristic editor cannot keep a region"),
    (["--variations", "2", "--keep", "0:02-0:08"], "--keep with --variations is not supported"),
])
def test_bad_keep_is_a_clear_error_and_writes_nothing(kit, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", kit["cache"])
    assert run(kit, tmp_path / "x.wav", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "--keep" in err, err
    assert list(tmp_path.iterdir()) == []
