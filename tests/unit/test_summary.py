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


def test_every_stage_has_a_headline_and_the_figures_text():
    from beatedit.summary import HEADLINES, figures_text

    assert {stem for stem, _, _ in HEADLINES} == {"corpus", "stems", "features", "preferences", "reward", "rlhf", "eval"}
    rows = dict(headline_rows({"corpus": {"songs": 40}, "rlhf": {"best_gold": 0.9}, "eval": {"within_one_beat": 1.0}}))
    assert rows == {"songs in the corpus": "40", "policy: best validation gold (listener) during training": "0.900",
                    "policy edits within one beat of the target": "1.000"}
    assert figures_text({"a": 0.25, "b": True, "c": None, "d": 3, "e": "ppo"}) == "a 0.250, d 3, e ppo"
    assert figures_text({"a": 0.25, "d": 3}, ("d", "missing")) == "d 3"
