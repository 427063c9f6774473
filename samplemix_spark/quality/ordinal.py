"""The paper's quality evaluator head (SPEC §1): ordinal regression over scores 0..10.

Head k (k = 0..9) outputs o_k = sigmoid(logit_k), an estimate of P(score > k).
Training target of head k is [score > k]; the loss is the sum over heads of the
binary cross-entropy. Class probabilities follow from adjacent heads:
P(0) = 1 - o_0, P(k) = o_(k-1) - o_k for k = 1..9, P(10) = o_9; the score is the
argmax and the expected score is sum_k k * P(k).

Nothing forces o_k to decrease with k, so a non-monotone head can produce a
negative "probability": it is clipped to 0 and the distribution renormalised.

The plain 11-class classification head, trained the same way, is here too so
that the two can be compared (the paper's Table 2).
"""

from __future__ import annotations

import torch
from torch import nn

N_LEVELS = 11            # scores 0..10
N_THRESHOLDS = N_LEVELS - 1
HEADS = ("ordinal", "classification")


def ordinal_targets(scores: torch.Tensor) -> torch.Tensor:
    """(N,) integer scores -> (N, 10) float targets [score > k]."""
    thresholds = torch.arange(N_THRESHOLDS, device=scores.device)
    return (scores.unsqueeze(-1) > thresholds).float()


def ordinal_loss(logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Sum over the 10 heads of binary cross-entropy, averaged over the batch."""
    per_head = nn.functional.binary_cross_entropy_with_logits(logits, ordinal_targets(scores), reduction="none")
    return per_head.sum(dim=-1).mean()


def ordinal_class_probabilities(exceed: torch.Tensor) -> torch.Tensor:
    """(N, 10) head outputs o_k = P(score > k) -> (N, 11) class probabilities, clipped and renormalised."""
    ones = torch.ones_like(exceed[:, :1])
    zeros = torch.zeros_like(exceed[:, :1])
    upper = torch.cat([ones, exceed], dim=-1)    # P(score > k-1), with P(score > -1) = 1
    lower = torch.cat([exceed, zeros], dim=-1)   # P(score > k),   with P(score > 10) = 0
    probabilities = (upper - lower).clamp(min=0.0)
    return probabilities / probabilities.sum(dim=-1, keepdim=True)


def class_probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """(N, 11) class probabilities from the raw outputs of either head."""
    if head == "ordinal":
        return ordinal_class_probabilities(torch.sigmoid(logits))
    return torch.softmax(logits, dim=-1)


def head_loss(logits: torch.Tensor, scores: torch.Tensor, head: str) -> torch.Tensor:
    if head == "ordinal":
        return ordinal_loss(logits, scores)
    return nn.functional.cross_entropy(logits, scores)


def predict(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax score, expected score) from (N, 11) class probabilities."""
    levels = torch.arange(N_LEVELS, dtype=probabilities.dtype, device=probabilities.device)
    return probabilities.argmax(dim=-1), (probabilities * levels).sum(dim=-1)


def make_head(hidden_size: int, head: str) -> nn.Linear:
    """10 ordinal logits or 11 class logits on top of a pooled representation."""
    return nn.Linear(hidden_size, N_THRESHOLDS if head == "ordinal" else N_LEVELS)
