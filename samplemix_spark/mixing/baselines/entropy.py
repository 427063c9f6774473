"""Entropy of each domain's token distribution (BiMix's training-free proportions, SPEC §5).

Executor side: token ids come from the ingest tokenizer (a pandas UDF); unigram
and bigram counts per domain are Spark aggregates. Driver side: the entropies
are computed from the (domain, count) aggregates, in bits:

- ``shannon``: H(X) over the unigram distribution of the domain's tokens;
- ``joint``: H(X_t, X_t+1) over adjacent token pairs inside documents;
- ``conditional``: H(X_t+1 | X_t) = H(X_t, X_t+1) - H(X_t), with H(X_t) the entropy
  of the pairs' first tokens. BiMix found conditional entropy to work best, so it
  is the default.

Proportions are r_i = H_i / sum_j H_j.
"""

from __future__ import annotations

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


def _entropy_bits(counts: pd.DataFrame, group: str = "domain") -> pd.Series:
    """sum -p log2 p per group, from rows (group, n) of outcome counts."""
    import numpy as np

    totals = counts.groupby(group)["n"].transform("sum")
    p = counts["n"] / totals
    return (-(p * np.log2(p))).groupby(counts[group]).sum()


def domain_entropies(documents: DataFrame, tokenizer: str, kind: str) -> dict[str, float]:
    """Entropy of ``kind`` for each domain, in bits."""
    ids = documents.select("domain", token_ids_column(F.col("text"), tokenizer).alias("ids"))
    if kind == "shannon":
        unigrams = ids.select("domain", F.explode("ids").alias("a")).groupBy("domain", "a").count()
        return _entropy_bits(unigrams.withColumnRenamed("count", "n").toPandas()).to_dict()
    adjacent = F.transform(F.slice("ids", 1, F.size("ids") - 1),
                           lambda token, i: F.struct(token.alias("a"), F.element_at("ids", i + 2).alias("b")))
    pairs = ids.filter(F.size("ids") > 1).select("domain", F.explode(adjacent).alias("pair"))
    bigrams = (pairs.select("domain", "pair.a", "pair.b").groupBy("domain", "a", "b").count()
               .withColumnRenamed("count", "n").toPandas())
    joint = _entropy_bits(bigrams)
    if kind == "joint":
        return joint.to_dict()
    first = bigrams.groupby(["domain", "a"], as_index=False)["n"].sum()
    return (joint - _entropy_bits(first)).to_dict()
