"""The policy warns outside the target range it was trained on (env.target_min .. env.target_max)."""

from beatedit.config import Config

from app.edit import trained_range_warning


def test_warns_only_outside_the_trained_range():
    cfg = Config()
    lo, hi = cfg.env.target_min, cfg.env.target_max
    assert trained_range_warning(cfg, lo) is None and trained_range_warning(cfg, hi) is None
    assert trained_range_warning(cfg, (lo + hi) / 2) is None
    below = trained_range_warning(cfg, lo / 4)
    assert below is not None and "--editor search" in below and f"{lo:.0%}" in below
    assert trained_range_warning(cfg, min(0.99, hi + 0.1)) is not None
