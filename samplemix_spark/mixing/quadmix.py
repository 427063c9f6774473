"""QuaDMix (Liu et al., arXiv 2504.16511, §3.1) on the same tables, budget and count draw as SampleMix.

Driver side: the corpus bounds of each criterion, the per-domain histograms of
merged scores and the budget's scale are small aggregates collected here; the
counts are native Spark expressions over the joined result (no Python UDF).

- Merging (eq. 1): q̄ = Σ_n σ(q_n)·w_{n,m}. The criteria are the quality table's q
  and any ``ingest.score_columns`` kept in ``documents`` (precomputed FineWeb-Edu,
  DCLM or perplexity scores), each larger-is-better. The paper's criteria are
  smaller-is-better; ours are larger-is-better, so σ is min-max over the corpus onto [0, 1]
  with 1 the best (a constant criterion normalises to 0, as in SampleMix), and a
  larger q̄ is better. A score where smaller is better (perplexity) needs its sign
  flipped before ingest.
- Rank (eq. 2): r̄ = the share of the domain's tokens whose merged score is
  better than this document's, plus half the share of its ties: a token-weighted
  mid-rank, 0 for the best. It is computed exactly from a per-domain histogram
  built with grouped aggregates: one bucket per distinct merged value while a
  domain has at most ``EXACT_VALUES`` of them, else ``BINS`` fixed-width bins
  between the domain's minimum and maximum (documents in one bin share its
  mid-rank). Integer token sums make the result the same on every engine and
  partitioning.
- Sampling (eq. 3): S(r̄) = η·2/(1 + exp(−λ(ω − r̄))) + ε for r̄ ≤ ω, else ε. The
  extracted text of the paper leaves open whether η multiplies the sigmoid or is
  its exponent; it calls η a scaling parameter, so here it multiplies.
- Budget: the paper uses S unscaled, as an expected count for its fixed
  selection. Here one factor scales every S so that Σ c·n_tokens (tokens mode)
  or Σ c (documents mode) meets the target, as SampleMix's budget does, with the
  same repetition cap (``budget.solve_scale``) and the same integer draw.

In the ``weights`` table ``p`` holds the merged score q̄, ``q_norm`` the mid-rank
r̄ and ``d_norm`` is null; ``c`` and ``count`` mean what they mean for SampleMix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import QUADMIX_SAMPLING, MixingConfig
from samplemix_spark.errors import InputError
from samplemix_spark.mixing import budget, formulas

EXACT_VALUES = 10_000
BINS = 10_000
CRITERION_COLUMNS = {"quality": "q"}  # any other criterion is an ingest.score_columns column of documents


def criterion_column(name: str) -> str:
    return CRITERION_COLUMNS.get(name, name)


def score_columns(cfg: MixingConfig) -> list[str]:
    """The documents columns (``ingest.score_columns``) that the merging weights name, for the scored view."""
    named = set(cfg.quadmix.weights) | {n for v in cfg.quadmix.domains.values() for n in v.get("weights", {})}
    return sorted(named - set(CRITERION_COLUMNS))


@dataclass(frozen=True)
class QuadMixCounts:
    frame: DataFrame          # scored documents with merged, rank, _s (S) and the domain's parameters
    c: Column                 # the expected count, min(scale * S, cap)
    scale: budget.Scale
    s_sum: float              # Σ S
    s_token_sum: float        # Σ S·n_tokens
    parameters: str           # JSON: domain -> its parameters and merging weights


def sampling_value(rank: Column, lam: Column, omega: Column, eta: Column, epsilon: Column) -> Column:
    """Eq. 3: η·2/(1 + exp(−λ(ω − r̄))) + ε for r̄ <= ω, else ε."""
    sigmoid = F.lit(2.0) / (F.lit(1.0) + F.exp(-lam * (omega - rank)))
    return F.when(rank <= omega, eta * sigmoid + epsilon).otherwise(epsilon)


def merged_score(scored: DataFrame, cfg: MixingConfig, domains: list[str]) -> Column:
    """Eq. 1 per domain, from each criterion's corpus min-max normalisation."""
    criteria = sorted({name for d in domains for name in cfg.quadmix.for_domain(d)["weights"]})
    bounds = scored.agg(*[f(criterion_column(n)).alias(f"{n}_{k}") for n in criteria
                          for f, k in ((F.min, "lo"), (F.max, "hi"))]).collect()[0]
    normalised = {n: formulas.min_max_normalised(F.col(criterion_column(n)), bounds[f"{n}_lo"], bounds[f"{n}_hi"])
                  for n in criteria}
    merged = None
    for domain in domains:
        weights = cfg.quadmix.for_domain(domain)["weights"]
        total = sum(weights.values())
        value = sum((F.lit(w / total) * normalised[n] for n, w in sorted(weights.items())), F.lit(0.0))
        merged = (F.when(F.col("domain") == domain, value) if merged is None
                  else merged.when(F.col("domain") == domain, value))
    return merged


