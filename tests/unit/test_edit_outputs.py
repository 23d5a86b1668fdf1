"""What `beatedit edit` writes beside the mix: stems cut at the mix's points, cues.json, the seams picture,
and the progress lines (issue 18 item 5)."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import soundfile as sf

from beatedit.audio.stems import STEM_NAMES, separate
from beatedit.config import RenderConfig, StemsConfig
from beatedit.editing.cues import CUES_VERSION, cues_for, splice_samples
from beatedit.editing.editors import edit_with
from beatedit.editing.edl import EDL
from beatedit.editing.render import edl_path_for, write_edit
from beatedit.editing.stem_edit import (StemOutputError, check_stem_backend, render_like, source_stems, stem_path_for,
                                        write_stems)
from beatedit.progress import phase, showing_progress
from tests.worldkit import make_world_song


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(song, source [2, n] at 44.1 kHz, its heuristic edit) of a 16-bar stereo song with known beats."""
    tmp = tmp_path_factory.mktemp("outputs")
    song, y = make_world_song(tmp, n_bars=12, seed=3)
    edit = edit_with("heuristic", song, 0.55, np.random.default_rng(0), crossfade_ms=20.0)
    return tmp, song, y, edit


def _written(tmp, name, edl, y, exact_samples=None):
    if exact_samples is not None:
        edl = dataclasses.replace(edl, meta={**edl.meta, "exact_samples": int(exact_samples)})
    out = tmp / f"{name}.wav"
    write_edit(edl, out, source=y, cfg=RenderConfig(wav_subtype="FLOAT"))
    return out, EDL.load(edl_path_for(out))


def test_hpss_stems_sum_to_the_mix():
    """The hpss masks sum to one in every bin: drums + bass + other is the mix (so --stems edits sum to the edit)."""
    rng = np.random.default_rng(1)
    sr = 44100
    t = np.arange(3 * sr) / sr
    y = (0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 1320 * t) + 0.1 * rng.standard_normal(len(t))).astype(np.float32)
    stems = separate(y, sr, StemsConfig())
    total = sum(stems[k].astype(np.float64) for k in STEM_NAMES)
    assert np.max(np.abs(total - y)) < 1e-4
    assert all(np.max(np.abs(stems[k])) > 1e-3 for k in STEM_NAMES)  # each stem holds something: not a trivial split


def test_stems_are_cut_at_the_mix_points_and_sum_to_the_edited_mix(world):
    tmp, song, y, edit = world
    assert splice_samples(edit.edl) and any(s.crossfade_samples for s in edit.edl.segments)  # crossfaded splices to check
    out, written = _written(tmp, "mix", edit.edl, y)
    mix, sr = sf.read(str(out), dtype="float32", always_2d=True)
    paths = write_stems(written, out, y, StemsConfig(), wav_subtype="FLOAT", analysis_sr=22050)
    assert {p.name for p in paths.values()} == {"mix.drums.wav", "mix.bass.wav", "mix.other.wav"}
    assert paths["drums"] == stem_path_for(out, "drums")
    rendered = [sf.read(str(paths[k]), dtype="float32", always_2d=True) for k in STEM_NAMES]
    assert all(r[1] == sr and r[0].shape == mix.shape for r in rendered)  # identical lengths and channels
    total = sum(r[0].astype(np.float64) for r in rendered)
    assert np.max(np.abs(total - mix)) < 1e-4
    # and cut at the same points: a stem rendered by a different EDL (the cut moved one beat) does not sum back
    moved = dataclasses.replace(written, segments=[dataclasses.replace(s, start_sample=s.start_sample + 1000,
                                                                       end_sample=s.end_sample + 1000)
                                                   if k == len(written.segments) - 1 else s
                                                   for k, s in enumerate(written.segments)])
    other = render_like(moved, source_stems(y, sr, StemsConfig())["drums"])
    assert np.max(np.abs(other.T + rendered[1][0] + rendered[2][0] - mix)) > 1e-2


def test_exact_stems_have_the_exact_length(world):
    tmp, song, y, edit = world
    n = int(round(edit.edl.n_samples * 1.02))
    out, written = _written(tmp, "exact", edit.edl, y, exact_samples=n)
    paths = write_stems(written, out, y, StemsConfig(), wav_subtype="FLOAT")
    assert sf.info(out).frames == n
    assert all(sf.info(p).frames == n for p in paths.values())


