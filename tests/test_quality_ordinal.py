"""Ordinal-regression math on hand-made head outputs (SPEC §1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samplemix_spark.quality import ordinal
from samplemix_spark.quality.metrics import constant_baseline, quality_metrics


def test_targets_are_score_greater_than_k():
    targets = ordinal.ordinal_targets(torch.tensor([0, 3, 10]))
    assert targets.shape == (3, 10)
    assert targets[0].tolist() == [0.0] * 10
    assert targets[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert targets[2].tolist() == [1.0] * 10


def test_loss_is_sum_of_per_head_binary_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0, -3.0, 1.0, 0.2, -0.2, 4.0, -4.0]])
    score = torch.tensor([4])
    o = 1 / (1 + np.exp(-logits.numpy()[0]))
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    expected = -np.sum(y * np.log(o) + (1 - y) * np.log(1 - o))
    assert ordinal.ordinal_loss(logits, score).item() == pytest.approx(expected, rel=1e-6)


def test_class_probabilities_from_monotone_heads():
    exceed = torch.tensor([[0.9, 0.8, 0.6, 0.3, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0]])
    p = ordinal.ordinal_class_probabilities(exceed)[0].numpy()
    expected = np.array([0.1, 0.1, 0.2, 0.3, 0.2, 0.05, 0.05, 0, 0, 0, 0])
    np.testing.assert_allclose(p, expected, atol=1e-7)
    score, mean = ordinal.predict(torch.tensor(expected).unsqueeze(0))
    assert score.item() == 3
    assert mean.item() == pytest.approx(float(np.sum(np.arange(11) * expected)))


def test_non_monotone_heads_are_clipped_and_renormalised():
    exceed = torch.tensor([[0.5, 0.7, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]])
    p = ordinal.ordinal_class_probabilities(exceed)[0].numpy()
    raw = np.array([0.5, -0.2, 0.5, 0, 0, 0, 0, 0, 0, 0, 0.2])
    clipped = np.clip(raw, 0, None)
    np.testing.assert_allclose(p, clipped / clipped.sum(), atol=1e-7)
    assert (p >= 0).all() and p.sum() == pytest.approx(1.0)


def test_classification_head_uses_softmax():
    logits = torch.zeros(1, 11)
    logits[0, 7] = 5.0
    p = ordinal.class_probabilities(logits, "classification")
    assert ordinal.predict(p)[0].item() == 7
    assert p.sum().item() == pytest.approx(1.0)


def test_metrics_and_constant_baseline():
    m = quality_metrics(np.array([3, 5, 7, 0]), np.array([3, 6, 4, 0]))
    assert m == {"acc": 50.0, "mae": 1.0, "mse": 2.5, "cacc": 75.0}
    base = constant_baseline(np.array([1, 2, 9]), np.array([2, 2]))
    assert base["mae"] == 0.0
