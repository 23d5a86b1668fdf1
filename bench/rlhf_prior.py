"""Issue 17 (items 2-4): the search-editor BC reference, PPO on it, online iterative DPO -- on VALIDATION songs only.

Every figure of docs/rlhf.md's "A reference cloned from the search editor" section comes from this script
(never the test split: only ``train`` and ``validation`` songs are loaded). Run from the repo root with the
preferences' splits, the features and ``artifacts/reward/model.pt`` in place (copies of a pipeline run):

    python bench/rlhf_prior.py bc  --out /tmp/ref.pt [--set rlhf.bc.editors=[search,heuristic] ...]
    python bench/rlhf_prior.py ppo --ref /tmp/ref.pt [--set rlhf.kl_coef=0.05 --set rlhf.seed=1 ...]
    python bench/rlhf_prior.py dpo --ref /tmp/ref.pt [--set rlhf.dpo.rounds=4 ...]

``bc`` prints BC's validation accuracy and the validation gold (listener, features seams: the monitor's gold)
of its greedy edits next to the search / heuristic / random editors' on the same (song, target) jobs (the
monitor's jobs: ``evaluate.targets_per_song`` per validation song). ``ppo`` / ``dpo`` print the monitor's
history and the best-by-gold figures. One JSON line per run is appended to ``--log`` (default
``bench/rlhf_prior.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from beatedit.config import load_config  # noqa: E402
from beatedit.paths import StagePaths  # noqa: E402


def load_splits(cfg) -> dict:
    from beatedit.audio.song import SongAnalysis

    paths = StagePaths.from_config(cfg)
    splits = pd.read_csv(paths.splits_table)
    out = {}
    for name in ("train", "validation"):  # never the test split
        ids = sorted(splits.loc[splits["split"] == name, "song_id"])
        out[name] = [SongAnalysis.load(paths.features_dir / f"{i}.npz") for i in ids]
    return out


def monitor_row(policy, reference, cfg, val, reward_model, normalizer) -> dict:
    from models.ppo_monitor import baseline_golds, evaluate_policy, monitor_targets

    targets = monitor_targets(val, cfg)
    base = baseline_golds(val, targets, cfg, seed=cfg.rlhf.seed)
    ev = evaluate_policy(policy, reference, reward_model, normalizer, val, targets, cfg, "cpu", base,
                         cfg.rlhf.reward_batch_size)
    ev.pop("gold_per_job", None)
    return ev | {f"gold_{k}": float(np.mean(v)) for k, v in base.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["bc", "ppo", "dpo"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", help="bc: where to save the reference")
    ap.add_argument("--ref", help="ppo/dpo: the reference saved by `bc`")
    ap.add_argument("--log", default="bench/rlhf_prior.jsonl")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.params, args.overrides)
    split = load_splits(cfg)
    from models.policy import load_policy, policy_for_env, save_policy
    from models.reward_model import load_reward_model

    reward_model, normalizer, _ = load_reward_model(StagePaths.from_config(cfg).reward_checkpoint)
    t0 = time.time()
    rec: dict = {"what": args.what, "overrides": args.overrides}
    if args.what == "bc":
        from models.bc import make_reference, train_bc

        torch.manual_seed(cfg.rlhf.seed)
        policy = policy_for_env(cfg.env, cfg.rlhf.policy)
        m = train_bc(policy, split["train"], cfg, device="cpu", progress=False)
        ref = make_reference(policy)
        if args.out:
            save_policy(args.out, ref, extra={"bc": {k: v for k, v in m.items() if k != "history"}})
        row = monitor_row(policy, None, cfg, split["validation"], reward_model, normalizer)
        rec |= {k: v for k, v in m.items() if k != "history"} | {"val": row}
        print(json.dumps({k: v for k, v in m.items() if k != "history"}, indent=1))
        print("validation (monitor jobs):", json.dumps(row, indent=1))
    else:
        from models.bc import make_reference

        ref_policy, _ = load_policy(args.ref)
        reference = make_reference(ref_policy)
        from tasks.rlhf import fresh_policy

        policy = fresh_policy(reference)
        if args.what == "ppo":
            from models.ppo import train_ppo

            res = train_ppo(policy, reference, reward_model, normalizer, split["train"], split["validation"], cfg,
                            device="cpu", progress=False)
            sel = ("best_gold", "best_update", "final_gold", "final_kl", "final_proxy", "seconds", "learned_reward_calls")
        else:
            from models.dpo import train_online_dpo

            res = train_online_dpo(policy, reference, reward_model, normalizer, split["train"], split["validation"], cfg,
                                   device="cpu", progress=False)
            sel = ("best_gold", "best_round", "final_gold", "final_kl", "final_proxy", "seconds", "learned_reward_calls", "pairs_train")
        hist = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in res["history"]]
        best_row = next((r for r in res["history"] if r["gold"] == res["best_gold"]), {})
        rec |= {k: res.get(k) for k in sel} | {"best_row": best_row, "history": hist}
        for r in hist:
            print({k: r[k] for k in r if k in ("update", "round", "gold", "kl", "proxy", "gold_search", "win_rate_vs_search",
                                                "win_rate_vs_heuristic", "round_pairs", "round_distinct_per_prompt")})
        print(json.dumps({k: res.get(k) for k in sel}, indent=1))
        print("best:", {k: best_row.get(k) for k in ("gold", "kl", "win_rate_vs_search", "win_rate_vs_heuristic", "gold_search")})
    rec["wall_s"] = time.time() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rec["cpu_s"] = ru.ru_utime + ru.ru_stime  # with 1 torch thread ~ the wall time on a quiet core
    print(f"wall {rec['wall_s']:.0f} s, cpu {rec['cpu_s']:.0f} s")
    with open(args.log, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")


if __name__ == "__main__":
    main()
