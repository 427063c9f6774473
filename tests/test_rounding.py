"""Expected counts to integers: systematic rounding's statistics in numpy, and the Spark rule against them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from samplemix_spark.config import build_config
from samplemix_spark.errors import ConfigError
from samplemix_spark.hashing import SYSTEMATIC_ORDER, order_key
from samplemix_spark.mixing import rounding


def _corpus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = np.concatenate([rng.uniform(0, 1, n // 2), rng.exponential(1.5, n - n // 2)])
    tokens = rng.integers(20, 3000, n)
    tokens[:5] = 25000  # a few long documents, as real corpora have
    return c, tokens


def test_systematic_rounding_keeps_each_expected_count_and_bounds_the_total():
    c, tokens = _corpus(400, 0)
    units = np.floor((c - np.floor(c)) * rounding.UNITS).astype(np.int64)
    order = np.lexsort((np.arange(len(c)), tokens))  # by length, then a fixed tie order
    counts = []
    for seed in range(300):
        extra = np.empty(len(c), dtype=np.int64)
        extra[order] = rounding.extras(units[order], rounding.offset_units(seed))
        count = np.floor(c) + extra
        counts.append(count)
        # The total: within one extra copy of Σ f, and within the largest document's tokens of Σ c·n.
        assert abs(extra.sum() - (c - np.floor(c)).sum()) < 1 + 1e-6
        assert abs((count * tokens).sum() - (c * tokens).sum()) <= tokens.max()
    counts = np.array(counts)
    # Each document's mean count over seeds is its c: per bin of c, within 4 standard errors.
    bins = np.digitize(c, np.quantile(c, np.linspace(0, 1, 9)[1:-1]))
    for b in np.unique(bins):
        members = counts[:, bins == b]
        error = members.mean(axis=0) - c[bins == b]
        standard_error = members.std(axis=0, ddof=1).mean() / np.sqrt(len(counts) * members.shape[1])
        assert abs(error.mean()) <= 4 * max(standard_error, 1e-9), (b, error.mean(), standard_error)


def test_spark_systematic_counts_follow_the_rule_whatever_the_partitioning(spark):
    c, tokens = _corpus(300, 1)
    tokens[::7] = 100  # many documents of one length: the order inside a length comes from the hash
    frame = pd.DataFrame({"doc_id": [f"doc-{i}" for i in range(len(c))], "n_tokens": tokens.astype(np.int64), "c": c})
    seed = 42
    results = []
    for partitions in (1, 7):
        counted = rounding.systematic_counts(spark.createDataFrame(frame).repartition(partitions), seed)
        results.append(counted.toPandas().sort_values("doc_id").reset_index(drop=True))
    pd.testing.assert_frame_equal(results[0], results[1])
    keys = spark.createDataFrame(frame).select("doc_id", order_key(F.col("doc_id"), seed, SYSTEMATIC_ORDER)
                                               .alias("key")).toPandas()
    ordered = frame.merge(keys, on="doc_id").sort_values(["n_tokens", "key", "doc_id"])
    units = np.floor((ordered["c"] - np.floor(ordered["c"])) * rounding.UNITS).astype(np.int64).to_numpy()
    ordered["count"] = np.floor(ordered["c"]).astype(int) + rounding.extras(units, rounding.offset_units(seed))
    expected = ordered.sort_values("doc_id").reset_index(drop=True)
    assert results[0]["count"].tolist() == expected["count"].tolist()


def test_an_unknown_rounding_is_refused_by_name():
    with pytest.raises(ConfigError, match="mixing.rounding"):
        build_config({"mixing": {"rounding": "nearest"}})
