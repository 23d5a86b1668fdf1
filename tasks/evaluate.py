"""Evaluate stage tasks: candidate vs baselines (and the champion) on held-out songs; renders; decision."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_path, atomic_write_text
from beatedit.editing.actions import ACTION_NAMES
from beatedit.config import Config
from beatedit.paths import StagePaths
from beatedit.judging.statistics import head_to_head, promotion_decision
from tasks import registry, tracking
from tasks.resilience import IO_RETRY
from tasks.rlhf import songs_by_split

@task(name="load-candidate")
def load_candidate_task(cfg: Config) -> dict:
    from models.policy import load_policy
    from models.reward_model import load_reward_model

    paths = StagePaths.from_config(cfg)
    policy, _ = load_policy(paths.policy_checkpoint)
    reference, _ = load_policy(paths.reference_checkpoint)
    reward_model, normalizer, reward_payload = load_reward_model(paths.reward_checkpoint)
    reg = json.loads(paths.policy_registry.read_text())
    return {"policy": policy, "reference": reference, "reward_model": reward_model, "normalizer": normalizer,
            "policy_version": reg["version"], "reward_version": reg.get("reward_version"),
            "reward_gate_passed": bool(reward_payload.get("extra", {}).get("gate_passed", False))}


@task(name="load-champion", **IO_RETRY)
def load_champion_task(candidate_version: str) -> tuple[object | None, str | None]:
    """The registry's champion policy, unless there is none or it is the candidate itself."""
    from models.policy import load_policy
    from tasks.policy_source import checkpoint_from_uri

    version = registry.alias_version(registry.POLICY_MODEL, registry.CHAMPION)
    if version is None or version == candidate_version:
        return None, version
    from models.checkpoint import CheckpointError

    try:
        policy, _ = load_policy(checkpoint_from_uri(f"models:/{registry.POLICY_MODEL}/{version}"))
    except CheckpointError as exc:  # an earlier observation layout or feature schema: not comparable on these songs
        get_run_logger().warning("champion v%s cannot be run by this code (%s); the candidate is judged against the random floor", version, exc)
        return None, version
    return policy, version


@task(name="compare-editors")
def compare_task(cfg: Config, cand: dict, champion: object | None) -> tuple[pd.DataFrame, dict]:
    from models.heldout import compare_editors, exact_length_report

    songs = songs_by_split(cfg)[cfg.evaluate.split]
    if not songs:
        raise ValueError(f"no {cfg.evaluate.split} songs to evaluate on (see {StagePaths.from_config(cfg).splits_table})")
    df, summary = compare_editors(songs, cfg, cand["policy"], cand["reference"], cand["reward_model"],
                                  cand["normalizer"], champion, seed=cfg.evaluate.seed, n_boot=cfg.evaluate.n_bootstrap, judge=True)
    summary.update(exact_length_report(df, songs))
    return df, summary


@task(name="render-examples")
def render_examples_task(cfg: Config, df: pd.DataFrame) -> list[str]:
    """Original, heuristic and candidate renders (+ a picture each) for a few songs, logged to MLflow."""
    from beatedit.audio.io import load_audio, load_mono
    from beatedit.editing.edl import EDL
    from beatedit.plots import edit_figure
    from beatedit.editing.render import write_edit
    from beatedit.audio.song import SongAnalysis

    paths = StagePaths.from_config(cfg)
    out_dir = paths.eval_renders
    done = []
    for song_id in sorted(df.song_id.unique())[: cfg.evaluate.n_render_examples]:
        song = SongAnalysis.load(paths.feature_file(song_id))
        source, sr = load_audio(song.source_path)
        folder = out_dir / song_id
        folder.mkdir(parents=True, exist_ok=True)
        from beatedit.audio.io import write_wav

        write_wav(folder / "original.wav", source, sr)
        y = load_mono(song.source_path, cfg.audio.analysis_sr)
        for editor in ("heuristic", "candidate"):
            row = df[(df.song_id == song_id) & (df.editor == editor)].iloc[0]
            edl = EDL.from_json(row["edl"])
            write_edit(edl, folder / f"{editor}.wav", source=source, cfg=cfg.render)
            beats = [(s, 1.0, 1.0) for seg in edl.segments for s in range(seg.beat_start, seg.beat_end)]
            fig = edit_figure(y, cfg.audio.analysis_sr, song, beats,
                              f"{song_id} {editor}: listener {row['listener_total']:.3f}, duration {row['duration_ratio']:.2f} (target {row['target_ratio']:.2f})")
            fig.savefig(folder / f"{editor}.png", dpi=100)
            tracking.log_figure(fig, f"examples/{song_id}/{editor}.png")
        tracking.log_file(folder / "original.wav", f"examples/{song_id}")
        for editor in ("heuristic", "candidate"):
            tracking.log_file(folder / f"{editor}.wav", f"examples/{song_id}")
            tracking.log_file(folder / f"{editor}.edl.json", f"examples/{song_id}")
        done.append(song_id)
    return done


#: per-editor figures (``<figure>_<editor>``): a table, written to plots/eval/editors.csv instead of eval.json
#: (the candidate's own are eval.json's unprefixed ``listener_total``, ``judge_total``, ``within_one_beat``, ...)
EDITOR_FIGURES = ("listener_total", "judge_total", "duration_error_seconds_mean", "duration_error_seconds_p95", "within_one_beat")
KEEP_IN_METRICS = ("duration_error_seconds_p95_candidate",)  # the candidate's p95 length error has no unprefixed twin


