"""The production editing path for one audio file: stems -> features -> editor -> render.

Everything that can be refused is refused before the analysis: an output that is the
input (same path or same file), an output location that cannot be written, a source over
``edit.max_channel_samples`` (memory guard), a WAV truncated mid-data under ``strict``
(otherwise a warning with the header's and the real length). Nothing is written until
the edit is fully decided and rendered; the WAV and its EDL are written as one unit
(``beatedit.editing.render.write_edit``), so a failure never leaves half an output behind.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from beatedit.audio.io import AudioError, audio_info, load_audio, wav_truncation
from beatedit.config import Config
from beatedit.editing.program import check_target_ratio
from beatedit.editing.editors import EDITORS, edit_with
from beatedit.editing.edl import EDL
from beatedit.editing.render import WAV_BYTES, OutputLocationError, check_output, edl_path_for, write_edit
from beatedit.editing.stretch import StretchError
from beatedit.editing.target import target_ratio_for
from beatedit.audio.stems import StemCache
from beatedit.progress import phase

STEM_CACHE_ENV = "BEATEDIT_STEM_CACHE"


class EditFileError(ValueError):
    """The input cannot be edited (unreadable, silent, too short, bad target...); names the file."""


def stem_cache() -> StemCache:
    return StemCache(Path(os.environ.get(STEM_CACHE_ENV) or Path(tempfile.gettempdir()) / "beatedit-stem-cache"))


def _same_file(a: Path, b: Path) -> bool:
    """Same path once resolved (``sub/../x`` included, even before ``sub`` exists), or the same inode (a hard link)."""
    for bb in (b, Path(os.path.abspath(b))):
        if a.resolve() == bb.resolve():
            return True
        try:
            if os.path.samefile(a, bb):
                return True
        except OSError:
            pass
    return False


def check_inputs(input_path: Path, output: Path, cfg: Config, strict: bool = False,
                 warn: Callable[[str], None] | None = None) -> None:
    """Everything about the files that can be refused before the (long) analysis; EditFileError naming the file."""
    if output.suffix.lower() != ".wav":
        raise EditFileError(f"{output}: the output must be a .wav file")
    if not input_path.is_file():
        raise EditFileError(f"{input_path}: no such file")
    for out in (output, edl_path_for(output)):
        if _same_file(input_path, out):
            raise EditFileError(f"{out}: is the input file; writing there would destroy the source the EDL refers to "
                                "(choose another output name)")
    try:
        sr, channels, frames = audio_info(input_path)
    except AudioError as exc:
        raise EditFileError(f"{input_path}: cannot edit this file: {exc}") from None
    limit = cfg.edit.max_channel_samples
    if frames * channels > limit:
        raise EditFileError(f"{input_path}: {frames / sr:.1f} s x {channels} channels at {sr} Hz is {frames * channels:,} "
                            f"samples x channels, over the edit.max_channel_samples limit of {limit:,} (memory guard: about "
                            f"{8 * frames * channels / 1e9:.1f} GB); raise it in params.yaml if this machine has the memory")
    truncated = wav_truncation(input_path)
    if truncated is not None:
        declared, real = truncated
        msg = (f"{input_path}: truncated WAV: the header declares {declared / sr:.3f} s ({declared} frames) but the file "
               f"holds {real / sr:.3f} s ({real} frames)")
        if strict:
            raise EditFileError(msg + " (refused under --strict)")
        (warn or (lambda m: warnings.warn(m, stacklevel=3)))(msg + "; editing the part that is there")
    try:
        need = int(frames * channels * WAV_BYTES.get(cfg.render.wav_subtype, 4) * 1.05) + (1 << 20)
        check_output(output, need_bytes=need)
    except OutputLocationError as exc:
        raise EditFileError(str(exc)) from None


KEEP_POLICY_SAMPLES = 64  # --keep with the policy: samples drawn when its masked greedy edit cannot keep the regions


def check_keep_editor(editor: str, keep: Sequence[tuple[float, float]]) -> None:
    from beatedit.editing.keep import KEEP_EDITORS

    if keep and editor not in KEEP_EDITORS:
        raise EditFileError(f"--keep: the {editor} editor cannot keep a region; use --editor {' or '.join(KEEP_EDITORS)}")


def edit_keeping(song, target: float, cfg: Config, editor: str, keep: Sequence[tuple[float, float]], *, policy: Any = None,
                 reward_model: Any = None, best_of: int | None = None, seed: int = 0, temperature: float = 1.0):
    """The edit that keeps every region whole: the search editor's constrained path, or the best-ranked
    policy sample that keeps them. EditFileError for an impossible constraint (naming the region)."""
    from beatedit.editing.keep import check_regions, keep_beats, keeps
    from beatedit.editing.program import build_edit

    try:
        check_regions(keep, song.duration, target * song.duration)
        ranges = keep_beats(song, keep)
    except ValueError as exc:
        raise EditFileError(str(exc)) from None
    xf = cfg.render.crossfade_ms
    if editor == "search":
        from beatedit.editing.search import search_decisions

        try:
            decisions = search_decisions(song, target, cfg.env, keep=ranges)
        except ValueError as exc:
            raise EditFileError(str(exc)) from None
        try:
            edit = build_edit(song, decisions, xf, target, cfg.env, guarded=True)
        except ValueError:
            edit = build_edit(song, decisions, xf, target, cfg.env)
    else:  # the policy, masked step by step (models.policy_edit.keep_mask): greedy, or the best of --best-of samples
        from models.best_of import best_of_n
        from models.policy_edit import edit_songs

        if policy is None:
            raise EditFileError("no policy given (use --editor search to keep a region without a model)")
        edit = None
        if best_of is None:
            greedy = edit_songs(policy, [song], [target], cfg.env, greedy=True, crossfade_ms=xf, keep=[ranges])[0].edit
            edit = greedy if keeps(greedy, ranges) else None
        if edit is None:
            if reward_model is None:
                raise EditFileError("--keep: the policy's greedy edit could not keep the region(s); ranking samples needs "
                                    "the reward model: none given (--reward-model)")
            n = best_of or KEEP_POLICY_SAMPLES
            kept = [r for r in best_of_n(policy, reward_model, song, target, n, cfg.env, seed=seed, crossfade_ms=xf,
                                         temperature=temperature, keep=ranges) if keeps(r.edit, ranges)]
            if not kept:
                raise EditFileError(f"--keep: none of {n} policy samples could keep the region(s) whole within a beat of "
                                    "the target; use --editor search, or change the regions or the target")
            edit = kept[0].edit
    if not keeps(edit, ranges):  # the contract, checked on what will be written
        raise EditFileError("--keep: internal error: the edit does not keep the region(s)")
    return edit


def analyse_input(input_path: Path, target: float | None, output: Path, cfg: Config, *, duration: float | None = None,
                  strict: bool = False, warn: Callable[[str], None] | None = None):
    """Check the files (``check_inputs``) and the length request, analyse the song; (song, source audio, target ratio)."""
    from beatedit.audio.analysis import analyse_song

    if (target is None) == (duration is None):
        raise EditFileError("give exactly one of --target (a ratio) or --duration (seconds)")
    if target is not None:
        try:
            check_target_ratio(target)
        except ValueError as exc:
            raise EditFileError(f"--target: {exc}") from None
    check_inputs(input_path, output, cfg, strict=strict, warn=warn)
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
    return song, source, float(target)


def trained_range_warning(cfg: Config, target: float) -> str | None:
    """A warning when ``target`` (output / source length) lies outside the range the policy was trained on
    (``env.target_min`` .. ``env.target_max``): there its edits are untested and can be poor (30 s of a 208 s
    recording, 14%, came out as the song's last 30 s with no real start). The search editor takes any length."""
    lo, hi = cfg.env.target_min, cfg.env.target_max
    if lo - 1e-9 <= target <= hi + 1e-9:
        return None
    return (f"the target is {target:.0%} of the song's length, outside the {lo:.0%}-{hi:.0%} the policy was trained on "
            f"(env.target_min / env.target_max): its edits there are untested; the search editor handles any length "
            f"(--editor search)")


def edit_file(input_path: Path, target: float | None, output: Path, cfg: Config, editor: str = "policy", policy: Any = None,
              seed: int = 0, duration: float | None = None, exact: bool = False, strict: bool = False,
              warn: Callable[[str], None] | None = None, best_of: int | None = None, reward_model: Any = None,
              keep: Sequence[tuple[float, float]] = (), temperature: float = 1.0) -> dict:
    """Edit ``input_path`` to ``duration`` seconds (or ``target`` x its length) and write ``output`` + its EDL.

    ``exact``: time-stretch the edit by a few percent at most so the WAV lasts exactly the
    target, to the sample (``beatedit.editing.stretch``). ``strict``: refuse a truncated WAV
    (otherwise ``warn`` is called with the header's and the real length). ``best_of``: keep the
    best of that many policy samples under ``reward_model`` (``models.best_of``; default: the
    policy's greedy edit). ``keep``: source regions (start, end seconds) that must stay whole, in order
    (``beatedit.editing.keep``; the search editor and the policy honour it, the others are refused).
    Returns paths, the achieved and requested lengths and the stretch factor.
    """
    check_keep_editor(editor, keep)
    song, source, target = analyse_input(input_path, target, output, cfg, duration=duration, strict=strict, warn=warn)
    target_seconds = float(target) * song.duration
    if editor == "policy" and warn is not None and (problem := trained_range_warning(cfg, float(target))):
        warn(problem)
    phase("edit")
    if keep:
        edit = edit_keeping(song, target, cfg, editor, keep, policy=policy, reward_model=reward_model, best_of=best_of,
                            seed=seed, temperature=temperature)
    elif editor == "policy":
        if policy is None:
            raise EditFileError("no policy given (use --editor heuristic|random|fade to edit without a model)")
        if best_of is not None:
            from models.best_of import best_of_n

            if reward_model is None:
                raise EditFileError("--best-of ranks policy samples with the reward model: none given (--reward-model)")
            edit = best_of_n(policy, reward_model, song, target, best_of, cfg.env, seed=seed,
                             crossfade_ms=cfg.render.crossfade_ms, temperature=temperature)[0].edit
        else:
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
    phase("render")
    try:
        write_edit(edl, output, source=source, cfg=cfg.render)
    except StretchError as exc:
        raise EditFileError(f"--exact: {exc}") from None
    except OutputLocationError as exc:
        raise EditFileError(str(exc)) from None
    written = EDL.load(edl_path_for(output))
    achieved = written.meta.get("exact_samples", written.n_samples) / written.source_sr
    return {"wav": str(output), "edl": str(edl_path_for(output)), "duration": achieved, "edit_duration": edl.duration,
            "target_seconds": target_seconds, "stretch": written.meta.get("stretch"), "source_duration": song.duration,
            "song": song, "edit": edit}
