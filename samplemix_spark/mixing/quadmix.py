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
  better than this document's: 0 for the best. It comes from a per-domain
  histogram built with grouped aggregates (integer token sums, so every engine and
  partitioning gets the same ranks): one bucket per distinct merged value while a
  domain has at most ``EXACT_VALUES`` of them, else about ``BINS`` buckets of equal
  token mass, cut at the token-weighted quantiles of a hashed sample
  (``hashing.QUADMIX_BINS``). Inside a bucket a document's rank is interpolated
  by its merged value between the bucket's largest and smallest; documents of one
  value (ties) are spread over the bucket's token share by a hashed uniform of
  their doc_id (``hashing.QUADMIX_TIES``), so a cut at ω keeps about ω of a tie
  group's tokens, not all or none of it.
- Sampling (eq. 3): S(r̄) = (2/(1 + exp(−λ(ω − r̄))))^η + ε for r̄ ≤ ω, else ε
  (``eta_mode: exponent``, the default: the paper's extracted formula puts η after
  the bracket), or η·2/(1 + exp(−λ(ω − r̄))) + ε (``eta_mode: factor``).
- Budget: ``budget_mode: implicit`` uses S as is, as the paper does (S is each
  document's expected count; the tokens that gives are reported as the target).
  Otherwise one factor scales every S so that Σ c·n_tokens (tokens mode) or Σ c
  (documents mode) meets the target, as SampleMix's budget does. Either way c is
  capped at ``MixingConfig.repeat_cap`` (``mixing.max_repeats``, 4 by default for
  QuaDMix), with the same water-filling (``budget.solve_scale``) and integer draw.

In the ``weights`` table ``p`` holds the merged score q̄, ``q_norm`` the rank
r̄ and ``d_norm`` is null; ``c`` and ``count`` mean what they mean for SampleMix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import QUADMIX_SAMPLING, MixingConfig
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import QUADMIX_BINS, QUADMIX_TIES, uniform
from samplemix_spark.mixing import budget, formulas

EXACT_VALUES = 10_000
BINS = 1_000
SAMPLE_PER_BIN = 32   # sampled documents per equal-mass bin: its token share is known to about 1/sqrt(32)
# Ties and bins hash with the purpose-aware scheme whatever the warehouse's count draw uses: under v1 the
# tie position and the count draw would be one uniform, and the documents placed first would also keep
# their extra copy more often.
HASH_SCHEME = "v2"
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


def sampling_value(rank: Column, lam: Column, omega: Column, eta: Column, epsilon: Column,
                   eta_mode: str = "exponent") -> Column:
    """Eq. 3: (2/(1 + exp(−λ(ω − r̄))))^η + ε (or η times the bracket, ``factor``) for r̄ <= ω, else ε."""
    bracket = F.lit(2.0) / (F.lit(1.0) + F.exp(-lam * (omega - rank)))
    top = F.pow(bracket, eta) if eta_mode == "exponent" else eta * bracket
    return F.when(rank <= omega, top + epsilon).otherwise(epsilon)


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


def _per_domain(values: dict[str, float]) -> Column:
    """One number per domain as a column expression (a handful of domains: a CASE, not a join)."""
    column = F.lit(0.0)
    for domain, value in sorted(values.items()):
        column = F.when(F.col("domain") == domain, F.lit(value)).otherwise(column)
    return column


def weighted_edges(values: np.ndarray, mass: np.ndarray, bins: int) -> np.ndarray:
    """The ``bins - 1`` cut points that split ``values`` into bins of equal total ``mass`` (distinct, sorted)."""
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(mass[order])
    wanted = cumulative[-1] * np.arange(1, bins) / bins
    return np.unique(values[np.minimum(np.searchsorted(cumulative, wanted, side="right"), len(values) - 1)])


def _equal_mass_edges(frame: DataFrame, binned: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Per binned domain, equal-token-mass cut points from a token-weighted hashed sample of ~BINS·SAMPLE_PER_BIN.

    A document is drawn with probability min(1, rate·mass) and weighted by mass over that probability, so
    a long document drawn for certain still counts for all its tokens.
    """
    rate = {d: BINS * SAMPLE_PER_BIN / total for d, total in binned.items()}
    keep = F.least(F.lit(1.0), _per_domain(rate) * F.col("_mass"))
    chosen = frame.where(F.col("domain").isin(sorted(binned))).select("domain", "merged", "_mass", keep.alias("p"))
    sample = chosen.where(uniform(F.col("doc_id"), seed, QUADMIX_BINS, HASH_SCHEME) < F.col("p")).toPandas()
    return {d: weighted_edges(g["merged"].to_numpy(float), (g["_mass"] / g["p"]).to_numpy(float), BINS)
            for d, g in sample.groupby("domain", sort=True)}


def _bucket_udf(edges: dict[str, np.ndarray]):
    """Executor side: a binned domain's bucket is the number of its cut points at or below the merged score."""
    @F.pandas_udf("double")
    def bucket(domain: pd.Series, merged: pd.Series) -> pd.Series:
        out = merged.astype("float64").to_numpy(copy=True)
        for name, cuts in edges.items():
            rows = (domain == name).to_numpy()
            out[rows] = np.searchsorted(cuts, out[rows], side="right")
        return pd.Series(out)
    return bucket


def _buckets(frame: DataFrame, seed: int) -> DataFrame:
    """The histogram key of every document: its merged value, or its equal-mass bin where a domain has many.

    ``_mass`` is what a rank counts: tokens, or documents in a domain whose documents hold no tokens.
    """
    per_domain = frame.groupBy("domain").agg(F.countDistinct("merged").alias("values"),
                                             F.sum("n_tokens").alias("tokens"),
                                             F.count(F.lit(1)).alias("docs")).collect()
    no_tokens = sorted(r["domain"] for r in per_domain if not (r["tokens"] or 0) > 0)
    mass = F.when(F.col("domain").isin(no_tokens), F.lit(1)).otherwise(F.col("n_tokens"))
    frame = frame.withColumn("_mass", mass if no_tokens else F.col("n_tokens"))
    binned = {r["domain"]: float(r["docs"] if r["domain"] in no_tokens else r["tokens"])
              for r in per_domain if r["values"] > EXACT_VALUES}
    if not binned:
        return frame.withColumn("_bucket", F.col("merged"))
    edges = _equal_mass_edges(frame, binned, seed)
    return frame.withColumn("_bucket", _bucket_udf(edges)(F.col("domain"), F.col("merged")))


def bucket_ranks(histogram: pd.DataFrame) -> pd.DataFrame:
    """Per (domain, bucket): ``better``, the mass share of better buckets, and ``share``, the bucket's own."""
    parts = []
    for _, group in histogram.groupby("domain", sort=True):
        group = group.sort_values("_bucket", ascending=False)
        mass = group["mass"].astype(float)
        parts.append(group.assign(better=(mass.cumsum() - mass) / mass.sum(), share=mass / mass.sum()))
    return pd.concat(parts, ignore_index=True)[["domain", "_bucket", "better", "share", "lo", "hi"]]


def rank_column(seed: int) -> Column:
    """r̄ inside a bucket: interpolated by value from its best (``hi``) to its worst; ties by a hashed uniform."""
    by_value = (F.col("hi") - F.col("merged")) / (F.col("hi") - F.col("lo"))
    within = F.when(F.col("hi") > F.col("lo"), by_value).otherwise(
        uniform(F.col("doc_id"), seed, QUADMIX_TIES, HASH_SCHEME))
    return F.col("better") + F.col("share") * within


def ranked_documents(scored: DataFrame, cfg: MixingConfig, domains: list[str]) -> DataFrame:
    """The scored documents with ``merged`` (q̄), ``rank`` (r̄) and their domain's sampling parameters."""
    keyed = _buckets(scored.withColumn("merged", merged_score(scored, cfg, domains)), cfg.seed)
    histogram = keyed.groupBy("domain", "_bucket").agg(F.sum("_mass").alias("mass"), F.min("merged").alias("lo"),
                                                       F.max("merged").alias("hi")).toPandas()
    params = {d: cfg.quadmix.for_domain(d) for d in domains}
    ranks = bucket_ranks(histogram).assign(**{k: lambda t, k=k: t["domain"].map(lambda d: params[d][k])
                                              for k in QUADMIX_SAMPLING})
    joined = keyed.join(F.broadcast(keyed.sparkSession.createDataFrame(ranks)), ["domain", "_bucket"])
    return joined.withColumn("rank", rank_column(cfg.seed)).drop(
        "_bucket", "_mass", "better", "share", "lo", "hi")


def quadmix_counts(scored: DataFrame, cfg: MixingConfig, target: float) -> QuadMixCounts:
    """The QuaDMix expected count of every scored document: S scaled to meet ``target`` budget units, or S
    itself under ``budget_mode: implicit`` (``target`` unused), capped at the config's repeat cap."""
    domains = sorted(r["domain"] for r in scored.select("domain").distinct().collect())
    unknown = sorted(set(cfg.quadmix.domains) - set(domains))
    if unknown:
        raise InputError(f"mixing.quadmix.domains names {', '.join(unknown)}, which the documents do not hold; "
                         f"their domains: {', '.join(domains)}")
    s = sampling_value(*(F.col(k) for k in ("rank", *QUADMIX_SAMPLING)), eta_mode=cfg.quadmix.eta_mode)
    ranked = ranked_documents(scored, cfg, domains).withColumn("_s", s)
    sums = ranked.agg(F.sum("_s").alias("s"), F.sum(F.col("_s") * F.col("n_tokens")).alias("sn")).collect()[0]
    unit_sum = float((sums["sn"] if cfg.budget_mode == "tokens" else sums["s"]) or 0)
    if not unit_sum > 0:
        raise InputError("every document's QuaDMix sampling value is 0 (eta and epsilon are 0 everywhere): "
                         "nothing can meet the budget")
    cap = cfg.repeat_cap
    if cfg.budget_mode == "implicit":
        n_capped = 0 if cap is None else ranked.where(F.col("_s") > F.lit(cap)).count()
        scale = budget.Scale(1.0, 1.0, 0, n_capped)
    else:
        scale = budget.solve_scale(ranked, F.col("_s"), budget.unit(cfg.budget_mode), target, unit_sum, cap)
    if not math.isfinite(scale.scale):
        raise InputError("the QuaDMix budget scale is not finite")
    c = F.col("_s") * F.lit(scale.scale)
    if cap is not None:
        c = F.least(c, F.lit(float(cap)))
    params = {d: {**cfg.quadmix.for_domain(d), "eta_mode": cfg.quadmix.eta_mode} for d in domains}
    return QuadMixCounts(ranked, c, scale, float(sums["s"]), float(sums["sn"]), json.dumps(params, sort_keys=True))


def shown_columns() -> dict[str, Column]:
    """What the weights table's p, q_norm and d_norm hold for QuaDMix: q̄, r̄ and null."""
    return {"p": F.col("merged"), "q_norm": F.col("rank"), "d_norm": F.lit(None).cast("double")}
