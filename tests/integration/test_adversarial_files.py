"""Adversarial checks of files, the CLI and the configuration (issue 19, items 1-4 and 11-13).

Each test states the attack and the guarantee it checks (docs/operations.md, "Guarantees:
files, CLI and configuration"). The CLI runs as a subprocess from a temp folder outside the
repo, as a user would; failures are simulated for real where the OS allows it (a folder where
the WAV goes, a file-size limit for a full disk) and by making one call fail only where it
does not (an interrupted rename).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import beatedit.atomic as atomic
from beatedit.atomic import atomic_path, atomic_write_text, default_mode, replace_together
from beatedit.config import Config, ConfigError, _build, apply_overrides, config_to_dict, load_config, range_for
from beatedit.config import CorpusConfig
from tests.conftest import REPO
from tests.songkit import write_outside_song

# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def song_wav(tmp_path_factory) -> Path:
    """A 25-35 s stereo 44.1 kHz song outside the corpus."""
    return write_outside_song(tmp_path_factory.mktemp("adv") / "song.wav", seed=4242)


@pytest.fixture(scope="module")
def stem_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stem-cache")


def cli(args: list[str], cwd: Path, cache: Path, env: dict | None = None, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    """``python -m app.cli ARGS`` from ``cwd`` (no params.yaml there unless a test puts one), this checkout on the path."""
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full = {**base, "PYTHONPATH": str(REPO), "BEATEDIT_STEM_CACHE": str(cache), **(env or {})}

    def limit() -> None:  # a file-size limit: writes past it fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=600, preexec_fn=limit if limit_bytes else None)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ") or "\nerror: " in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- item 12: defaults, --params, any folder


def test_edit_from_a_folder_outside_the_repo_uses_the_packaged_defaults(song_wav, stem_cache, tmp_path):
    """No params.yaml in the current folder: the documented defaults apply; nothing but the outputs is created."""
    proc = cli(["edit", str(song_wav), "--target", "0.6", "-o", "out.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.cues.json", "out.edl.json", "out.seams.png", "out.wav"]
    segments = json.loads((tmp_path / "out.edl.json").read_text())["segments"]
    assert sf.info(tmp_path / "out.wav").frames == sum(s["end_sample"] - s["start_sample"] for s in segments)


def test_params_after_the_subcommand_is_read(song_wav, stem_cache, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("seed: 0\n")  # missing sections: must be reported, which proves the file was read
    proc = cli(["edit", "--params", str(bad), str(song_wav), "-o", "x.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert_clean_error(proc, "p.yaml", "missing key(s)")


def test_edit_with_the_policy_never_creates_an_mlflow_store_in_the_current_folder(song_wav, stem_cache, tmp_path):
    missing = tmp_path / "elsewhere" / "mlflow.db"
    proc = cli(["edit", str(song_wav), "-o", "out.wav"], tmp_path, stem_cache, env={"MLFLOW_TRACKING_URI": f"sqlite:///{missing}"})
    assert_clean_error(proc, "no MLflow store", str(missing))
    assert not missing.exists() and not (tmp_path / "mlflow.db").exists()
    proc = cli(["edit", str(song_wav), "-o", "out.wav"], tmp_path, stem_cache)  # the configured store: the project's
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


def test_unwritable_output_location_is_refused_before_the_analysis(song_wav, tmp_path):
    """The output folder's parent is a file: a clear error at once, the stem cache untouched (no analysis ran)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cache = tmp_path / "fresh-cache"
    proc = cli(["edit", str(song_wav), "-o", str(blocker / "sub" / "out.wav"), "--editor", "heuristic"], tmp_path, cache)
    assert_clean_error(proc, "not a folder")
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_the_analysis(song_wav, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = cli(["edit", str(song_wav), "-o", str(ro / "out.wav"), "--editor", "heuristic"], tmp_path, tmp_path / "c")
    finally:
        ro.chmod(0o755)
    assert_clean_error(proc, "not writable")


def test_full_disk_is_a_clear_error_and_leaves_no_file(song_wav, stem_cache, tmp_path):
    """A file-size limit makes the WAV write fail like a full disk: exit 2, a message, no output, no temporary."""
    warm = cli(["edit", str(song_wav), "-o", "warm.wav", "--editor", "heuristic"], tmp_path, stem_cache)  # analysis cached
    assert warm.returncode == 0, warm.stderr[-3000:]
    out = tmp_path / "full"
    out.mkdir()
    proc = cli(["edit", str(song_wav), "-o", str(out / "edit.wav"), "--editor", "heuristic"], tmp_path, stem_cache,
               limit_bytes=1 << 20)
    assert_clean_error(proc, "writing the WAV failed")
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- item 1: output == input


def test_output_equal_to_the_input_is_refused(song_wav, stem_cache, tmp_path):
    src = tmp_path / "song.wav"
    src.write_bytes(song_wav.read_bytes())
    before = sha(src)
    proc = cli(["edit", "song.wav", "-o", "song.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert_clean_error(proc, "is the input file")
    link = tmp_path / "link.wav"
    os.link(src, link)  # another name, the same inode
    proc = cli(["edit", "song.wav", "-o", "./sub/../link.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert_clean_error(proc, "is the input file")
    assert sha(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.wav", "song.wav"]


# ----------------------------------------------------------------------------- item 2: the WAV and its EDL are one unit


def test_output_naming_a_folder_leaves_no_orphan_edl(song_wav, stem_cache, tmp_path):
    (tmp_path / "edit.wav").mkdir()
    proc = cli(["edit", str(song_wav), "-o", "edit.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert_clean_error(proc, "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edit.wav"]


def test_a_failed_edl_rename_restores_the_previous_pair(tmp_path, monkeypatch):
    """The WAV is renamed, then the EDL rename fails: the previous WAV comes back; no temporaries remain."""
    wav, edl = tmp_path / "e.wav", tmp_path / "e.edl.json"
    wav.write_text("old wav")
    edl.write_text("old edl")
    t1, t2 = atomic.new_temp(wav), atomic.new_temp(edl)
    t1.write_text("new wav")
    t2.write_text("new edl")
    real = os.replace

    def failing(src, dst):
        if Path(dst) == edl:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError):
        replace_together([(t1, wav), (t2, edl)])
    assert (wav.read_text(), edl.read_text()) == ("old wav", "old edl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.edl.json", "e.wav"]
    wav.unlink()
    edl.unlink()  # no previous pair: the new WAV is removed again
    t1, t2 = atomic.new_temp(wav), atomic.new_temp(edl)
    with pytest.raises(OSError):
        replace_together([(t1, wav), (t2, edl)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_outputs_get_the_umask_mode_not_0600(song_wav, stem_cache, tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
        assert default_mode() == 0o666 & ~umask
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
    if umask == 0o027:  # the CLI's WAV and EDL too
        proc = subprocess.run(["bash", "-c", f"umask {umask:03o} && exec {sys.executable} -m app.cli edit {song_wav} -o e.wav "
                               "--editor heuristic"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO), "BEATEDIT_STEM_CACHE": str(stem_cache)})
        assert proc.returncode == 0, proc.stderr[-3000:]
        for name in ("e.wav", "e.edl.json"):
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


# ----------------------------------------------------------------------------- item 3: stage outputs are atomic


def _writers(tmp: Path) -> dict:
    from beatedit.editing.edl import EDL, Segment
    from beatedit.quarantine import write_report
    from tasks.ops import write_json
    from tasks.tracking import write_metrics
    from tests.songkit import make_song

    song, _ = make_song()
    edl = EDL(source_path="s.wav", source_sr=22050, source_channels=1, source_samples=1000, segments=[Segment(0, 500)])
    return {
        "quarantine.json": lambda p: write_report(p, "features", [], 3),
        "edit.edl.json": lambda p: edl.save(p),
        "song.npz": lambda p: song.save(p),
        "metrics.json": lambda p: write_metrics(p, {"songs": 3}),
        "decision.json": lambda p: write_json(p, {"approved": True}),
        "table.parquet": lambda p: _to_parquet(p),
    }


def _to_parquet(p: Path) -> None:
    import pandas as pd

    with atomic_path(p) as tmp:
        pd.DataFrame({"a": [1, 2]}).to_parquet(tmp, index=False)


@pytest.mark.parametrize("name", ["quarantine.json", "edit.edl.json", "song.npz", "metrics.json", "decision.json", "table.parquet"])
def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch, name):
    """The write dies between writing and renaming (a kill, a failing disk): the old file is intact, no temporary left."""
    target = tmp_path / name
    writer = _writers(tmp_path)[name]
    writer(target)
    before = target.read_bytes()

    def dies(path):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic, "_fsync_file", dies)
    with pytest.raises(OSError):
        writer(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


IN_PLACE = {"write_text", "write_bytes", "to_parquet", "to_csv", "to_json", "savez", "savez_compressed", "save", "dump", "write"}


def _in_place_writes(path: Path) -> list[str]:
    """Calls that write a file other than a temporary bound by ``with atomic_path(...) as NAME``."""
    tree = ast.parse(path.read_text())
    temps = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.With) for item in node.items
             if isinstance(item.optional_vars, ast.Name) and isinstance(item.context_expr, ast.Call)
             and getattr(item.context_expr.func, "id", getattr(item.context_expr.func, "attr", "")) == "atomic_path"}
    bad = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in IN_PLACE):
            continue
        owner = ast.unparse(node.func.value)
        if node.func.attr in ("write_text", "write_bytes"):
            ok = owner in temps
        elif node.func.attr in ("save", "dump", "write", "savez", "savez_compressed"):
            if owner not in ("np", "numpy", "json", "sf", "soundfile", "torch"):
                continue  # methods of our own objects (EDL.save ...), checked by their own modules
            target = node.args[1] if node.func.attr == "dump" and len(node.args) > 1 else (node.args[0] if node.args else None)
            ok = isinstance(target, ast.Name) and target.id in temps
        else:  # DataFrame.to_*: the first argument is the file (none: it returns the text)
            ok = not node.args or (isinstance(node.args[0], ast.Name) and node.args[0].id in temps)
        if not ok:
            bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:100]}")
    return bad


def test_stage_outputs_are_written_through_the_atomic_helper():
    """Every file a stage writes that a later stage, `beatedit run` or `promote` reads (parquet tables, decision.json,
    registry JSONs, quarantine reports, the manifest, EDLs, feature files, metrics)."""
    files = sorted((REPO / "tasks").glob("*.py")) + [REPO / "beatedit" / f for f in (
        "quarantine.py", "editing/edl.py", "audio/song.py", "editing/stem_edit.py")] + [REPO / "app" / "outputs.py"]
    bad = [b for f in files for b in _in_place_writes(f)]
    assert not bad, "written in place (use beatedit.atomic):\n" + "\n".join(bad)


def test_corpus_manifest_is_atomic(tmp_path, monkeypatch):
    from beatedit.corpus.generator import generate_corpus

    cfg = CorpusConfig(n_songs=1, min_seconds=10.0, max_seconds=12.0, sample_rate=8000, seed=1)
    generate_corpus(cfg, tmp_path, progress=False)
    before = (tmp_path / "manifest.json").read_bytes()
    monkeypatch.setattr(atomic, "_fsync_file", lambda p: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    with pytest.raises(OSError):
        generate_corpus(cfg, tmp_path, progress=False)
    assert (tmp_path / "manifest.json").read_bytes() == before


# ----------------------------------------------------------------------------- item 4: truncated WAV


def test_truncated_wav_is_announced_with_both_lengths_or_refused_under_strict(song_wav, stem_cache, tmp_path):
    cut = tmp_path / "cut.wav"
    data = song_wav.read_bytes()
    cut.write_bytes(data[: len(data) * 9 // 10 + 1])  # mid-frame, as a killed copy leaves it
    info = sf.info(song_wav)
    proc = cli(["edit", str(cut), "-o", "strict.wav", "--editor", "heuristic", "--strict"], tmp_path, stem_cache)
    assert_clean_error(proc, "truncated WAV", f"{info.frames / info.samplerate:.3f} s", "--strict")
    assert not (tmp_path / "strict.wav").exists()
    proc = cli(["edit", str(cut), "-o", "lenient.wav", "--editor", "heuristic"], tmp_path, stem_cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: " in proc.stderr and "truncated WAV" in proc.stderr
    assert f"header declares {info.frames / info.samplerate:.3f} s" in proc.stderr
    real = sf.info(cut).frames / info.samplerate
    assert f"holds {real:.3f} s" in proc.stderr


def test_an_intact_wav_gives_no_truncation_warning(song_wav, stem_cache, tmp_path):
    proc = cli(["edit", str(song_wav), "-o", "ok.wav", "--editor", "heuristic", "--strict"], tmp_path, stem_cache)
    assert proc.returncode == 0 and "truncated" not in proc.stderr, proc.stderr[-3000:]


# ----------------------------------------------------------------------------- item 13: memory guard


def test_samples_times_channels_over_the_limit_is_refused_before_the_analysis(song_wav, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("max_channel_samples: 120000000", "max_channel_samples: 1000000"))
    cache = tmp_path / "cache"
    proc = cli(["edit", str(song_wav), "-o", "big.wav", "--editor", "heuristic"], tmp_path, cache)  # ./params.yaml is used
    assert_clean_error(proc, "edit.max_channel_samples", "1,000,000")
    assert not cache.exists() or not any(cache.iterdir())


# ----------------------------------------------------------------------------- item 11: every numeric key has a range


def numeric_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key whose declared type holds a number (int, float, optional or in a list)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += numeric_keys(tp, f"{prefix}{f.name}.")
        elif "Literal" not in str(tp) and any(t in (int, float) for t in (tp, *typing.get_args(tp))):
            out.append(f"{prefix}{f.name}")
    return out


def test_every_numeric_key_has_a_range_and_the_defaults_satisfy_it():
    keys = numeric_keys()
    assert len(keys) > 150
    missing = [k for k in keys if range_for(k) is None]
    assert not missing, f"numeric keys without a range in beatedit/config.py RANGES: {missing}"
    load_config(REPO / "params.yaml")  # the shipped params (= the defaults) pass their own ranges


def _with(key: str, value) -> dict:
    raw = config_to_dict(Config())
    raw = json.loads(json.dumps(raw, default=list))
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return raw


BAD = [  # (key, value, what the message must say)
    ("audio.analysis_sr", -22050, ">= 8000"),
    ("audio.analysis_sr", 0, ">= 8000"),
    ("render.crossfade_ms", math.inf, "finite"),
    ("render.crossfade_ms", -1.0, ">= 0"),
    ("audio.max_seconds", math.nan, "finite"),
    ("audio.max_seconds", -math.inf, "finite"),
    ("audio.max_seconds", 0.0, "> 0"),
    ("audio.max_quarantined_fraction", 1.5, "<= 1"),
    ("audio.min_beats", 0, ">= 4"),
    ("audio.silence_dbfs", 6.0, "<= 0"),
    ("stems.hpss_kernel_harmonic", 24, "odd"),
    ("stems.hpss_kernel_percussive", 4, "odd"),
    ("stems.hpss_margin", 0.5, ">= 1"),
    ("stems.n_fft", 0, ">= 64"),
    ("features.trim_ratio", 2.0, "<= 1"),
    ("features.min_bpm", -60.0, "> 0"),
    ("env.target_max", 1.2, "<= 1"),
    ("env.length_tolerance_beats", math.nan, "finite"),
    ("render.target_lufs", 5.0, "<= 0"),
    ("dense_reward.energy_splice_weight", 1.01, "<= 1"),
    ("dense_reward.w_tempo", math.inf, "finite"),
    ("listener.fade_credit", 3.0, "<= 1"),
    ("listener.noise", math.nan, "finite"),
    ("orchestration.song_timeout_s", math.inf, "finite"),
    ("preferences.split_fractions", [0.5, math.nan, 0.5], "finite"),
    ("preferences.split_fractions", [1.5, -0.25, -0.25], "<= 1"),
    ("reward.dropout", 1.0, "< 1"),
    ("reward.lr", 0.0, "> 0"),
    ("reward.batch_size", 0, ">= 1"),
    ("rlhf.gamma", 1.5, "<= 1"),
    ("rlhf.lr", math.nan, "finite"),
    ("rlhf.target_kl", -0.1, "> 0"),
    ("rlhf.eval_targets", [0.5, 2.0], "<= 1"),
    ("rlhf.policy.d_model", 0, ">= 1"),
    ("rlhf.bc.val_fraction", 1.0, "< 1"),
    ("rlhf.dpo.beta", 0.0, "> 0"),
    ("rlhf.dpo.samples_per_prompt", 1, ">= 2"),
    ("rlhf.dpo.temperature", 0.0, "> 0"),
    ("rlhf.dpo.nll_coef", -0.1, ">= 0"),
    ("rlhf.dpo.rounds", 0, ">= 1"),
    ("rlhf.bc.editors", ["search", "oracle"], "must be one of"),
    ("evaluate.n_bootstrap", 0, ">= 1"),
    ("promote.margin", 0.7, "< 0.5"),
    ("ops.drift_tolerance_listener", math.inf, "finite"),
    ("edit.max_channel_samples", 0, ">= 1"),
    ("seed", -1, ">= 0"),
    ("torch_threads", -2, ">= 0"),
]


@pytest.mark.parametrize("key,value,says", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_out_of_range_values_are_refused_naming_the_key(key, value, says):
    with pytest.raises(ConfigError) as exc:
        _build(Config, _with(key, value), "", "params.yaml")
    msg = str(exc.value)
    assert key in msg and says in msg and "params.yaml" in msg, msg


@pytest.mark.parametrize("key,values,says", [
    ("dense_reward", {"w_tempo": 0.0, "w_energy": 0.0, "w_phrase": 0.0, "w_transition": 0.0}, "must be > 0"),
    ("listener", {k: 0.0 for k in ("w_duration", "w_alignment", "w_seams", "w_ending", "w_start", "w_arc", "w_fragmentation",
                                   "w_repetition")}, "positive sum"),
    ("rlhf", {"w_learned": 0.0, "w_dense": 0.0}, "must be > 0"),
    ("features", {"min_bpm": 200.0, "max_bpm": 100.0}, "min_bpm"),
])
def test_all_zero_weights_and_inverted_bounds_are_refused(key, values, says):
    raw = config_to_dict(Config())
    raw = json.loads(json.dumps(raw, default=list))
    raw[key].update(values)
    with pytest.raises(ConfigError, match=says):
        _build(Config, raw, "", "params.yaml")


def test_yaml_nan_and_inf_and_overrides_are_refused(tmp_path):
    text = (REPO / "params.yaml").read_text()
    for line, key in (("max_seconds: 1800.0", "audio.max_seconds"), ("crossfade_ms: 20.0", "render.crossfade_ms")):
        for bad in (".nan", ".inf", "-.inf"):
            p = tmp_path / "p.yaml"
            p.write_text(text.replace(line, line.split(":")[0] + ": " + bad, 1))
            with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                load_config(p)
    with pytest.raises(ConfigError, match=r"audio\.max_seconds must be a finite number"):
        load_config(REPO / "params.yaml", overrides=["audio.max_seconds=.nan"])
    raw = apply_overrides(json.loads(json.dumps(config_to_dict(Config()), default=list)), ["stems.hpss_kernel_harmonic=22"], "x")
    with pytest.raises(ConfigError, match="odd"):
        _build(Config, raw, "", "x")
