"""The production editing path for one audio file: stems -> features -> editor -> render.

Nothing is written until the edit is fully decided and rendered; the WAV and its
EDL are written atomically, so a bad input never leaves half an output behind.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from beatedit.audio.io import AudioError, load_audio
from beatedit.config import Config
from beatedit.editing.program import check_target_ratio
from beatedit.editing.editors import EDITORS, edit_with
from beatedit.editing.edl import EDL
from beatedit.editing.render import edl_path_for, write_edit
from beatedit.editing.stretch import StretchError
from beatedit.editing.target import target_ratio_for
from beatedit.audio.stems import StemCache

STEM_CACHE_ENV = "BEATEDIT_STEM_CACHE"


class EditFileError(ValueError):
    """The input cannot be edited (unreadable, silent, too short, bad target...); names the file."""


def stem_cache() -> StemCache:
    return StemCache(Path(os.environ.get(STEM_CACHE_ENV) or Path(tempfile.gettempdir()) / "beatedit-stem-cache"))


def edit_file(input_path: Path, target: float | None, output: Path, cfg: Config, editor: str = "policy", policy: Any = None,
              seed: int = 0, duration: float | None = None, exact: bool = False) -> dict:
    """Edit ``input_path`` to ``duration`` seconds (or ``target`` x its length) and write ``output`` + its EDL.

    ``exact``: time-stretch the edit by a few percent at most so the WAV lasts exactly the
    target, to the sample (``beatedit.editing.stretch``). Returns paths, the achieved and
    requested lengths and the stretch factor.
    """
    from beatedit.audio.analysis import analyse_song

    if (target is None) == (duration is None):
        raise EditFileError("give exactly one of --target (a ratio) or --duration (seconds)")
    if target is not None:
        try:
            check_target_ratio(target)
        except ValueError as exc:
            raise EditFileError(f"--target: {exc}") from None
    if output.suffix.lower() != ".wav":
        raise EditFileError(f"{output}: the output must be a .wav file")
    if not input_path.is_file():
        raise EditFileError(f"{input_path}: no such file")
    try:
        song = analyse_song(input_path, cfg, stem_cache())
        source, _sr = load_audio(input_path)
    except AudioError as exc:
        raise EditFileError(f"{input_path}: cannot edit this file: {exc}") from None
    if duration is not None:
        try:
            target = target_ratio_for(duration, song.duration)
        except ValueError as exc:
            raise EditFileError(f"--duration: {exc}") from None
    target_seconds = float(target) * song.duration
    if editor == "policy":
        if policy is None:
            raise EditFileError("no policy given (use --editor heuristic|random|fade to edit without a model)")
        from models.policy_edit import edit_song

        edit = edit_song(policy, song, target, cfg.env, crossfade_ms=cfg.render.crossfade_ms)
    elif editor in EDITORS:
        edit = edit_with(editor, song, target, np.random.default_rng(seed), cfg.env, cfg.render.crossfade_ms)
    else:
        raise EditFileError(f"unknown editor {editor!r} (policy, {', '.join(EDITORS)})")
    edl = edit.edl
    if exact:
        edl = dataclasses.replace(edl, meta={**edl.meta, "exact_samples": int(round(target_seconds * edl.source_sr))})
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_edit(edl, output, source=source, cfg=cfg.render)
    except StretchError as exc:
        raise EditFileError(f"--exact: {exc}") from None
    written = EDL.load(edl_path_for(output))
    achieved = written.meta.get("exact_samples", written.n_samples) / written.source_sr
    return {"wav": str(output), "edl": str(edl_path_for(output)), "duration": achieved, "edit_duration": edl.duration,
            "target_seconds": target_seconds, "stretch": written.meta.get("stretch"), "source_duration": song.duration,
            "song": song, "edit": edit}
