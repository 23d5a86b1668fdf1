"""A short, real RLHF run end to end on a small generated corpus (not a test; minutes on a CPU).

    python -m bench.rlhf_short_run --work /tmp/rlhf_run --songs 16 --minutes 4 [--algorithm ppo|dpo|both]

Stages, each cached in ``--work`` (re-running reuses what exists):
corpus (``beatedit.corpus.generator``) -> features (``beatedit.audio.analysis.analyse_song``) -> preference pairs
(``beatedit.preferences.pairs.song_pairs``, listener with audio) -> reward model
(``models.train_reward``) -> BC reference (``models.bc``) -> PPO (``models.ppo``) and/or DPO
(``models.dpo``) -> evaluation on held-out test songs with the simulated listener (gold, with
the source audio): win rates of the trained policy vs the heuristic and random editors, and vs
the BC reference, with bootstrap CIs (``beatedit.judging.statistics.win_rate``).

Songs are split by index: the last ``--test`` songs are test, the ``--val`` before them validation.
Prints a JSON summary and writes it to ``<work>/summary.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from beatedit.audio.io import load_mono
from beatedit.config import Config, CorpusConfig
from beatedit.editing.editors import edit_with
from beatedit.judging.statistics import win_rate
from beatedit.judging.listener import score_edit
from beatedit.audio.song import SongAnalysis


def prepare(work: Path, n_songs: int, n_val: int, n_test: int, cfg: Config) -> tuple[list[SongAnalysis], dict, pd.DataFrame]:
    from beatedit.corpus.generator import generate_corpus
    from beatedit.audio.analysis import analyse_song
    from beatedit.preferences.pairs import merge_pairs, song_pairs
    from beatedit.audio.stems import StemCache

    corpus_dir = work / "corpus"
    if not (corpus_dir / "manifest.json").exists():
        generate_corpus(CorpusConfig(n_songs=n_songs, min_seconds=45.0, max_seconds=90.0, seed=4321), corpus_dir)
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    records = manifest["songs"] if isinstance(manifest, dict) else manifest
    songs, audio = [], {}
    cache = StemCache(work / "stems")
    for rec in sorted(records, key=lambda r: r["song_id"]):
        path = Path(rec["path"])
        fpath = work / "features" / f"{rec['song_id']}.npz"
        if fpath.exists():
            s = SongAnalysis.load(fpath)
        else:
            s = analyse_song(path, cfg, cache)
            s.save(fpath)
        songs.append(s)
        audio[s.song_id] = load_mono(path, cfg.audio.analysis_sr)
    n = len(songs)
    split = {s.song_id: ("test" if i >= n - n_test else "validation" if i >= n - n_test - n_val else "train")
             for i, s in enumerate(songs)}
    pairs_path = work / "pairs.parquet"
    if pairs_path.exists():
        df = pd.read_parquet(pairs_path)
    else:
        rows = [song_pairs(s, audio[s.song_id], cfg.audio.analysis_sr, cfg, split=split[s.song_id]) for s in songs]
        df = merge_pairs(rows)
        df.to_parquet(pairs_path)
    return songs, audio, df, split


def reward_model(work: Path, df: pd.DataFrame, songs: list[SongAnalysis], cfg: Config):
    from models.reward_model import load_reward_model, save_reward_model
    from models.train_reward import train_reward_model, validate_reward_model

    path = work / "reward.pt"
    if not path.exists():
        model, _ = train_reward_model(df, {s.song_id: s for s in songs}, cfg, progress=True)
        save_reward_model(path, model, model.normalizer)
    model, norm, _ = load_reward_model(path)
    metrics = validate_reward_model(model, df, {s.song_id: s for s in songs}, cfg)
    return model, norm, {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def evaluate(policies: dict, songs: list[SongAnalysis], audio: dict, targets: list[float], cfg: Config, seed: int = 0) -> dict:
    from models.policy_edit import edit_songs

    sr = cfg.audio.analysis_sr
    rng = np.random.default_rng(seed)
    gold: dict[str, list[float]] = {name: [] for name in [*policies, "heuristic", "random"]}
    for s in songs:
        for t in targets:
            for name, pol in policies.items():
                e = edit_songs(pol, [s], [t], cfg.env, crossfade_ms=cfg.render.crossfade_ms)[0].edit
                gold[name].append(score_edit(s, e, t, audio[s.song_id], sr, cfg.listener)["total"])
            for name in ("heuristic", "random"):
                e = edit_with(name, s, t, rng=rng, cfg=cfg.env, crossfade_ms=cfg.render.crossfade_ms)
                gold[name].append(score_edit(s, e, t, audio[s.song_id], sr, cfg.listener)["total"])
    out = {f"gold_{k}": float(np.mean(v)) for k, v in gold.items()}
    for name in policies:
        for other in ("heuristic", "random", *(p for p in policies if p != name)):
            wr = win_rate(gold[name], gold[other], seed=seed)
            out[f"{name}_win_rate_vs_{other}"] = wr.rate
            out[f"{name}_win_rate_vs_{other}_ci_low"] = wr.ci_low
    out["n_test_edits"] = len(gold["heuristic"])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/beatedit_rlhf_run"))
    ap.add_argument("--songs", type=int, default=16)
    ap.add_argument("--val", type=int, default=3)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=4.0, help="PPO budget: total_steps is derived from a short timing run")
    ap.add_argument("--total-steps", type=int, default=None, help="fix rlhf.total_steps instead of --minutes")
    ap.add_argument("--algorithm", choices=("ppo", "dpo", "both"), default="ppo")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (as params.yaml)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import yaml

    from beatedit.config import _build, apply_overrides, default_params_yaml

    cfg = _build(Config, apply_overrides(yaml.safe_load(default_params_yaml()), args.set, "--set"), "", "--set")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    songs, audio, df, split = prepare(work, args.songs, args.val, args.test, cfg)
    train = [s for s in songs if split[s.song_id] == "train"]
    val = [s for s in songs if split[s.song_id] == "validation"]
    test = [s for s in songs if split[s.song_id] == "test"]
    t_data = time.time() - t0
    rm, norm, rm_metrics = reward_model(work, df, songs, cfg)
    t_rm = time.time() - t0 - t_data

    from models.bc import make_reference, train_bc
    from models.policy import load_policy, policy_for_env, save_policy

    ref_path = work / "reference.pt"
    if ref_path.exists():
        reference, _ = load_policy(ref_path)
        bc_metrics = {}
    else:
        torch.manual_seed(cfg.rlhf.seed)
        reference = policy_for_env(cfg.env, cfg.rlhf.policy)
        bc_metrics = {k: v for k, v in train_bc(reference, train, cfg).items() if k != "history"}
        save_policy(ref_path, reference)
    reference = make_reference(reference)
    summary = {"songs": {"train": len(train), "validation": len(val), "test": len(test)}, "pairs": int(len(df)),
               "reward_model": rm_metrics, "bc": bc_metrics, "seconds_data": t_data, "seconds_reward": t_rm}
    policies = {"bc_reference": reference}

    if args.algorithm in ("ppo", "both"):
        from models.ppo import train_ppo

        rl = cfg.rlhf
        if args.total_steps is None:  # time a 1-update probe, then size the run to the budget
            probe = dataclasses.replace(rl, total_steps=rl.n_envs * rl.rollout_steps, n_eval_songs=0)
            t = time.time()
            train_ppo(copy.deepcopy(reference), reference, rm, norm, train, val, dataclasses.replace(cfg, rlhf=probe),
                      progress=False)
            per_update = time.time() - t
            n_updates = max(2, int(args.minutes * 60 / (per_update * 1.15)))
            total = n_updates * rl.n_envs * rl.rollout_steps
        else:
            total = args.total_steps
        cfg_ppo = dataclasses.replace(cfg, rlhf=dataclasses.replace(rl, total_steps=total))
        ppo_pol = copy.deepcopy(reference)
        for p in ppo_pol.parameters():
            p.requires_grad_(True)
        t = time.time()
        res = train_ppo(ppo_pol, reference, rm, norm, train, val, cfg_ppo, checkpoint_dir=work / "ppo_ckpt", progress=True)
        summary["ppo"] = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) or v is None}
        summary["ppo"]["train_seconds"] = time.time() - t
        summary["ppo"]["monitor"] = res["history"]
        policies["ppo"] = ppo_pol

    if args.algorithm in ("dpo", "both"):
        from models.dpo import train_dpo

        dpo_pol = copy.deepcopy(reference)
        for p in dpo_pol.parameters():
            p.requires_grad_(True)
        t = time.time()
        res = train_dpo(dpo_pol, reference, df, songs, cfg, songs_val=val, reward_model=rm, normalizer=norm,
                        checkpoint_dir=work / "dpo_ckpt")
        summary["dpo"] = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) or v is None}
        summary["dpo"]["train_seconds"] = time.time() - t
        summary["dpo"]["monitor"] = res["history"]
        policies["dpo"] = dpo_pol

    summary["test"] = evaluate(policies, test, audio, [0.55, 0.65, 0.75], cfg)
    summary["seconds_total"] = time.time() - t0
    (work / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("ppo", "dpo")} |
                     {a: {k: v for k, v in summary[a].items() if k != "monitor"} for a in ("ppo", "dpo") if a in summary},
                     indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
