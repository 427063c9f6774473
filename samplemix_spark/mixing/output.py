"""The mixed training set: every document repeated ``count`` times.

Executor-side work only (native expressions): join the selected weights rows to
their text, explode ``sequence(0, count-1)`` into replica indices, and optionally
order by a hash of (doc_id, replica, seed) so that the copies of one document are
spread through the files instead of lying next to each other.

File layout: the output is cut into about ``expected bytes / mixing.output_file_mb``
files (range partitions of the shuffle key when shuffling), so a small run does
not write hundreds of tiny files and a large one does not write one huge file.
"""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig
from samplemix_spark.mixing.formulas import shuffle_key

OUTPUT_COLUMNS = ("doc_id", "domain", "text", "n_tokens", "replica")
# Bytes per token of UTF-8 text plus per-row overhead, to size output files.
_BYTES_PER_TOKEN = 4.5
_BYTES_PER_ROW = 64
MAX_OUTPUT_FILES = 10_000


def output_file_count(expected_rows: float, expected_tokens: float, file_mb: float) -> int:
    """How many files an output of this size should be written as."""
    expected_bytes = expected_tokens * _BYTES_PER_TOKEN + expected_rows * _BYTES_PER_ROW
    return int(min(MAX_OUTPUT_FILES, max(1, math.ceil(expected_bytes / (file_mb * 2**20)))))


def explode_copies(selected: DataFrame, columns: list[str]) -> DataFrame:
    """One row per copy with a 0-based ``replica``; ``selected`` holds only rows with count >= 1.

    sequence() is only evaluated for count >= 1: sequence(0, -1) would count down.
    """
    return selected.select(*columns, F.explode(F.sequence(F.lit(0), F.col("count") - 1)).alias("replica"))


def lay_out(copies: DataFrame, cfg: MixingConfig, n_files: int) -> DataFrame:
    """Order (when shuffling) and partition the copies into ``n_files`` files."""
    if not cfg.shuffle:
        return copies.repartition(n_files)
    key = shuffle_key(F.col("doc_id"), F.col("replica"), cfg.seed)
    return copies.repartitionByRange(n_files, key, "doc_id", "replica").sortWithinPartitions(key, "doc_id", "replica")


def build_output(weights: DataFrame, documents: DataFrame, cfg: MixingConfig, n_files: int = 1) -> DataFrame:
    """doc_id, domain, text, n_tokens, replica: one row per copy; count-0 documents drop out."""
    selected = weights.filter(F.col("count") > 0).select("doc_id", "count")
    texts = documents.select("doc_id", "domain", "text", "n_tokens")
    copies = explode_copies(selected.join(texts, "doc_id"), list(OUTPUT_COLUMNS[:-1]))
    return lay_out(copies, cfg, n_files)


def export_output(output: DataFrame, cfg: MixingConfig) -> None:
    """Write the output as JSON lines or Parquet files for trainers that do not read Delta."""
    if cfg.shuffle:
        output = output.sortWithinPartitions(shuffle_key(F.col("doc_id"), F.col("replica"), cfg.seed))
    writer = output.select(*OUTPUT_COLUMNS).write.mode("overwrite")
    if cfg.export_format == "jsonl":
        writer.json(cfg.export_path)
    else:
        writer.parquet(cfg.export_path)
