"""The mixed training set: every document repeated ``count`` times.

Executor-side work only (native expressions): join the selected weights rows to
their text, explode ``sequence(0, count-1)`` into replica indices, and optionally
sort by a hash of (doc_id, replica, seed) so that the copies of one document are
spread through the files instead of lying next to each other.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig
from samplemix_spark.mixing.formulas import shuffle_key

OUTPUT_COLUMNS = ("doc_id", "domain", "text", "n_tokens", "replica")


def build_output(weights: DataFrame, documents: DataFrame, cfg: MixingConfig) -> DataFrame:
    """doc_id, domain, text, n_tokens, replica: one row per copy; count-0 documents drop out."""
    selected = weights.filter(F.col("count") > 0).select("doc_id", "count")
    texts = documents.select("doc_id", "domain", "text", "n_tokens")
    # sequence() is only evaluated for count >= 1: sequence(0, -1) would count down.
    copies = selected.join(texts, "doc_id").select(
        *OUTPUT_COLUMNS[:-1], F.explode(F.sequence(F.lit(0), F.col("count") - 1)).alias("replica"))
    if cfg.shuffle:
        key = shuffle_key(F.col("doc_id"), F.col("replica"), cfg.seed)
        copies = copies.orderBy(key, "doc_id", "replica")
    return copies


def export_output(output: DataFrame, cfg: MixingConfig) -> None:
    """Write the output as JSON lines or Parquet files for trainers that do not read Delta."""
    if cfg.shuffle:
        output = output.sortWithinPartitions(shuffle_key(F.col("doc_id"), F.col("replica"), cfg.seed))
    writer = output.select(*OUTPUT_COLUMNS).write.mode("overwrite")
    if cfg.export_format == "jsonl":
        writer.json(cfg.export_path)
    else:
        writer.parquet(cfg.export_path)
