"""`beatedit edit --stems / --picture`, cues.json and progress, and the CLI from any folder (issues 18.5 and 20.5),
run as a user would: a subprocess from a temp folder with no params.yaml, this checkout on the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.songkit import write_outside_song

STEMS = ("drums", "bass", "other")


@pytest.fixture(scope="module")
def song_wav(tmp_path_factory) -> Path:
    return write_outside_song(tmp_path_factory.mktemp("stems-song") / "song.wav", seed=777)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stem-cache")


def cli(args: list[str], cwd: Path, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full = {**base, "PYTHONPATH": str(REPO), "BEATEDIT_STEM_CACHE": str(cache), **(env or {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600)


def splices(edl: dict) -> list[float]:
    segs = edl["segments"]
    n = sum(s["end_sample"] - s["start_sample"] for s in segs)
    scale = edl["meta"]["exact_samples"] / n if "exact_samples" in edl["meta"] else 1.0
    out, pos = [], 0
    for k, s in enumerate(segs):
        if k and s["start_sample"] != segs[k - 1]["end_sample"]:
            out.append(pos * scale / edl["source_sr"])
        pos += s["end_sample"] - s["start_sample"]
    return out


def test_edit_with_stems_from_any_folder(song_wav, cache, tmp_path):
    proc = cli(["edit", str(song_wav), "--duration", "0:18", "-o", "e.wav", "--editor", "search", "--stems"], tmp_path, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["e.wav", "e.edl.json", "e.cues.json", "e.seams.png", *(f"e.{s}.wav" for s in STEMS)])
    mix, sr = sf.read(tmp_path / "e.wav", dtype="float64", always_2d=True)
    stems = [sf.read(tmp_path / f"e.{s}.wav", dtype="float64", always_2d=True) for s in STEMS]
    assert all(a.shape == mix.shape and r == sr for a, r in stems)
    assert np.max(np.abs(sum(a for a, _ in stems) - mix)) < 1e-4  # hpss stems sum back to the edited mix
    edl = json.loads((tmp_path / "e.edl.json").read_text())
    cues = json.loads((tmp_path / "e.cues.json").read_text())
    assert [s["time"] for s in cues["seams"]] == pytest.approx(splices(edl), abs=1e-9) and cues["seams"]
    assert cues["duration"] == pytest.approx(len(mix) / sr)
    # progress off a terminal: one line per phase, in order; the achieved length and every output printed
    phases = [line.split("] ")[1].split(":")[0] for line in proc.stderr.splitlines() if line.startswith("[")]
    assert phases == ["load", "stems", "frames", "beats", "features", "edit", "render", "stem-render", "cues", "picture"]
    assert f"{len(mix) / sr:.3f} s; asked 18.000 s" in proc.stdout and "e.drums.wav" in proc.stdout and "e.seams.png" in proc.stdout


def test_exact_stems_and_no_picture(song_wav, cache, tmp_path):
    proc = cli(["edit", str(song_wav), "--duration", "17.5", "--exact", "-o", "x.wav", "--editor", "fade", "--stems",
                "--no-picture"], tmp_path, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = round(17.5 * sf.info(song_wav).samplerate)
    assert sf.info(tmp_path / "x.wav").frames == n and all(sf.info(tmp_path / f"x.{s}.wav").frames == n for s in STEMS)
    assert not (tmp_path / "x.seams.png").exists()
    cues = json.loads((tmp_path / "x.cues.json").read_text())
    assert cues["duration"] == pytest.approx(17.5) and cues["time_scale"] != 1.0


@pytest.mark.parametrize("flag", ["--stems=yes", "--picture=no", "--no-stems"])
def test_bad_flag_values_are_clear_errors(song_wav, cache, tmp_path, flag):
    proc = cli(["edit", str(song_wav), "-o", "b.wav", "--editor", "heuristic", flag], tmp_path, cache)
    assert proc.returncode == 2 and flag.split("=")[0] in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def test_stems_with_an_unavailable_backend_is_refused_before_the_analysis(song_wav, tmp_path):
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["stems"]["backend"] = "demucs"
    params["stems"]["demucs_model_dir"] = str(tmp_path / "no-weights")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    fresh = tmp_path / "fresh-cache"
    proc = cli(["edit", str(song_wav), "-o", "d.wav", "--editor", "heuristic", "--stems", "--params", "p.yaml"], tmp_path, fresh)
    assert proc.returncode == 2 and "--stems" in proc.stderr and "Demucs weights" in proc.stderr, proc.stderr[-2000:]
    assert not fresh.exists() and not (tmp_path / "d.wav").exists()


def test_help_and_version_from_any_folder(tmp_path, cache):
    for args in (["--version"], ["--help"], ["run", "--help"], ["edit", "--help"], ["evaluate", "--help"], ["promote", "--help"],
                 ["feedback", "--help"], ["feedback", "serve", "--help"], ["feedback", "export", "--help"],
                 ["feedback", "demo", "--help"]):
        proc = cli(args, tmp_path, cache)
        assert proc.returncode == 0 and proc.stdout.strip() and "(default: None)" not in proc.stdout, (args, proc.stderr[-2000:])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["before", "after"])
def test_evaluate_from_any_folder_reads_params_and_never_creates_a_store(tmp_path, cache, where):
    """`evaluate` outside the repo: --params read before or after the subcommand; the champion is read from
    MLFLOW_TRACKING_URI's store and a missing one is an error, not a new mlflow.db in the current folder."""
    bad = tmp_path / "p.yaml"
    bad.write_text("seed: 0\n")
    songs = tmp_path / "songs"
    songs.mkdir()
    params = ["--params", str(bad)]
    args = params + ["evaluate", "--audio-dir", str(songs)] if where == "before" else ["evaluate", "--audio-dir", str(songs)] + params
    proc = cli(args, tmp_path, cache)
    assert proc.returncode == 2 and "p.yaml" in proc.stderr and "missing key(s)" in proc.stderr, proc.stderr[-2000:]
    missing = tmp_path / "elsewhere" / "mlflow.db"
    proc = cli(["evaluate", "--audio-dir", str(songs)], tmp_path, cache, env={"MLFLOW_TRACKING_URI": f"sqlite:///{missing}"})
    assert proc.returncode == 2 and "no MLflow store" in proc.stderr and str(missing) in proc.stderr, proc.stderr[-2000:]
    assert not missing.exists() and not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_evaluate_runs_from_any_folder_on_the_packaged_defaults(tmp_path, cache):
    """A positive run outside the repo: no params.yaml, a policy checkpoint, one song; only the report is written."""
    from beatedit.config import Config, CorpusConfig
    from beatedit.corpus.generator import generate_song
    from models.policy import policy_for_env, save_policy

    songs = tmp_path / "songs"
    songs.mkdir()
    g = generate_song(0, CorpusConfig(n_songs=1, min_seconds=24.0, max_seconds=28.0, seed=5150))
    sf.write(songs / "piece.wav", g.mix.astype(np.float32) / 32768.0, g.sample_rate)
    cfg = Config()
    ckpt = save_policy(tmp_path / "policy.pt", policy_for_env(cfg.env, cfg.rlhf.policy))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = cli(["evaluate", "--model", str(ckpt), "--audio-dir", str(songs), "--duration", "14", "--out", "r.json"], cwd, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in cwd.iterdir()) == ["r.json"]
    report = json.loads((cwd / "r.json").read_text())
    assert report["summary"]["n_songs"] == 1 and {r["editor"] for r in report["items"]} >= {"candidate", "search"}


def test_promote_outside_the_project_is_a_clear_error_and_creates_nothing(tmp_path, cache):
    """`promote` needs the project's params, decision and store: from another folder it says which is missing,
    before Prefect starts, and never opens a new mlflow.db there."""
    proc = cli(["promote"], tmp_path, cache)
    assert proc.returncode == 2 and "params.yaml: parameters file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli(["promote", "--params", str(REPO / "params.yaml")], tmp_path, cache)
    assert proc.returncode == 2 and "decision.json: no evaluation decision here" in proc.stderr, proc.stderr[-2000:]
    missing = tmp_path / "elsewhere" / "mlflow.db"
    proc = cli(["--params", str(REPO / "params.yaml"), "promote", "--rollback"], tmp_path, cache,
               env={"MLFLOW_TRACKING_URI": f"sqlite:///{missing}"})
    assert proc.returncode == 2 and "no MLflow store" in proc.stderr, proc.stderr[-2000:]
    assert not any(tmp_path.iterdir()) and not missing.exists()