def test_stems_at_the_source_rate_keep_the_analysis_resolution():
    from beatedit.editing.stem_edit import at_rate

    cfg = StemsConfig()
    assert (at_rate(cfg, 44100, 22050).n_fft, at_rate(cfg, 44100, 22050).hop_length) == (2 * cfg.n_fft, 2 * cfg.hop_length)
    assert at_rate(cfg, 22050, 22050) == cfg and at_rate(cfg, 8000, 22050) == cfg and at_rate(cfg, 44100, None) == cfg


def test_demucs_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(StemOutputError, match="--stems: stems.backend is 'demucs' but no Demucs weights"):
        check_stem_backend(StemsConfig(backend="demucs", demucs_model_dir=str(tmp_path / "none")))


def _splices_from_json(edl_json: dict) -> list[float]:
    """Splice points in output seconds, computed from the EDL file alone (not with beatedit.editing.cues)."""
    segs, sr = edl_json["segments"], edl_json["source_sr"]
    scale = edl_json["meta"].get("exact_samples", 0) / sum(s["end_sample"] - s["start_sample"] for s in segs) or 1.0
    out, pos = [], 0
    for k, s in enumerate(segs):
        if k and s["start_sample"] != segs[k - 1]["end_sample"]:
            out.append(pos * scale / sr)
        pos += s["end_sample"] - s["start_sample"]
    return out


@pytest.mark.parametrize("exact", [False, True])
def test_cues_seams_are_the_edl_splices_in_output_time(world, exact):
    tmp, song, y, edit = world
    n = int(round(edit.edl.n_samples * 0.985)) if exact else None
    out, written = _written(tmp, f"cues{int(exact)}", edit.edl, y, exact_samples=n)
    cues = json.loads(json.dumps(cues_for(song, written)))  # what cues.json holds
    edl_json = json.loads(edl_path_for(out).read_text())
    assert cues["version"] == CUES_VERSION
    seams = [s["time"] for s in cues["seams"]]
    assert seams and seams == pytest.approx(_splices_from_json(edl_json), abs=1e-9)
    assert cues["duration"] == pytest.approx(sf.info(out).frames / sf.info(out).samplerate, abs=1e-6)
    # every beat maps back to its source time through its segment; output times increase
    times = [b["time"] for b in cues["beats"]]
    assert times == sorted(times) and times[-1] <= cues["duration"]
    for b in cues["beats"]:
        seg = [s for s in cues["segments"] if s["output_start"] <= b["time"] + 1e-9][-1]  # a beat on a seam starts the next piece
        src = seg["source_start"] + (b["time"] - seg["output_start"]) / cues["time_scale"]
        assert src == pytest.approx(b["source_time"], abs=1.5 / song.source_sr)
    assert {b["source_beat"] for b in cues["bars"]} <= set(song.bar_starts.tolist())
    assert {b["source_beat"] for b in cues["sections"]} <= set(song.section_starts.tolist()) and cues["sections"]
    # the edit's output beats are the ones played: each kept beat once (a heuristic edit loops nothing)
    assert len(cues["beats"]) == len(edit.output_beats)


def test_seams_picture_is_a_png(world, tmp_path):
    import matplotlib.pyplot as plt

    from beatedit.plots import seams_figure

    tmp, song, y, edit = world
    out, written = _written(tmp, "pic", edit.edl, y)
    mix, sr = sf.read(str(out), dtype="float32")
    fig = seams_figure(y.mean(axis=0), mix.mean(axis=1), sr, cues_for(song, written), title="t")
    fig.savefig(tmp_path / "s.png")
    plt.close(fig)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_is_one_line_per_phase_off_a_terminal():
    stream = io.StringIO()
    with showing_progress(["load", "stems", "render"], stream=stream, tty=False):
        for name in ("load", "stems", "render"):
            phase(name)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].endswith("stems: separating stems for the analysis (cached)")
    phase("load")  # outside the block: no handler, nothing shown
    assert len(stream.getvalue().splitlines()) == 3


def test_progress_never_reaches_a_stage_log():
    """A stage that logs the root logger at INFO analyses songs too: the phases must not flood its log."""
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.DEBUG)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    root, keep = logging.getLogger(), Keep()
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        phase("stems")
        logging.getLogger("beatedit.other").info("control")  # the handler does see ordinary records
    finally:
        root.removeHandler(keep)
        root.setLevel(level)
    assert [r.name for r in keep.records] == ["beatedit.other"]


def test_progress_is_a_bar_on_a_terminal():
    stream = io.StringIO()
    with showing_progress(["load", "stems"], stream=stream, tty=True):
        phase("load")
        phase("stems")
    text = stream.getvalue()
    assert "\r" in text and "separating stems" in text and "1/2" in text and "\n" not in text  # redrawn in place
