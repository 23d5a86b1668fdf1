"""RLHF stage tasks: behaviour-cloned reference, PPO or DPO, held-out check, MLflow logging and registration."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task

from beatedit.atomic import atomic_write_text
from beatedit.config import Config, config_to_dict, render_params_yaml
from beatedit.devtools.import_graph import stage_code_fingerprint
from beatedit.paths import StagePaths
from beatedit.summary import figures_text
from beatedit.audio.song import SongAnalysis
from tasks import registry, tracking
from tasks.reward import load_songs


def songs_by_split(cfg: Config) -> dict[str, list[SongAnalysis]]:
    """Train / validation / promotion songs, as the preferences stage split them (by song id, never by pair).
    A splits.csv written before the rename calls the promotion split "test": read as "promotion"."""
    from beatedit.preferences.pairs import LEGACY_SPLITS, SPLITS

    splits = pd.read_csv(StagePaths.from_config(cfg).splits_table)
    splits["split"] = splits["split"].replace(LEGACY_SPLITS)
    songs = load_songs(cfg, list(splits["song_id"]))
    return {name: [songs[s] for s in sorted(splits.loc[splits["split"] == name, "song_id"])] for name in SPLITS}


def prefixed(prefix: str, key: str) -> str:
    """``prefix/key`` once: the trainers already name some keys ``bc/loss`` or ``dpo/accuracy``."""
    key = key.lstrip("/")
    return key if key.startswith(prefix + "/") else f"{prefix}/{key}"


def mlflow_logger(prefix: str):
    import mlflow

    def log(metrics: dict, step: int) -> None:
        clean = {prefixed(prefix, k): float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        mlflow.log_metrics(clean, step=int(step))

    return log


def run_key(cfg: Config) -> str:
    """Checkpoints of one run live in a folder keyed by everything that shapes training -- params, the
    reward model, the songs and split, and the code the rlhf stage imports -- so a killed run re-run
    unchanged resumes, and a change starts fresh instead of picking up a finished run's checkpoints.

    The code part is the stage's import closure (the same files dvc.yaml lists) hashed without
    comments, docstrings or layout: DVC still re-runs the stage on a comment-only edit (it hashes
    bytes), but the run then resumes from its own final checkpoint instead of retraining."""
    paths = StagePaths.from_config(cfg)
    h = hashlib.sha256()
    h.update(json.dumps({k: config_to_dict(cfg)[k] for k in ("seed", "env", "render", "dense_reward", "listener", "rlhf")}, sort_keys=True, default=str).encode())
    for p in (paths.reward_checkpoint, paths.features_index, paths.splits_table):
        h.update(p.read_bytes() if p.exists() else b"-")
    h.update(stage_code_fingerprint("rlhf").encode())
    return h.hexdigest()[:12]


@task(name="behaviour-cloning")
def bc_task(cfg: Config, train: list[SongAnalysis], device: str) -> tuple[object, object, dict]:
    from models.bc import make_reference, train_bc
    from models.policy import policy_for_env, save_policy

    import torch

    torch.manual_seed(cfg.rlhf.seed)
    policy = policy_for_env(cfg.env, cfg.rlhf.policy)
    metrics = train_bc(policy, train, cfg, log=mlflow_logger("bc"), device=device)
    reference = make_reference(policy)
    save_policy(StagePaths.from_config(cfg).reference_checkpoint, reference, extra={"bc": metrics})
    get_run_logger().info("behaviour cloning: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return policy, reference, metrics


@task(name="ppo")
def ppo_task(cfg: Config, policy: object, reference: object, train: list[SongAnalysis], val: list[SongAnalysis], device: str) -> dict:
    import mlflow

    from models.ppo import train_ppo
    from models.reward_model import load_reward_model

    paths = StagePaths.from_config(cfg)
    reward_model, normalizer, _ = load_reward_model(paths.reward_checkpoint)
    ckpt_dir = paths.rlhf_runs_dir / run_key(cfg)
    logger = get_run_logger()
    resume = ckpt_dir if any(ckpt_dir.glob("ckpt_*.pt")) else None
    if resume:
        logger.info("resuming PPO from the last checkpoint in %s", ckpt_dir)

    def on_checkpoint(path: Path, step: int) -> None:
        mlflow.log_artifact(str(path), artifact_path=f"checkpoints/step_{step:08d}")

    return train_ppo(policy, reference, reward_model, normalizer, train, val, cfg, log=mlflow_logger("ppo"), on_checkpoint=on_checkpoint,
                     resume_from=resume, device=device, checkpoint_dir=ckpt_dir)


@task(name="dpo")
def dpo_task(cfg: Config, policy: object, reference: object, train: list[SongAnalysis], val: list[SongAnalysis], device: str) -> dict:
    import mlflow

    from models.dpo import train_dpo, train_online_dpo
    from models.reward_model import load_reward_model

    paths = StagePaths.from_config(cfg)
    reward_model, normalizer, _ = load_reward_model(paths.reward_checkpoint)
    ckpt_dir = paths.rlhf_runs_dir / (run_key(cfg) + "-dpo")

    def on_checkpoint(path: Path, step: int) -> None:
        mlflow.log_artifact(str(path), artifact_path=f"checkpoints/dpo_step_{step:08d}")

    if cfg.rlhf.dpo.online:  # samples of the current policy ranked by the learned reward model, round after round
        return train_online_dpo(policy, reference, reward_model, normalizer, train, val, cfg, log=mlflow_logger("dpo"),
                                on_checkpoint=on_checkpoint, checkpoint_dir=ckpt_dir, device=device)
    pairs = pd.read_parquet(paths.pairs_table)
    return train_dpo(policy, reference, pairs, train + val, cfg, songs_val=val, reward_model=reward_model, normalizer=normalizer,
                     log=mlflow_logger("dpo"), on_checkpoint=on_checkpoint, checkpoint_dir=ckpt_dir, device=device)


@task(name="held-out-check")
def heldout_task(cfg: Config, policy: object, reference: object, test: list[SongAnalysis], algorithm: str,
                 primary: bool = True) -> dict:
    """Held-out figures: the primary algorithm's unprefixed, the compared one's prefixed with its name (``dpo_*`` / ``ppo_*``)."""
    from models.heldout import compare_editors
    from models.reward_model import load_reward_model

    reward_model, normalizer, _ = load_reward_model(StagePaths.from_config(cfg).reward_checkpoint)
    _, summary = compare_editors(test, cfg, policy, reference, reward_model, normalizer, seed=cfg.evaluate.seed,
                                 n_boot=cfg.evaluate.n_bootstrap)
    keys = [k for k in summary if k.startswith("win_rate_vs_")] + ["listener_total", "learned_reward", "duration_within_5pct", "cuts_on_bar"]
    return {(k if primary else f"{algorithm}_{k}"): summary[k] for k in keys if k in summary}


def training_figures(algorithm: str, result: dict) -> dict:
    """The per-algorithm training figures reported side by side: ``{algorithm}_final_kl`` etc."""
    keys = ("learned_reward_calls", "final_kl", "final_gold", "final_proxy", "best_gold", "best_kl", "reference_gold",
            "search_gold", "best_win_rate_vs_search", "best_win_rate_vs_heuristic", "seconds")
    return {f"{algorithm}_{k}": result[k] for k in keys if isinstance(result.get(k), (int, float)) and not isinstance(result.get(k), bool)}


def fresh_policy(reference: object) -> object:
    """A trainable copy of the (frozen) reference: the common starting point when both algorithms run."""
    import copy

    policy = copy.deepcopy(reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    return policy


def policy_version_description(cfg: Config, result: dict, heldout: dict, reward_version: object, n_train: int, n_test: int) -> str:
    """What this policy version was trained on and how it did (the registry's version description)."""
    return (f"{cfg.rlhf.algorithm.upper()} from a behaviour-cloned reference on {n_train} training songs, against "
            f"`beatedit-reward` v{reward_version}. Training: {figures_text(result, ('best_gold', 'best_update', 'best_kl', 'updates'))}. "
            f"Held out ({n_test} promotion songs, listener win rates): "
            f"{figures_text(heldout, ('win_rate_vs_search', 'win_rate_vs_fade', 'win_rate_vs_heuristic', 'win_rate_vs_random'))}. "
            "The evaluate stage decides promotion.")


def input_example_song(split: dict[str, list[SongAnalysis]]) -> str | None:
    """The song whose features file is the logged policy's input example: a held-out (promotion) song, else any
    analysed one (without an example MLflow warns at every log and the model page shows no example)."""
    for name in ("promotion", "validation", "train"):
        if split.get(name):
            return split[name][0].song_id
    return None


@task(name="save-and-register-policy")
def save_policy_task(cfg: Config, policy: object, result: dict, params_path: str, heldout: dict | None = None,
                     split: dict[str, list[SongAnalysis]] | None = None) -> dict:
    """Save, log (pyfunc; a test song's features as the input example) and register the policy as challenger."""
    import mlflow
    import tempfile

    from models.policy import save_policy
    from tasks.mlflow_models import log_policy_model

    paths = StagePaths.from_config(cfg)
    split = split or {}
    n_train, test = len(split.get("train", [])), split.get("promotion", [])
    example_song = input_example_song(split)
    example_features = str(paths.feature_file(example_song)) if example_song else None
    out = paths.policy_checkpoint
    save_policy(out, policy, extra={"algorithm": cfg.rlhf.algorithm, "result": {k: v for k, v in result.items() if isinstance(v, (int, float, str))}})
    with tempfile.TemporaryDirectory() as tmp:
        effective = Path(tmp) / "params.yaml"
        atomic_write_text(effective, render_params_yaml(cfg) + "\n")
        model_uri = log_policy_model(out, effective, example_features=example_features)
    reward_info = json.loads(paths.reward_registry.read_text()) if paths.reward_registry.exists() else {}
    run_id = mlflow.active_run().info.run_id
    version = registry.register(model_uri, registry.POLICY_MODEL, aliases=(registry.CHALLENGER,),
                                tags={"algorithm": cfg.rlhf.algorithm, "reward_version": str(reward_info.get("version", ""))},
                                description=policy_version_description(cfg, result, heldout or {}, reward_info.get("version"), n_train, len(test))
                                + f" MLflow run {run_id}.")
    info = {"version": version, "run_id": run_id, "reward_version": reward_info.get("version")}
    atomic_write_text(paths.policy_registry, json.dumps(info, indent=1) + "\n")
    get_run_logger().info("registered %s version %s (alias challenger)", registry.POLICY_MODEL, version)
    return info


def rlhf_metrics(algorithm: str, result: dict, bc_metrics: dict, policy_version: str, other: dict | None = None) -> dict:
    """metrics/rlhf.json: the primary algorithm's numeric training figures unprefixed, the BC reference's as
    ``bc_*``, the compared algorithm's (``other``: ``dpo_*`` / ``ppo_*``) beside them; never the same figure twice."""
    if other and any(k.startswith(f"{algorithm}_") for k in other):
        raise ValueError(f"the compared figures carry the primary algorithm's prefix {algorithm}_: {sorted(other)[:3]}")
    return {"algorithm": algorithm, **{k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            **{(k if k.startswith("bc_") else f"bc_{k}"): v for k, v in bc_metrics.items() if isinstance(v, (int, float))},
            "policy_version": policy_version, **(other or {})}


@task(name="rlhf-report")
def rlhf_report_task(cfg: Config, result: dict, bc_metrics: dict, heldout: dict, registered: dict,
                     other: dict | None = None) -> dict:
    """metrics/rlhf.json and the DVC plots; ``other``: the compared algorithm's figures (prefixed keys).

    The registered policy's held-out figures go to the MLflow run (``heldout.*``) but not into rlhf.json:
    the evaluate stage reports the same policy on the same test songs in eval.json, and a metrics file
    that repeats another only widens ``dvc metrics show``. The primary algorithm's training figures are
    unprefixed (``algorithm`` names it), the compared one's prefixed, never both for one algorithm."""
    paths = StagePaths.from_config(cfg)
    plots = paths.plots("rlhf")
    plots.mkdir(parents=True, exist_ok=True)
    train = pd.DataFrame(result.get("train_history", []))
    if len(train):
        train = train.rename(columns={"charts/episode_reward": "episode_reward", "charts/learned_reward": "learned_reward",
                                      "charts/dense_reward": "dense_reward", "losses/approx_kl": "approx_kl"})
    else:
        train = pd.DataFrame({"update": [0], "episode_reward": [float("nan")]})
    atomic_write_text(plots / "training.csv", train.to_csv(index=False))
    mon = pd.DataFrame(result.get("history", []))
    if len(mon):
        mon = mon.rename(columns={"kl": "kl_to_reference", "proxy": "proxy_learned", "gold": "gold_listener"})
        atomic_write_text(plots / "overoptimization.csv", mon.to_csv(index=False))
    else:
        atomic_write_text(plots / "overoptimization.csv", pd.DataFrame(columns=["update", "kl_to_reference", "proxy_learned", "gold_listener", "gold_search", "gold_fade", "gold_heuristic"]).to_csv(index=False))
    tracking.log_plots(cfg, [plots / "training.csv", plots / "overoptimization.csv"])  # the figures dvc.yaml defines, as PNG
    if len(mon):
        from beatedit.plots import proxy_gold_figure

        tracking.log_figure(proxy_gold_figure(mon.to_dict("records")), "plots/proxy_vs_gold.png")
    metrics = rlhf_metrics(cfg.rlhf.algorithm, result, bc_metrics, registered["version"], other)
    tracking.write_metrics(paths.metrics("rlhf"), metrics)
    tracking.describe_run("rlhf", metrics, extra=f"- **held-out check of the registered policy (test songs, listener)**: "
                          f"{figures_text(heldout, tuple(k for k in heldout if not k.endswith(('_ci_low', '_ci_high'))))}"
                          f"\n- registered `beatedit-policy` v{registered['version']} (alias challenger)")
    return metrics
