"""Report stage (`make report`, never `make pipeline`): the policy of several seeds on the frozen test set.

For each seed in ``report.seeds`` the rlhf stage's training runs again with ``rlhf.seed`` set to it (same reward
model, preference data, songs and split; the BC reference and PPO checkpoints go under ``report.out_dir`` and
``rlhf.runs_dir``, so a killed report resumes); the seed equal to ``rlhf.seed`` is the rlhf stage's own policy.
Then every policy, its best-of-N and the search / fade / heuristic editors are scored on the frozen test set by
the listener and the independent judge, real music by the judge; seeds x songs bootstrap CIs (metrics/report.json).
"""

from __future__ import annotations

from prefect import flow

from flows.common import apply_torch_threads, load_stage_config, stage_main
from flows.errors import StageFailed
from flows.rlhf import _device
from tasks import tracking
from tasks.report import (FrozenTestSetMissing, frozen_rows_task, frozen_songs, frozen_songs_task, real_music_task, save_seed_policy_task, seed_config,
                          stage_policy_task, write_report_task)
from tasks.rlhf import bc_task, dpo_task, ppo_task, songs_by_split


@flow(name="report")
def report(params: str = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Train report.seeds policies (rlhf stage code), score them on the frozen test set; write metrics/report.json."""
    cfg = load_stage_config(params, overrides)
    try:
        frozen_songs(cfg)  # before any training: the frozen test set must be there
    except FrozenTestSetMissing as exc:
        raise StageFailed(str(exc)) from None
    apply_torch_threads(cfg)
    device = _device(cfg)
    trainers = {"ppo": ppo_task, "dpo": dpo_task}
    with tracking.stage_run("report", cfg, list(overrides), tags={"algorithm": cfg.rlhf.algorithm}):
        songs = frozen_songs_task(cfg)
        split = songs_by_split(cfg)
        policies: dict[int, object] = {}
        for seed in cfg.report.seeds:
            if seed == cfg.rlhf.seed:
                policies[seed] = stage_policy_task(cfg)
                continue
            cfg_s = seed_config(params, overrides, seed)
            policy, reference, _ = bc_task(cfg_s, split["train"], device)
            trainers[cfg_s.rlhf.algorithm](cfg_s, policy, reference, split["train"], split["validation"], device)
            policies[seed] = save_seed_policy_task(cfg, policy, seed)
        df = frozen_rows_task(cfg, songs, policies)
        real, why = real_music_task(cfg, policies)
        return write_report_task(cfg, df, real, {"real music": why} if real is None else {})


if __name__ == "__main__":
    stage_main(report)