def _buckets(frame: DataFrame) -> DataFrame:
    """The histogram key of every document: its merged value, or its bin where a domain has too many values."""
    per_domain = frame.groupBy("domain").agg(F.countDistinct("merged").alias("values"), F.min("merged").alias("lo"),
                                             F.max("merged").alias("hi")).collect()
    binned = {r["domain"]: (r["lo"], r["hi"]) for r in per_domain if r["values"] > EXACT_VALUES}
    bucket = F.col("merged")
    for domain, (lo, hi) in sorted(binned.items()):
        index = F.least(F.floor((F.col("merged") - F.lit(lo)) / F.lit(hi - lo) * F.lit(BINS)), F.lit(BINS - 1))
        bucket = F.when(F.col("domain") == domain, index.cast("double")).otherwise(bucket)
    return frame.withColumn("_bucket", bucket)


def mid_ranks(histogram: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, bucket) with its tokens: the token-weighted mid-rank, best (largest bucket) first.

    A domain whose documents hold no tokens at all is ranked by documents instead (``docs``), so its
    ranks stay defined.
    """
    parts = []
    for _, group in histogram.groupby("domain", sort=True):
        group = group.sort_values("_bucket", ascending=False)
        tokens = group["tokens"].astype(float)
        if not tokens.sum() > 0:
            tokens = group["docs"].astype(float)
        better = tokens.cumsum() - tokens
        parts.append(group.assign(rank=(better + tokens / 2) / tokens.sum()))
    return pd.concat(parts, ignore_index=True)[["domain", "_bucket", "rank"]]


def quadmix_counts(scored: DataFrame, cfg: MixingConfig, target: float) -> QuadMixCounts:
    """The QuaDMix expected count of every scored document, scaled to meet ``target`` budget units."""
    spark = scored.sparkSession
    domains = sorted(r["domain"] for r in scored.select("domain").distinct().collect())
    unknown = sorted(set(cfg.quadmix.domains) - set(domains))
    if unknown:
        raise InputError(f"mixing.quadmix.domains names {', '.join(unknown)}, which the documents do not hold; "
                         f"their domains: {', '.join(domains)}")
    keyed = _buckets(scored.withColumn("merged", merged_score(scored, cfg, domains)))
    histogram = keyed.groupBy("domain", "_bucket").agg(F.sum("n_tokens").alias("tokens"),
                                                       F.count(F.lit(1)).alias("docs")).toPandas()
    params = {d: cfg.quadmix.for_domain(d) for d in domains}
    ranks = mid_ranks(histogram).assign(**{k: lambda t, k=k: t["domain"].map(lambda d: params[d][k])
                                           for k in QUADMIX_SAMPLING})
    ranked = keyed.join(F.broadcast(spark.createDataFrame(ranks)), ["domain", "_bucket"]).drop("_bucket")
    s = sampling_value(*(F.col(k) for k in ("rank", *QUADMIX_SAMPLING)))
    ranked = ranked.withColumn("_s", s)
    units = budget.unit(cfg.budget_mode)
    sums = ranked.agg(F.sum("_s").alias("s"), F.sum(F.col("_s") * F.col("n_tokens")).alias("sn")).collect()[0]
    unit_sum = float((sums["sn"] if cfg.budget_mode == "tokens" else sums["s"]) or 0)
    if not unit_sum > 0:
        raise InputError("every document's QuaDMix sampling value is 0 (eta and epsilon are 0 everywhere): "
                         "nothing can meet the budget")
    scale = budget.solve_scale(ranked, F.col("_s"), units, target, unit_sum, cfg.max_repeats)
    if not math.isfinite(scale.scale):
        raise InputError("the QuaDMix budget scale is not finite")
    c = F.col("_s") * F.lit(scale.scale)
    if cfg.max_repeats is not None:
        c = F.least(c, F.lit(float(cfg.max_repeats)))
    return QuadMixCounts(ranked, c, scale, float(sums["s"]), float(sums["sn"]), json.dumps(params, sort_keys=True))


def shown_columns() -> dict[str, Column]:
    """What the weights table's p, q_norm and d_norm hold for QuaDMix: q̄, r̄ and null."""
    return {"p": F.col("merged"), "q_norm": F.col("rank"), "d_norm": F.lit(None).cast("double")}
