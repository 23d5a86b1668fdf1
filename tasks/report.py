"""Report stage tasks: the frozen test set's songs, each seed's policy, the scoring, the files and MLflow logging."""

from __future__ import annotations

import json

import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_path, atomic_write_text
from beatedit.audio.song import SongAnalysis
from beatedit.config import Config, load_config
from beatedit.paths import StagePaths
from tasks import tracking


def seed_config(params: str, overrides: list[str] | tuple[str, ...], seed: int) -> Config:
    """The rlhf stage's config with ``rlhf.seed = seed``; its outputs (the BC reference) go under the report's folder,
    never over the rlhf stage's."""
    cfg = load_config(params, list(overrides))
    out = StagePaths.from_config(cfg).report_policies / f"seed_{seed}"
    return load_config(params, [*overrides, f"rlhf.seed={seed}", f"rlhf.out_dir={out}"])


class FrozenTestSetMissing(FileNotFoundError):
    """The frozen test set has not been built (the frozen_testset stage)."""


def frozen_songs(cfg: Config) -> list[SongAnalysis]:
    """Every song of the frozen test set (report.data_dir/features); ``FrozenTestSetMissing`` names the file when not built."""
    feats = StagePaths.from_config(cfg).frozen_features_dir
    index = feats / "index.parquet"
    if not index.exists():
        raise FrozenTestSetMissing(f"{index}: the frozen test set is not built (report.data_dir); run `dvc repro frozen_testset` "
                                   "(or `make report`)")
    ids = sorted(pd.read_parquet(index)["song_id"])
    return [SongAnalysis.load(feats / f"{sid}.npz") for sid in ids]


@task(name="frozen-test-songs")
def frozen_songs_task(cfg: Config) -> list[SongAnalysis]:
    songs = frozen_songs(cfg)
    get_run_logger().info("frozen test set: %d songs from %s", len(songs), StagePaths.from_config(cfg).frozen_features_dir)
    return songs


@task(name="rlhf-stage-policy")
def stage_policy_task(cfg: Config) -> object:
    """The rlhf stage's own policy (trained with rlhf.seed): the report does not train it again."""
    from models.policy import load_policy

    policy, _ = load_policy(StagePaths.from_config(cfg).policy_checkpoint)
    return policy


@task(name="save-seed-policy")
def save_seed_policy_task(cfg: Config, policy: object, seed: int) -> object:
    """Save one seed's trained policy under report.out_dir/policies/seed_<k>/ (and to MLflow); returns it on the CPU,
    where the report edits."""
    from models.policy import save_policy

    path = StagePaths.from_config(cfg).report_policies / f"seed_{seed}" / "policy.pt"
    save_policy(path, policy, extra={"algorithm": cfg.rlhf.algorithm, "rlhf_seed": seed})
    tracking.log_file(path, f"policies/seed_{seed}")
    return policy.to("cpu")


@task(name="score-frozen-test-set")
def frozen_rows_task(cfg: Config, songs: list[SongAnalysis], policies: dict[int, object]) -> pd.DataFrame:
    from models.report import frozen_report_rows
    from models.reward_model import load_reward_model

    reward_model, normalizer, _ = load_reward_model(StagePaths.from_config(cfg).reward_checkpoint)
    return frozen_report_rows(songs, cfg, policies, reward_model, normalizer)


@task(name="score-real-music")
def real_music_task(cfg: Config, policies: dict[int, object]) -> tuple[pd.DataFrame | None, str]:
    """The real-music pieces (rendered scores, beatedit.corpus.realmusic), analysed by the front end and scored by the
    independent judge; (None, why) when they cannot be rendered here (no fluidsynth / soundfont / music21)."""
    from beatedit.audio.analysis import analyse_song
    from beatedit.audio.io import AudioError
    from beatedit.audio.stems import StemCache
    from beatedit.corpus.realmusic import RealMusicUnavailable, build_real_music
    from models.report import real_music_rows

    if not cfg.report.real_music:
        return None, "report.real_music is false"
    folder = StagePaths.from_config(cfg).report_dir / "real_music"
    import subprocess

    try:
        pieces = build_real_music(folder)
    except (RealMusicUnavailable, OSError, subprocess.SubprocessError) as exc:  # no synthesiser / soundfont, or it failed
        get_run_logger().warning("real music skipped: %s", exc)
        return None, str(exc)
    songs, bad = [], []
    for p in pieces:
        try:
            songs.append(analyse_song(p.wav_path, cfg, StemCache(folder / "stems")))
        except (AudioError, ValueError) as exc:
            bad.append(f"{p.name}: {exc}")
    for b in bad:
        get_run_logger().warning("real music piece quarantined: %s", b)
    if not songs:
        return None, "no real-music piece could be analysed: " + "; ".join(bad)
    return real_music_rows(songs, cfg, policies), ""


@task(name="report-files")
def write_report_task(cfg: Config, df: pd.DataFrame, real: pd.DataFrame | None, skipped: dict[str, str]) -> dict:
    """metrics/report.json, plots/report/ (win_rates.csv, win_rates.png: bars with CIs), the markdown table; MLflow."""
    from prefect.artifacts import create_markdown_artifact

    from beatedit.judging.report import markdown_table, report_summary, win_rate_rows
    from beatedit.plots import win_rate_bars_figure

    paths = StagePaths.from_config(cfg)
    paths.report_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths.report_results) as tmp:
        df.to_parquet(tmp, index=False)
    if real is not None:
        with atomic_path(paths.report_real_music) as tmp:
            real.to_parquet(tmp, index=False)
    metrics = report_summary(df, list(cfg.report.seeds), list(cfg.report.best_of), real, cfg.report.n_bootstrap, cfg.report.seed)
    metrics["real_music_skipped"] = bool(real is None)
    table = markdown_table(metrics, skipped)
    atomic_write_text(paths.report_table, table)
    plots = paths.plots("report")
    plots.mkdir(parents=True, exist_ok=True)
    rows = win_rate_rows(metrics)
    atomic_write_text(plots / "win_rates.csv", rows.assign(bar=rows["set"] + " vs " + rows["opponent"]).to_csv(index=False))
    fig = win_rate_bars_figure(rows.to_dict("records"), f"policy ({len(cfg.report.seeds)} seeds) vs the baselines")
    with atomic_path(plots / "win_rates.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    tracking.log_figure(fig, "plots/report_win_rates.png")
    for p in (paths.report_results, paths.report_table):
        tracking.log_file(p)
    tracking.write_metrics(paths.metrics("report"), metrics)
    create_markdown_artifact(key="report", markdown="# beatedit report\n\n" + table)
    get_run_logger().info("report:\n%s", table)
    return json.loads(json.dumps(metrics))
