"""Reward stage tasks: train (or load) the reward model, validate it, gate it, log and register it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_write_text
from beatedit.config import Config
from beatedit.paths import StagePaths
from beatedit.audio.song import SongAnalysis
from tasks import registry, tracking


def load_songs(cfg: Config, song_ids: list[str] | None = None) -> dict[str, SongAnalysis]:
    """Feature files of the listed songs (default: every song in the features index); a song only a listener
    brought (an upload on the feedback page) is read from the analyses exported beside the votes."""
    paths = StagePaths.from_config(cfg)
    index = pd.read_parquet(paths.features_index)
    ids = sorted(set(index["song_id"]) if song_ids is None else set(song_ids))
    return {sid: SongAnalysis.load(paths.song_file(sid)) for sid in ids}


def load_pairs(cfg: Config) -> pd.DataFrame:
    """The preferences stage's pair table."""
    return pd.read_parquet(StagePaths.from_config(cfg).pairs_table)


@task(name="train-reward-model")
def train_reward_task(cfg: Config, pairs: pd.DataFrame, songs: dict[str, SongAnalysis]) -> tuple[object, list[dict]]:
    import mlflow

    from models.train_reward import train_reward_model

    def log(metrics: dict, step: int) -> None:
        mlflow.log_metrics({f"train/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    return train_reward_model(pairs, songs, cfg, log=log, device=None if cfg.device == "auto" else cfg.device)


@task(name="load-reward-checkpoint")
def load_reward_task(path: str) -> object:
    from models.reward_model import load_reward_model

    model, normalizer, _ = load_reward_model(path)
    model.normalizer = normalizer
    get_run_logger().info("loaded reward checkpoint %s (feature schema and action vocabulary match)", path)
    return model


@task(name="validate-reward-model")
def validate_reward_task(cfg: Config, model: object, pairs: pd.DataFrame, songs: dict[str, SongAnalysis]) -> dict:
    from models.train_reward import human_train_pairs, validate_reward_model

    metrics = validate_reward_model(model, pairs, songs, cfg)
    metrics["train_pairs_human"] = human_train_pairs(pairs)  # trained with weight reward.human_weight
    return metrics


@task(name="champion-reward-accuracy")
def champion_accuracy_task(cfg: Config, pairs: pd.DataFrame, songs: dict[str, SongAnalysis]) -> dict | None:
    """The current champion reward model's validation figures on the same pairs (None when there is none):
    ``val_accuracy`` decides whether the candidate replaces it; ``human_agreement`` is the champion's agreement with
    the human votes it was not trained on (before the votes, against the candidate's after)."""
    from models.reward_model import load_reward_model
    from models.train_reward import validate_reward_model
    from tasks.policy_source import checkpoint_from_uri

    if registry.alias_version(registry.REWARD_MODEL, registry.CHAMPION) is None:
        return None
    from models.checkpoint import CheckpointError

    path = checkpoint_from_uri(f"models:/{registry.REWARD_MODEL}@{registry.CHAMPION}")
    try:
        model, _, _ = load_reward_model(path)
    except CheckpointError as exc:  # e.g. trained by an earlier model architecture or feature schema
        get_run_logger().warning("the champion reward model cannot be used by this code, so it cannot be compared (%s); "
                                 "a candidate that passes the gate replaces it", exc)
        return None
    return validate_reward_model(model, pairs, songs, cfg)


def reward_version_description(cfg: Config, metrics: dict, gate_passed: bool, run_id: str) -> str:
    """What this reward model version was trained on and how it validated (the registry's version description)."""
    from beatedit.summary import figures_text
    from models.checkpoint import dvc_lock_hash

    paths = StagePaths.from_config(cfg)
    split = pd.read_parquet(paths.pairs_table, columns=["split"])["split"].value_counts()
    return (f"Trained on {int(split.get('train', 0))} preference pairs (`{paths.pairs_table}`, split by song; dvc.lock "
            f"{dvc_lock_hash()}), validated on {int(split.get('validation', 0))}. "
            f"Validation: {figures_text(metrics, ('val_accuracy', 'noise_ceiling', 'val_to_ceiling', 'ece', 'ood_accuracy', 'spearman_gold'))}. "
            f"Gate {'passed' if gate_passed else 'FAILED'}. MLflow run {run_id}.")


@task(name="save-and-register-reward-model")
def save_and_register_task(cfg: Config, model: object, metrics: dict, gate_passed: bool, champion_acc: float | None) -> dict:
    import mlflow

    from models.reward_model import save_reward_model
    from tasks.mlflow_models import log_reward_model

    paths = StagePaths.from_config(cfg)
    out = paths.reward_checkpoint
    save_reward_model(out, model, getattr(model, "normalizer", None), extra={"metrics": metrics, "gate_passed": gate_passed})
    run_id = mlflow.active_run().info.run_id
    model_uri = log_reward_model(out)
    become_champion = gate_passed and (champion_acc is None or metrics["val_accuracy"] >= champion_acc)
    aliases = (registry.CHALLENGER,) + ((registry.CHAMPION,) if become_champion else ())
    version = registry.register(model_uri, registry.REWARD_MODEL, aliases=aliases,
                                tags={"gate_passed": str(gate_passed), "val_accuracy": f"{metrics['val_accuracy']:.4f}"},
                                description=reward_version_description(cfg, metrics, gate_passed, run_id))
    why = ("passed the gate" + ("" if champion_acc is None else f" and matches/beats the champion ({metrics['val_accuracy']:.3f} >= {champion_acc:.3f})")
           if become_champion else ("failed the gate" if not gate_passed else f"below the champion's accuracy {champion_acc:.3f}"))
    get_run_logger().info("registered %s version %s with aliases %s (%s)", registry.REWARD_MODEL, version, aliases, why)
    mlflow.set_tags({"reward_version": version, "reward_champion": str(become_champion)})
    atomic_write_text(paths.reward_registry, json.dumps({"version": version, "run_id": run_id, "champion": become_champion}, indent=1) + "\n")
    return {"version": version, "champion": become_champion, "reason": why}


@task(name="reward-report")
def reward_report_task(cfg: Config, metrics: dict, history: list[dict], failures: list[str], registered: dict | None) -> dict:
    paths = StagePaths.from_config(cfg)
    plots = paths.plots("reward")
    plots.mkdir(parents=True, exist_ok=True)
    if history:
        atomic_write_text(plots / "history.csv", pd.DataFrame(history).to_csv(index=False))
        tracking.log_plots(cfg, [plots / "history.csv"])  # the figures dvc.yaml defines, as PNG
    else:
        atomic_write_text(plots / "history.csv", pd.DataFrame([{"epoch": 0, **{k: metrics.get(k) for k in ("val_accuracy",)}}]).to_csv(index=False))
    out = {**metrics, "gate_passed": not failures, "gate_failures": failures, "epochs": len(history)}
    if registered:
        out.update(registered_version=registered["version"], registered_champion=registered["champion"])
    tracking.write_metrics(paths.metrics("reward"), out)
    with tempfile.TemporaryDirectory() as tmp:
        atomic_write_text(Path(tmp) / "gate.txt", "PASSED\n" if not failures else "FAILED\n" + "\n".join(failures) + "\n")
        tracking.log_file(Path(tmp) / "gate.txt")
    return out
