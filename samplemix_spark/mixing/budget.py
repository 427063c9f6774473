"""Budget sizing and the repetition cap: the scale s in c(x) = min(s * w(x), cap).

w(x) = exp((p(x) - p_max)/tau) is the shifted softmax numerator. The budget is
met in *units*: documents (the paper's eq. 3, unit 1 per document) or tokens
(unit n_tokens(x), so that sum c(x) n_tokens(x) = T_tgt exactly).

Without a cap, s = target / sum_x w(x) unit(x). With ``max_repeats`` the excess of
documents above the cap is redistributed to the others in proportion to w
(water-filling): with C the capped set,
    s = (target - cap * sum_{x in C} unit(x)) / sum_{x not in C} w(x) unit(x),
and C is recomputed with the new s until no new document is capped. C only
grows, so this ends after at most as many rounds as there are distinct weights;
each round is one aggregate pass, bounded by ``MAX_CAP_ROUNDS``.

Driver side: each round is one global aggregate whose result comes back as
Python floats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.errors import ConfigError, InputError

log = logging.getLogger(__name__)

MAX_CAP_ROUNDS = 100


@dataclass(frozen=True)
class Scale:
    scale: float            # the s used for c(x)
    uncapped_scale: float   # the s without the cap (equal to scale when no cap applies)
    cap_rounds: int         # water-filling rounds (0 without a cap)
    n_capped: int           # documents whose c(x) equals the cap


def unit(budget_mode: str) -> Column:
    """What one copy of a document counts towards the budget."""
    return F.lit(1.0) if budget_mode == "documents" else F.col("n_tokens").cast("double")


def check_cap_reachable(max_repeats: float, source_tokens: float, target_tokens: float) -> None:
    """Refuse a cap under which even max_repeats copies of everything cannot meet the budget."""
    if max_repeats * source_tokens < target_tokens:
        raise ConfigError(f"config key 'mixing.max_repeats': {max_repeats:g} copies of every document give at most "
                          f"{max_repeats * source_tokens:,.0f} tokens, below the target of {target_tokens:,.0f} "
                          "(QuaDMix caps at 4 copies unless mixing.max_repeats is set)")


def _round(scored: DataFrame, weight: Column, units: Column, scale: float, cap: float) -> tuple[int, float, float]:
    """(capped documents, their units, sum of w * unit over the rest) under ``scale``."""
    capped = weight * F.lit(scale) > F.lit(cap)
    row = scored.agg(
        F.sum(F.when(capped, 1).otherwise(0)).alias("n"),
        F.sum(F.when(capped, units).otherwise(0.0)).alias("capped_units"),
        F.sum(F.when(capped, 0.0).otherwise(weight * units)).alias("free"),
    ).collect()[0]
    return int(row["n"] or 0), float(row["capped_units"] or 0.0), float(row["free"] or 0.0)


def solve_scale(scored: DataFrame, weight: Column, units: Column, target: float, weighted_unit_sum: float,
                cap: Optional[float]) -> Scale:
    """The scale s that meets ``target`` units, with water-filling under ``cap``."""
    uncapped = target / weighted_unit_sum
    if cap is None:
        return Scale(uncapped, uncapped, 0, 0)
    scale, n_prev = uncapped, 0
    for rounds in range(1, MAX_CAP_ROUNDS + 1):
        n_capped, capped_units, free = _round(scored, weight, units, scale, cap)
        if n_capped == n_prev:
            log.info("mix: cap %s reached by %d documents after %d rounds", cap, n_capped, rounds)
            return Scale(scale, uncapped, rounds, n_capped)
        if free <= 0:  # every document is capped: the cap exactly meets the budget (checked beforehand)
            return Scale(scale, uncapped, rounds, n_capped)
        scale, n_prev = (target - cap * capped_units) / free, n_capped
    raise InputError(f"mixing.max_repeats: water-filling did not settle in {MAX_CAP_ROUNDS} rounds")
