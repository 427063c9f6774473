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


def _entropy_bits(counts: pd.DataFrame, group: str = "domain") -> pd.Series:
    """sum -p log2 p per group, from rows (group, n) of outcome counts."""
    import numpy as np

    totals = counts.groupby(group)["n"].transform("sum")
    p = counts["n"] / totals
    return (-(p * np.log2(p))).groupby(counts[group]).sum()


def domain_entropies(documents: DataFrame, tokenizer: str, kind: str) -> dict[str, float]:
    """Entropy of ``kind`` for each domain, in bits."""
    if kind == "shannon":
        ids = documents.select("domain", token_ids_column(F.col("text"), tokenizer).alias("ids"))
        unigrams = ids.select("domain", F.explode("ids").alias("a")).groupBy("domain", "a").count()
        return _entropy_bits(unigrams.withColumnRenamed("count", "n").toPandas()).to_dict()
    pairs = documents.select("domain", F.explode(token_pairs_column(F.col("text"), tokenizer)).alias("pair"))
    bigrams = pairs.groupBy("domain", "pair").count().withColumnRenamed("count", "n").toPandas()
    bigrams["a"] = bigrams["pair"].to_numpy() >> 32  # the first token of the pair
    joint = _entropy_bits(bigrams)
    if kind == "joint":
        return joint.to_dict()
    first = bigrams.groupby(["domain", "a"], as_index=False)["n"].sum()
    return (joint - _entropy_bits(first)).to_dict()
