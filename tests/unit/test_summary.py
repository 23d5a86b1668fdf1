"""The headline table that ends `make pipeline`: present figures formatted with their CIs, absent ones left out."""

from beatedit.summary import headline_rows, headline_table


def test_headline_rows_format_and_skip():
    metrics = {"eval": {"win_rate_vs_search": 0.25, "win_rate_vs_search_ci_low": 0.1, "win_rate_vs_search_ci_high": 0.4,
                        "promoted": False, "promotion_reason": "win rate vs champion 0.4 is below 0.55"},
               "reward": {"ece": 0.05}}
    rows = dict(headline_rows(metrics))
    assert rows["policy vs search editor (listener)"] == "0.250  (95% CI 0.100-0.400)"
    assert rows["promoted to champion"] == "no" and rows["reward model: calibration error"] == "0.050"
    assert "policy vs radio fade (listener)" not in rows  # never invented
    table = headline_table(metrics)
    assert table.splitlines()[-1].strip().startswith("promotion decision")
    assert headline_table({}) == ""