def split_editor_figures(summary: dict, editors: list[str]) -> tuple[dict, pd.DataFrame]:
    """eval.json's figures without the per-editor table and the action shares (plots/eval/actions.csv draws
    those), and the per-editor table (one row per editor) -- so ``dvc metrics show`` stays readable and no
    figure is written twice."""
    table = pd.DataFrame([{"editor": e, **{f: summary[f"{f}_{e}"] for f in EDITOR_FIGURES if f"{f}_{e}" in summary}} for e in editors])
    per_editor = {f"{f}_{e}" for f in EDITOR_FIGURES for e in editors} - set(KEEP_IN_METRICS)
    metrics = {k: v for k, v in summary.items() if k not in per_editor and not k.startswith("action_share_")}
    return metrics, table


@task(name="listening-set")
def listening_set_task(cfg: Config, df: pd.DataFrame, cand: dict, champion_version: str | None) -> dict:
    """The listening set the feedback page serves (``StagePaths.listening_set``): blind candidate-vs-opponent pairs."""
    import time

    from beatedit.audio.song import SongAnalysis
    from beatedit.feedback.listening import build_listening_set

    paths = StagePaths.from_config(cfg)
    t0 = time.perf_counter()
    songs = sorted(df.song_id.unique())
    sources = {s: SongAnalysis.load(paths.feature_file(s)).source_path for s in songs}
    models = {"candidate": f"beatedit-policy/{cand['policy_version']}"}
    if champion_version:
        models["champion"] = f"beatedit-policy/{champion_version}"
    summary = build_listening_set(df, sources, paths.listening_set, n_songs=cfg.evaluate.listening_songs,
                                  max_pairs=cfg.evaluate.listening_pairs, render_cfg=cfg.render, models=models, split=cfg.evaluate.split)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    get_run_logger().info("listening set: %d pairs on %d songs in %s (%.1f s); serve it with `beatedit feedback serve`",
                          summary["pairs"], summary["songs"], paths.listening_set, summary["seconds"])
    return summary


@task(name="evaluation-report")
def report_task(cfg: Config, df: pd.DataFrame, summary: dict, cand: dict, champion_version: str | None) -> dict:
    from prefect.artifacts import create_markdown_artifact

    paths = StagePaths.from_config(cfg)
    paths.evaluate_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths.eval_results) as tmp:
        df.to_parquet(tmp, index=False)
    tracking.log_file(paths.eval_results)
    vs_champion = head_to_head(df, "candidate", "champion", n_boot=cfg.evaluate.n_bootstrap, seed=cfg.evaluate.seed) if "champion" in set(df.editor) else None
    vs_random = head_to_head(df, "candidate", "random", n_boot=cfg.evaluate.n_bootstrap, seed=cfg.evaluate.seed)
    approved, reason = promotion_decision(vs_champion, vs_random, cfg.promote.margin, cand["reward_gate_passed"])
    import mlflow

    decision = {"approved": approved, "reason": reason, "policy_version": cand["policy_version"], "reward_version": cand["reward_version"],
                "evaluated_against": champion_version,  # the champion at evaluation time (compare-and-set on promotion)
                "evaluation_run_id": mlflow.active_run().info.run_id}
    atomic_write_text(paths.eval_decision, json.dumps(decision, indent=1) + "\n")
    metrics, editors = split_editor_figures(summary, sorted(set(df.editor)))
    metrics["seam_discontinuity"] = 1.0 - summary["listener_seams"]  # 0 = seamless; from seams measured on the rendered audio
    metrics["candidate_version"] = cand["policy_version"]
    metrics["champion_version"] = champion_version
    metrics["approved_for_promotion"] = approved
    plots = paths.plots("evaluate")
    plots.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plots / "win_rates.csv", pd.DataFrame([{"opponent": k.removeprefix("win_rate_vs_"), "win_rate": v} for k, v in summary.items()
                  if k.startswith("win_rate_vs_") and not k.endswith(("_ci_low", "_ci_high"))]).to_csv(index=False))
    mine = df[df.editor == "candidate"]
    atomic_write_text(plots / "editors.csv", editors.to_csv(index=False))
    atomic_write_text(plots / "actions.csv", pd.DataFrame([{"action": a, "share": float(mine[f"action_share_{a}"].mean())} for a in ACTION_NAMES]).to_csv(index=False))
    tracking.log_plots(cfg, [plots / "win_rates.csv", plots / "actions.csv", plots / "editors.csv"])  # the figures dvc.yaml defines, as PNG
    lines = [f"| {k} | {v:.3f} |" for k, v in sorted(metrics.items()) if isinstance(v, float) and (k.startswith("win_rate") or k in (
        "listener_total", "learned_reward", "duration_within_5pct", "cuts_on_bar", "cuts_on_phrase", "seam_discontinuity"))]
    create_markdown_artifact(key="evaluation", markdown=(
        f"# beatedit evaluation\n\nCandidate `beatedit-policy` v{cand['policy_version']} on {int(summary['n_songs'])} held-out songs; "
        f"champion: {champion_version or 'none'}.\n\n**Promotion decision:** {'approve' if approved else 'refuse'} — {reason}\n\n"
        "| metric | value |\n|---|---|\n" + "\n".join(lines) + "\n"))
    get_run_logger().info("decision: %s (%s)", "approve" if approved else "refuse", reason)
    return metrics


@task(name="apply-promotion", **IO_RETRY)
def promote_task(decision_path: Path) -> dict:
    """Apply an evaluation's decision file (``StagePaths.eval_decision``) to the registry."""
    d = json.loads(Path(decision_path).read_text())
    result = registry.promote(d["policy_version"], d.get("reward_version") or None, d["evaluated_against"], d["evaluation_run_id"],
                              d["approved"], d["reason"])
    get_run_logger().info("%s: %s", "PROMOTED" if result.promoted else "not promoted", result.reason)
    return {"promoted": result.promoted, "reason": result.reason, "policy_version": result.policy_version,
            "previous_champion": result.previous_policy}
