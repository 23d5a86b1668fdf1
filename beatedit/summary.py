"""The headline figures of a pipeline run, as a short table to end ``make pipeline`` with.

One line per figure a reader looks for first (corpus size, front end accuracy, preference data, the reward gate, the
policy's training, the policy against the strong baselines under both judges, the length, the promotion decision), read from the
stages' metrics files; a figure a stage did not write is left out, never invented.
"""

from __future__ import annotations

from typing import Any

#: (metrics file stem, key, label)
HEADLINES: tuple[tuple[str, str, str], ...] = (
    ("corpus", "songs", "songs in the corpus"),
    ("stems", "songs", "songs separated into stems"),
    ("features", "beat_f_measure", "beat F-measure (generated corpus)"),
    ("features", "downbeat_f_measure", "downbeat F-measure (generated corpus)"),
    ("preferences", "n_pairs", "preference pairs"),
    ("reward", "val_to_ceiling", "reward model: validation accuracy / noise ceiling"),
    ("reward", "ece", "reward model: calibration error"),
    ("rlhf", "best_gold", "policy: best validation gold (listener) during training"),
    ("rlhf", "best_kl", "policy: KL to the reference (kept checkpoint)"),
    ("eval", "win_rate_vs_search", "policy vs search editor (listener)"),
    ("eval", "win_rate_vs_fade", "policy vs radio fade (listener)"),
    ("eval", "win_rate_vs_heuristic", "policy vs heuristic (listener)"),
    ("eval", "judge_win_rate_vs_search", "policy vs search editor (independent judge)"),
    ("eval", "search_win_rate_vs_fade", "search editor vs radio fade (listener)"),
    ("eval", "within_one_beat", "policy edits within one beat of the target"),
    ("eval", "exact_within_1ms", "--exact within 1 ms"),
    ("eval", "promoted", "promoted to champion"),
    ("eval", "promotion_reason", "promotion decision"),
)


def headline_rows(metrics: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, formatted value) for every headline figure present in ``metrics`` (file stem -> dict)."""
    rows = []
    for stem, key, label in HEADLINES:
        value = metrics.get(stem, {}).get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, float):
            text = f"{value:.3f}"
            ci = (metrics[stem].get(f"{key}_ci_low"), metrics[stem].get(f"{key}_ci_high"))
            if all(isinstance(c, float) for c in ci):
                text += f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})"
        else:
            text = str(value)
        rows.append((label, text))
    return rows


def headline_table(metrics: dict[str, dict[str, Any]]) -> str:
    rows = headline_rows(metrics)
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"  {label:<{width}}  {text}" for label, text in rows)


def figures_text(figures: dict[str, Any], keys: tuple[str, ...] | None = None) -> str:
    """``key value, key value`` for the numeric / text figures present (a model version's or run's description)."""
    out = []
    for key in keys or tuple(figures):
        value = figures.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float):
            out.append(f"{key} {value:.3f}")
        elif isinstance(value, (int, str)):
            out.append(f"{key} {value}")
    return ", ".join(out)
