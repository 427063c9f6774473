"""SampleMix formulas (SPEC §3, paper §2.4) as Spark column expressions.

Each function maps one equation onto native Spark expressions, so the mix stage
runs with no Python UDF. Global quantities (min/max, the softmax normaliser)
are computed once by aggregates and enter here as Python floats (literals).

Notation: q, d raw scores; q_n, d_n min-max normalised; p the sampling weight;
c the expected count; count the integer number of copies.
"""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F


def min_max_normalised(column: Column, lo: float, hi: float) -> Column:
    """Scale ``column`` to [0, 1] over the corpus.

    A constant score (hi == lo) carries no information; it normalises to 0 so
    that p, and hence the softmax, ignores it instead of dividing by zero.
    """
    if not hi > lo:
        return F.lit(0.0)
    return (column - F.lit(lo)) / F.lit(hi - lo)


def sampling_weight(q_norm: Column, d_norm: Column, alpha: float) -> Column:
    """Eq. 2: p(x) = alpha * d(x) + (1 - alpha) * q(x), on normalised scores."""
    return F.lit(alpha) * d_norm + F.lit(1.0 - alpha) * q_norm


def target_documents(n_source_docs: int, source_tokens: float, target_tokens: float) -> float:
    """Eq. 3: |D_tgt| = T_tgt / T_src * |D_src|."""
    return target_tokens / source_tokens * n_source_docs


def shifted_exponent(p: Column, p_max: float, tau: float) -> Column:
    """exp((p - p_max) / tau): the softmax numerator shifted by the corpus maximum.

    The shift is the log-sum-exp trick: every term is in (0, 1] and the largest
    is exactly 1, so the sum never overflows (tau = 0.01 included) and is >= 1.
    """
    return F.exp((p - F.lit(p_max)) / F.lit(tau))


def expected_count(p: Column, p_max: float, tau: float, scale: float, cap: float | None = None) -> Column:
    """Eq. 4: c(x) = |D_tgt| * exp(p(x)/tau) / sum_j exp(p(x_j)/tau), as ``scale * exp((p - p_max)/tau)``.

    With the paper's document budget, scale = |D_tgt| / sum_j exp((p_j - p_max)/tau): the
    common factor exp(p_max/tau) cancels between numerator and denominator. The
    token budget and the repetition cap only change ``scale`` (see ``budget``);
    with a cap, c(x) = min(scale * w(x), cap).
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"count scale must be finite and >= 0, got {scale}")
    c = F.lit(scale) * shifted_exponent(p, p_max, tau)
    return c if cap is None else F.least(c, F.lit(float(cap)))


def integer_count(c: Column, uniform: Column) -> Column:
    """floor(c) copies, plus one more with probability c - floor(c) (unbiased: E[count] = c)."""
    whole = F.floor(c)
    return (whole + F.when(uniform < c - whole, 1).otherwise(0)).cast("int")


def shuffle_key(doc_id: Column, replica: Column, seed: int) -> Column:
    """Deterministic sort key that scatters the copies of one document through the output."""
    return F.xxhash64(doc_id, replica, F.lit(seed))
