"""What ``beatedit edit`` writes beside the mix and its EDL: cues, the seams picture, the stems.

* ``<out>.cues.json`` (always): beats, bars, sections and seams in output time, with the mapping
  to source time (``beatedit.editing.cues``, schema ``cues-v1``).
* ``<out>.seams.png`` (``--picture``, the default; ``--no-picture`` skips it): source and edit
  waveforms, kept regions shaded, seams marked in both (``beatedit.plots.seams_figure``).
* ``<out>.<stem>.wav`` (``--stems``): each stem cut at exactly the mix's points
  (``beatedit.editing.stem_edit``).

Everything is checked before the analysis (``check_outputs``) and written after the mix, each
file atomically (the stems as one unit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from beatedit.atomic import atomic_path, atomic_write_text
from beatedit.audio.io import load_audio
from beatedit.config import Config
from beatedit.editing.cues import cues_for, cues_path_for
from beatedit.editing.edl import EDL
from beatedit.editing.render import edl_path_for
from beatedit.editing.stem_edit import StemOutputError, check_stem_backend, stem_paths
from beatedit.progress import phase

ANALYSIS_PHASES = ("load", "stems", "frames", "beats", "features")


class OutputsError(ValueError):
    """An extra output cannot be written (names the file or the flag)."""


def picture_path_for(out_wav: str | Path) -> Path:
    """``edit.wav`` -> ``edit.seams.png`` (beside the EDL)."""
    p = Path(out_wav)
    return p.with_name(f"{p.stem}.seams.png")


def extra_paths(out_wav: str | Path, stems: bool, picture: bool) -> dict[str, Path]:
    paths = {"cues": cues_path_for(out_wav)}
    if picture:
        paths["picture"] = picture_path_for(out_wav)
    if stems:
        paths.update({f"stem:{k}": v for k, v in stem_paths(out_wav).items()})
    return paths


def expected_phases(stems: bool, picture: bool) -> list[str]:
    """The phases ``beatedit edit`` goes through, in order (the progress bar's length)."""
    return [*ANALYSIS_PHASES, "edit", "render", *(["stem-render"] if stems else []), "cues", *(["picture"] if picture else [])]


def check_outputs(input_path: Path, output: Path, cfg: Config, stems: bool, picture: bool) -> None:
    """Refuse before the analysis: an extra output that is the input or a folder, a stem backend that cannot run."""
    from app.edit import _same_file

    for name, path in extra_paths(output, stems, picture).items():
        if path.is_dir():
            raise OutputsError(f"{path}: is a folder; the {name} output of {output.name} goes there (choose another -o)")
        if input_path.is_file() and _same_file(input_path, path):
            raise OutputsError(f"{path}: is the input file; the {name} output would overwrite it (choose another -o)")
    if stems:
        try:
            check_stem_backend(cfg.stems)
        except StemOutputError as exc:
            raise OutputsError(str(exc)) from None


def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    return a.mean(axis=0) if a.ndim == 2 else a


def write_outputs(result: dict, cfg: Config, stems: bool = False, picture: bool = True) -> dict[str, str]:
    """Write the extras of one ``app.edit.edit_file`` result; returns ``{name: path}`` of what was written."""
    import soundfile as sf

    out_wav = Path(result["wav"])
    written = EDL.load(edl_path_for(out_wav))
    source, _ = load_audio(written.source_path)
    done: dict[str, str] = {}
    if stems:
        from beatedit.editing.stem_edit import write_stems

        phase("stem-render")
        try:
            paths = write_stems(written, out_wav, source, cfg.stems, cfg.render.wav_subtype, cfg.audio.analysis_sr)
        except StemOutputError as exc:
            raise OutputsError(str(exc)) from None
        done.update({f"stem:{k}": str(v) for k, v in paths.items()})
    phase("cues")
    cues = cues_for(result["song"], written)
    atomic_write_text(cues_path_for(out_wav), json.dumps(cues, indent=1) + "\n")
    done["cues"] = str(cues_path_for(out_wav))
    if picture:
        import matplotlib.pyplot as plt

        from beatedit.plots import seams_figure

        phase("picture")
        edit_audio, sr = sf.read(str(out_wav), dtype="float32", always_2d=True)
        fig = seams_figure(_mono(source), edit_audio.mean(axis=1), sr, cues, title=out_wav.name)
        try:
            with atomic_path(picture_path_for(out_wav)) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
        finally:
            plt.close(fig)
        done["picture"] = str(picture_path_for(out_wav))
    return done
