"""Independent numpy implementation of SampleMix's weighting (SPEC §3, eq. 2-4).

Written from the paper's equations, not from the library, so that the Spark
results can be checked against it.
"""

from __future__ import annotations

import numpy as np


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x, dtype=float)


def sampling_weights(q: np.ndarray, d: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * minmax(np.asarray(d, float)) + (1 - alpha) * minmax(np.asarray(q, float))


def expected_counts(p: np.ndarray, n_tokens: np.ndarray, tau: float, target_tokens: float) -> np.ndarray:
    """c(x) = |D_tgt| softmax(p / tau), |D_tgt| = T_tgt / T_src * |D_src|."""
    n_target = target_tokens / float(np.sum(n_tokens)) * len(p)
    logits = np.asarray(p, float) / tau
    logits -= logits.max()
    weights = np.exp(logits)
    return n_target * weights / weights.sum()


def bernoulli_sigma(c: np.ndarray) -> float:
    """Standard deviation of sum(count) when count = floor(c) + Bernoulli(frac(c))."""
    frac = c - np.floor(c)
    return float(np.sqrt(np.sum(frac * (1 - frac))))
