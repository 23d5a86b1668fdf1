"""The metrics files hold no figure twice: `dvc metrics show` is a table people can read."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.evaluate import split_editor_figures
from tasks.rlhf import rlhf_metrics, training_figures


def test_rlhf_metrics_keep_the_primary_unprefixed_and_the_compared_prefixed():
    result = {"final_kl": 2.0, "best_gold": 0.9, "learned_reward_calls": 10, "history": [1], "best_path": "x.pt"}
    other = training_figures("dpo", {"final_kl": 3.0, "best_gold": 0.8}) | {"dpo_win_rate_vs_search": 0.2}
    m = rlhf_metrics("ppo", result, {"bc_loss": 0.4, "val_accuracy": 0.7}, "3", other)
    assert m == {"algorithm": "ppo", "final_kl": 2.0, "best_gold": 0.9, "learned_reward_calls": 10, "bc_loss": 0.4,
                 "bc_val_accuracy": 0.7, "policy_version": "3", "dpo_final_kl": 3.0, "dpo_best_gold": 0.8, "dpo_win_rate_vs_search": 0.2}
    assert not any(k.startswith("ppo_") for k in m)  # the primary's figures once, unprefixed
    with pytest.raises(ValueError, match="ppo_"):
        rlhf_metrics("ppo", result, {}, "3", {"ppo_final_kl": 2.0})


def test_eval_metrics_leave_the_editor_table_and_action_shares_to_the_plot_files():
    summary = {"win_rate_vs_search": 0.3, "listener_total": 0.8, "within_one_beat": 1.0, "action_share_KEEP": 0.6,
               "listener_total_candidate": 0.8, "listener_total_search": 0.9, "within_one_beat_candidate": 1.0,
               "within_one_beat_search": 1.0, "duration_error_seconds_p95_candidate": 0.4, "duration_error_seconds_p95_search": 0.1}
    metrics, table = split_editor_figures(summary, ["candidate", "search"])
    assert metrics == {"win_rate_vs_search": 0.3, "listener_total": 0.8, "within_one_beat": 1.0, "duration_error_seconds_p95_candidate": 0.4}
    assert table.to_dict("records") == [
        {"editor": "candidate", "listener_total": 0.8, "duration_error_seconds_p95": 0.4, "within_one_beat": 1.0},
        {"editor": "search", "listener_total": 0.9, "duration_error_seconds_p95": 0.1, "within_one_beat": 1.0}]
    assert isinstance(table, pd.DataFrame)
