"""Several edits of one song to choose from: policy samples ranked by the reward model.

- ``beatedit edit ... --best-of N``: N policy samples, the one the reward model scores highest
  is written (``app.edit.edit_file`` calls ``ranked_samples``).
- ``beatedit edit ... --variations N``: the N best *distinct* samples are written as
  ``OUT.1.wav .. OUT.N.wav`` (best first) with their EDLs; each is reported with its score and
  achieved length.
- ``page_renderer``: the same for a song uploaded on the listening page
  (``beatedit.feedback.uploads`` takes it as an injected callable: the feedback package never
  imports ``models/`` or ``app/``).

Scores are the reward model's raw output WITH the target ratio (``models.best_of``); the
simulated listener never runs here.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from beatedit.config import Config
from beatedit.editing.edl import EDL
from beatedit.editing.render import OutputLocationError, edl_path_for, write_edit
from beatedit.editing.stretch import StretchError

from app.edit import EditFileError, analyse_input, check_inputs, trained_range_warning

MAX_VARIATIONS = 16  # --variations and the page: files written per request
MAX_BEST_OF = 256  # --best-of: samples drawn (one batched env, one batched reward call)
DRAWS_PER_VARIATION = 4  # --variations N draws this many samples per variation to find N distinct edits


_log = logging.getLogger("beatedit.variations")

def check_count(flag: str, n: Any, hi: int) -> int:
    """A whole number in [1, hi] for ``flag``; EditFileError naming the flag otherwise."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= hi:
        raise EditFileError(f"{flag}: must be a whole number from 1 to {hi}, got {n!r}")
    return n


def ranked_samples(song, target: float, cfg: Config, policy: Any, reward_model: Any, n: int, seed: int = 0,
                   distinct: int | None = None, temperature: float = 1.0) -> list:
    """``n`` policy samples of ``song`` at ``target`` ranked best first by ``reward_model``
    (``models.best_of.RankedEdit``); with ``distinct=k``, only the first ``k`` distinct edits of that ranking."""
    from models.best_of import best_of_n

    if policy is None:
        raise EditFileError("best-of-N and variations sample the policy: no policy given")
    if reward_model is None:
        raise EditFileError("best-of-N and variations rank samples with the reward model: none given (--reward-model)")
    ranked = best_of_n(policy, reward_model, song, target, n, cfg.env, seed=seed, crossfade_ms=cfg.render.crossfade_ms,
                       temperature=temperature)
    if distinct is None:
        return ranked
    seen, out = set(), []
    for r in ranked:
        if r.decisions not in seen:
            seen.add(r.decisions)
            out.append(r)
    return out[:distinct]


def variation_paths(output: Path, n: int) -> list[Path]:
    """``edit.wav`` -> ``edit.1.wav .. edit.N.wav`` (rank order, best first)."""
    return [output.with_name(f"{output.stem}.{k}{output.suffix}") for k in range(1, n + 1)]


def _write(edl: EDL, path: Path, source, cfg: Config, exact_seconds: float | None) -> float:
    """Write one variation (WAV + EDL as one unit); its achieved length in seconds."""
    if exact_seconds is not None:
        edl = dataclasses.replace(edl, meta={**edl.meta, "exact_samples": int(round(exact_seconds * edl.source_sr))})
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_edit(edl, path, source=source, cfg=cfg.render)
    except StretchError as exc:
        raise EditFileError(f"--exact: {exc}") from None
    except OutputLocationError as exc:
        raise EditFileError(str(exc)) from None
    written = EDL.load(edl_path_for(path))
    return written.meta.get("exact_samples", written.n_samples) / written.source_sr


def edit_variations(input_path: Path, target: float | None, output: Path, cfg: Config, policy: Any, reward_model: Any,
                    n: int, *, best_of: int | None = None, seed: int = 0, duration: float | None = None,
                    exact: bool = False, strict: bool = False, warn: Callable[[str], None] | None = None,
                    temperature: float = 1.0) -> dict:
    """Write the ``n`` best distinct policy samples as ``OUT.1.wav .. OUT.n.wav`` (+ EDLs), best first.

    ``max(best_of, DRAWS_PER_VARIATION * n)`` samples are drawn; when fewer than ``n`` of them
    are distinct (a sharp policy), fewer files are written and ``warn`` says so.
    """
    check_count("--variations", n, MAX_VARIATIONS)
    if best_of is not None:
        check_count("--best-of", best_of, MAX_BEST_OF)
    paths = variation_paths(output, n)
    for p in paths:  # every output refused before the analysis, like a single edit
        check_inputs(input_path, p, cfg, strict=strict, warn=lambda m: None)
    song, source, target = analyse_input(input_path, target, paths[0], cfg, duration=duration, strict=strict, warn=warn)
    if (problem := trained_range_warning(cfg, float(target))):
        (warn or _log.warning)(problem)
    draws = max(best_of or 0, DRAWS_PER_VARIATION * n)
    ranked = ranked_samples(song, target, cfg, policy, reward_model, draws, seed=seed, distinct=n, temperature=temperature)
    if len(ranked) < n:
        (warn or (lambda m: None))(f"only {len(ranked)} distinct edits among {draws} policy samples: "
                                   f"writing {len(ranked)} variations, not {n}")
    target_seconds = target * song.duration
    out = []
    for rank, (r, path) in enumerate(zip(ranked, paths), start=1):
        achieved = _write(r.edit.edl, path, source, cfg, target_seconds if exact else None)
        out.append({"rank": rank, "wav": str(path), "edl": str(edl_path_for(path)), "score": r.score,
                    "duration": achieved, "edit": r.edit})
    return {"variations": out, "target_seconds": target_seconds, "source_duration": song.duration, "song": song,
            "draws": draws}


def page_renderer(cfg: Config, policy: Any, reward_model: Any, seed: int = 0, model_name: str = "policy"):
    """The listening page's variation renderer (``beatedit.feedback.uploads.VariationRenderer``):
    ``(source, target_seconds, n, out_dir) -> list[Variation]``, the same checks as ``beatedit edit``
    (decode, duration, memory guard; a truncated WAV is refused), best first."""
    from beatedit.feedback.uploads import Variation

    def render(source: Path, target_seconds: float, n: int, out_dir: Path) -> list[Variation]:
        try:
            res = edit_variations(source, None, out_dir / "variation.wav", cfg, policy, reward_model, n, seed=seed,
                                  duration=target_seconds, strict=True)
        except EditFileError as exc:
            raise ValueError(str(exc).replace(str(source), "the uploaded file").replace("--duration: ", "target: ")) from None
        res["song"].save(out_dir / "analysis.npz")  # beat features of the upload: what a reward model trains on with these pairs
        ratio = res["target_seconds"] / res["source_duration"]
        return [Variation(wav=Path(v["wav"]), edl=Path(v["edl"]), actions=[int(a) for a in v["edit"].beat_actions],
                          score=float(v["score"]), duration=float(v["duration"]), target_ratio=ratio, kind="policy-sample",
                          model=model_name) for v in res["variations"]]

    return render
