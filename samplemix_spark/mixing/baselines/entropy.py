"""Entropy of each domain's token distribution (BiMix's training-free proportions, SPEC §5).

Executor side: token ids come from the ingest tokenizer (a pandas UDF); unigram
and bigram counts per domain are Spark aggregates, and so is the histogram of
those counts (how many outcomes occur n times); the driver computes
H = log2 N - (sum n log2 n) / N from the histogram. The distinct bigrams of a
large corpus number in the hundreds of millions and never reach the driver. In bits:

- ``shannon``: H(X) over the unigram distribution of the domain's tokens;
- ``joint``: H(X_t, X_t+1) over adjacent token pairs inside documents;
- ``conditional``: H(X_t+1 | X_t) = H(X_t, X_t+1) - H(X_t), with H(X_t) the entropy
  of the pairs' first tokens. BiMix found conditional entropy to work best, so it
  is the default.

Proportions are r_i = H_i / sum_j H_j.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.ingest.tokens import load_tokenizer


def token_ids_column(text: Column, tokenizer: str) -> Column:
    """array<int> of token ids of ``text`` (no special tokens); built on the driver."""

    @F.pandas_udf("array<int>")
    def token_ids(texts: pd.Series) -> pd.Series:
        encodings = load_tokenizer(tokenizer).encode_batch(texts.tolist(), add_special_tokens=False)
        return pd.Series([e.ids for e in encodings])

    return token_ids(text)


def token_pairs_column(text: Column, tokenizer: str) -> Column:
    """array<bigint> of the document's adjacent token pairs, each packed as ``a * 2^32 + b``.

    Pairs are formed in the UDF: building them with ``transform`` over the id
    arrays makes the embedded engine (Sail 0.7) panic on corpora of a few million tokens.
    """

    @F.pandas_udf("array<bigint>")
    def token_pairs(texts: pd.Series) -> pd.Series:
        import numpy as np

        encodings = load_tokenizer(tokenizer).encode_batch(texts.tolist(), add_special_tokens=False)
        packed = []
        for e in encodings:
            ids = np.asarray(e.ids, dtype=np.int64)
            packed.append((ids[:-1] << 32) | ids[1:])
        return pd.Series(packed)

    return token_pairs(text)


def _entropy_bits(counts: DataFrame, outcome: str) -> dict[str, float]:
    """H = log2 N - (sum n log2 n) / N per domain, from (domain, outcome) counts ``n``.

    Spark counts the outcomes per (domain, count value): integers, so exact in any
    order. The driver sums n log2 n over the distinct count values in sorted order,
    so the result is the same on every engine and rerun (a float sum inside Spark
    would depend on partitioning). The rows that reach the driver are one per
    distinct count value of a domain, which grows like the square root of its
    token count at most, never with the number of distinct outcomes.
    """
    per_outcome = counts.groupBy("domain", outcome).agg(F.sum("n").alias("n"))
    histogram = per_outcome.groupBy("domain", "n").agg(F.count(F.lit(1)).alias("outcomes")).toPandas()
    entropies = {}
    for domain, rows in histogram.sort_values(["domain", "n"]).groupby("domain"):
        n = rows["n"].to_numpy(dtype=float)
        weight = rows["outcomes"].to_numpy(dtype=float)
        total = float((n * weight).sum())
        entropies[domain] = math.log2(total) - float((weight * n * np.log2(n)).sum()) / total
    return entropies


def domain_entropies(documents: DataFrame, tokenizer: str, kind: str) -> dict[str, float]:
    """Entropy of ``kind`` for each domain, in bits."""
    if kind == "shannon":
        ids = documents.select("domain", token_ids_column(F.col("text"), tokenizer).alias("ids"))
        unigrams = ids.select("domain", F.explode("ids").alias("a"), F.lit(1).alias("n"))
        return _entropy_bits(unigrams, "a")
    pairs = documents.select("domain", F.explode(token_pairs_column(F.col("text"), tokenizer)).alias("pair"))
    bigrams = pairs.groupBy("domain", "pair").agg(F.count(F.lit(1)).alias("n"))
    joint = _entropy_bits(bigrams, "pair")
    if kind == "joint":
        return joint
    # The first token of each pair, from the packed a * 2^32 + b.
    first = _entropy_bits(bigrams.withColumn("a", F.shiftright("pair", 32)), "a")
    return {domain: joint[domain] - first[domain] for domain in joint}
