"""reward.human_weight: human pairs weigh more in the Bradley-Terry loss; without human pairs nothing changes."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from models.train_reward import _bt_loss, human_train_pairs


def test_weighted_bt_loss_is_the_weighted_mean_and_none_is_the_plain_one():
    ra, rb = torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.0, 0.5, 0.1])
    y, st = torch.tensor([1.0, 0.0, 1.0]), torch.zeros(3)
    plain, _ = _bt_loss(ra, rb, y, st, 0.0, 0.0)
    assert plain == pytest.approx(float(F.binary_cross_entropy_with_logits(ra - rb, y)))
    w = torch.tensor([1.0, 2.0, 1.0])  # the middle pair is human, reward.human_weight = 2
    weighted, _ = _bt_loss(ra, rb, y, st, 0.0, 0.0, w)
    each = F.binary_cross_entropy_with_logits(ra - rb, y, reduction="none")
    assert weighted == pytest.approx(float((each * w).sum() / w.sum()))
    assert weighted != pytest.approx(float(plain))
    ones, _ = _bt_loss(ra, rb, y, st, 0.0, 0.0, torch.ones(3))
    assert ones == pytest.approx(float(plain))


def test_human_train_pairs_counts_only_training_human_rows():
    df = pd.DataFrame({"split": ["train", "train", "test", "train"], "source": ["human", "simulated", "human", "human"],
                       "ood": [False, False, False, True]})
    assert human_train_pairs(df) == 1  # OOD and held-out rows are not trained on
