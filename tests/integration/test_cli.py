"""The `beatedit` command line: help, edit on a song outside the corpus, clear errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.cli import build_parser, main
from beatedit.config import CorpusConfig
from beatedit.corpus.generator import generate_song
from tests.conftest import REPO
from tests.songkit import write_outside_song


@pytest.fixture(scope="module")
def song_wav(tmp_path_factory) -> Path:
    """A generated song with another seed than the corpus: not in the corpus, stereo 44.1 kHz."""
    return write_outside_song(tmp_path_factory.mktemp("cli") / "outside.wav", seed=999)


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for sub in ("run", "edit", "evaluate", "promote"):
        assert sub in out


def test_run_rejects_unknown_stage():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "nonsense"])


@pytest.mark.parametrize("editor", ["heuristic", "random"])
def test_edit_writes_wav_and_edl(song_wav, tmp_path, monkeypatch, editor):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / f"{editor}.wav"
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(REPO / "params.yaml"), "edit", str(song_wav), "--target", "0.6", "-o", str(out), "--editor", editor])
    assert exc.value.code == 0
    info = sf.info(out)
    src = sf.info(song_wav)
    assert info.samplerate == src.samplerate and info.channels == 2
    edl = json.loads(out.with_suffix(".edl.json").read_text())
    assert edl["source_sr"] == 44100 and edl["segments"]
    assert info.frames == sum(s["end_sample"] - s["start_sample"] for s in edl["segments"])
    if editor == "heuristic":
        assert 0.4 < info.frames / src.frames < 0.8


def bad_files(tmp: Path) -> dict[str, Path]:
    corrupt = tmp / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(22050 * 20, dtype=np.float32), 22050)
    short = tmp / "short.wav"
    t = np.arange(22050 * 2) / 22050
    sf.write(short, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050)
    return {"corrupt": corrupt, "silent": silent, "short": short}


@pytest.mark.parametrize("kind", ["corrupt", "silent", "short"])
def test_edit_bad_input_clear_error_and_nothing_written(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    path = bad_files(tmp_path)[kind]
    out = tmp_path / "out" / "edit.wav"
    env = {**os.environ, "BEATEDIT_STEM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "--params", str(REPO / "params.yaml"), "edit", str(path), "-o", str(out),
                           "--editor", "heuristic"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "error:" in proc.stderr
    assert not out.exists() and not out.with_suffix(".edl.json").exists()


def test_edit_bad_target(song_wav, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(REPO / "params.yaml"), "edit", str(song_wav), "--target", "1.5", "-o", str(tmp_path / "x.wav"), "--editor", "heuristic"])
    assert exc.value.code == 2
    assert not (tmp_path / "x.wav").exists()


def test_edit_to_seconds_with_the_search_editor_lands_within_one_beat_and_says_so(song_wav, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "search.wav"
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(REPO / "params.yaml"), "edit", str(song_wav), "--duration", "0:18", "-o", str(out),
              "--editor", "search"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    seconds = sf.info(out).frames / 44100
    assert abs(seconds - 18.0) < 0.75  # one beat at the slowest corpus tempo (80 BPM)
    assert f"{seconds:.3f} s" in printed and "asked 18.000 s" in printed  # the achieved length, not the request
    edl = json.loads(out.with_suffix(".edl.json").read_text())
    assert edl["meta"]["target_seconds"] == pytest.approx(18.0)


def test_exact_stretches_to_the_sample_and_reports_the_factor(song_wav, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "exact.wav"
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(REPO / "params.yaml"), "edit", str(song_wav), "--duration", "17.5s", "--exact", "-o", str(out),
              "--editor", "fade"])
    assert exc.value.code == 0
    assert sf.info(out).frames == round(17.5 * 44100)  # to the sample
    edl = json.loads(out.with_suffix(".edl.json").read_text())
    assert edl["meta"]["exact_samples"] == round(17.5 * 44100) and abs(edl["meta"]["stretch"] - 1.0) <= 0.04
    assert "stretched x" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [(["--duration", "abc"], "not a length"), (["--duration", "0"], "positive"),
                                          (["--duration", "10:00"], "not shorter than the song"),
                                          (["--duration", "30", "--target", "0.5"], None)])
def test_edit_bad_duration_is_a_clear_error(song_wav, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exc:
        main(["--params", str(REPO / "params.yaml"), "edit", str(song_wav), *args, "-o", str(tmp_path / "x.wav"),
              "--editor", "heuristic"])
    assert exc.value.code == 2
    if message:
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_evaluate_scores_a_policy_on_a_folder_with_both_judges(tmp_path, monkeypatch, capsys):
    """`beatedit evaluate`: a folder of two songs outside the corpus and one broken file; the broken file is
    listed, the songs are edited by the policy and the baselines and scored by the judge and the listener."""
    from beatedit.config import Config
    from models.policy import policy_for_env, save_policy

    monkeypatch.setenv("BEATEDIT_STEM_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(2):
        g = generate_song(i, CorpusConfig(n_songs=2, min_seconds=22.0, max_seconds=28.0, seed=321))
        sf.write(folder / f"piece_{i}.wav", g.mix.astype(np.float32) / 32768.0, g.sample_rate)
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nonsense" * 8)
    cfg = Config()
    ckpt = save_policy(tmp_path / "policy.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    out = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(ckpt), "--audio-dir", str(folder), "--duration", "12", "--out", str(out)])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "quarantined:" in printed and "broken.wav" in printed and "judge_win_rate_vs_search" in printed
    report = json.loads(out.read_text())
    assert report["summary"]["n_songs"] == 2 and report["summary"]["n_files_quarantined"] == 1
    editors = {r["editor"] for r in report["items"]}
    assert editors == {"candidate", "search", "fade", "heuristic", "random"}
    assert all(0.0 <= r["judge_total"] <= 1.0 and 0.0 <= r["listener_total"] <= 1.0 for r in report["items"])
    assert all(r["within_one_beat"] == 1.0 for r in report["items"])  # the length guard, policy included
    # bad input: a clear error, exit 2
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(ckpt), "--audio-dir", str(tmp_path / "nowhere"), "--duration", "12"])
    assert exc.value.code == 2 and "not a folder" in capsys.readouterr().err


def test_version_and_help_with_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("beatedit ")
    for argv in (["run", "--help"], ["edit", "--help"], ["evaluate", "--help"], ["feedback", "export", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "(default" in out, argv  # every option shows its default
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "the DVC stages in order" in capsys.readouterr().out
