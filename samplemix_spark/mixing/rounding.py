"""Expected counts to integer counts: ``mixing.rounding``. Driver side builds the columns; Spark runs them.

A document's expected count c becomes ⌊c⌋ copies plus one more with
probability f = c − ⌊c⌋, so E[count] = c either way. The two rules differ in how
the extra copies are drawn together:

- ``bernoulli`` (default, the paper's rule): one independent draw per document
  from its hashed uniform (``hashing.COUNT_DRAW``). The realised token total has
  a standard deviation of √Σ f(1−f)·n_tokens² around Σ c·n_tokens (the report
  prints it).
- ``systematic``: probability-proportional-to-size systematic rounding. Documents
  are put in one fixed order, (n_tokens, hashed doc_id, doc_id); with P_i the
  running sum of the fractional parts through document i and one offset U in
  [0, 1) drawn from the seed, document i gets its extra copy when
  ⌊P_i + U⌋ > ⌊P_i − f_i + U⌋. Each document still gets its extra copy with
  probability f_i (over U), and the number of extra copies is ⌊Σf + U⌋, within
  one of Σf; with lengths sorted, the token total lands within the largest
  document's tokens of Σ c·n_tokens.

The running sums are exact and independent of partitioning: fractional parts
are integers in units of 2⁻³² (int64, so 500M documents sum without overflow),
each group of equal n_tokens is summed with a grouped aggregate, the driver
turns the group sums into each group's starting offset (one row per distinct
length), and a window partitioned by n_tokens adds the running sum inside the
group. No step sorts the whole table in one partition.

Systematic counts depend on every document before one in the order, so an
incremental refresh that adds documents changes more counts than hashed
Bernoulli draws do, where a document's draw is its own.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from samplemix_spark.hashing import SYSTEMATIC_OFFSET, SYSTEMATIC_ORDER, order_key, purpose_seed

UNIT_BITS = 32
UNITS = 1 << UNIT_BITS


def fraction_units(c: Column) -> Column:
    """c − ⌊c⌋ as an integer number of 2⁻³² units (truncated), as a long."""
    return F.floor((c - F.floor(c)) * F.lit(float(UNITS))).cast("long")


def offset_units(seed: int) -> int:
    """The one uniform offset U of a systematic draw, in 2⁻³² units: from the seed, for this purpose only."""
    return purpose_seed(SYSTEMATIC_OFFSET, seed) >> (64 - UNIT_BITS)


def extras(units: np.ndarray, offset: int) -> np.ndarray:
    """The extra copies (0 or 1) of documents already in systematic order: the rule in integers, numpy side."""
    running = np.cumsum(units.astype(np.int64)) + np.int64(offset)
    return ((running >> UNIT_BITS) - ((running - units) >> UNIT_BITS)).astype(np.int64)


def systematic_counts(frame: DataFrame, seed: int) -> DataFrame:
    """``frame`` (with doc_id, n_tokens and c) plus ``count`` by systematic rounding (see the module doc)."""
    spark = frame.sparkSession
    keyed = frame.withColumn("_units", fraction_units(F.col("c"))).withColumn(
        "_key", order_key(F.col("doc_id"), seed, SYSTEMATIC_ORDER))
    groups = keyed.groupBy("n_tokens").agg(F.sum("_units").alias("units")).orderBy("n_tokens").collect()
    start, offsets = offset_units(seed), []
    for row in groups:
        offsets.append((row["n_tokens"], start))
        start += int(row["units"] or 0)
    starts = spark.createDataFrame(offsets, "n_tokens long, _start long")
    order = Window.partitionBy("n_tokens").orderBy("_key", "doc_id").rowsBetween(
        Window.unboundedPreceding, Window.currentRow)
    running = F.col("_start") + F.sum("_units").over(order)
    extra = F.shiftright(running, UNIT_BITS) - F.shiftright(running - F.col("_units"), UNIT_BITS)
    joined = keyed.join(F.broadcast(starts), "n_tokens")
    return (joined.withColumn("count", (F.floor(F.col("c")) + extra).cast("int"))
            .drop("_units", "_key", "_start").select(*frame.columns, "count"))
