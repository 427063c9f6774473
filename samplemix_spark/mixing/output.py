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
    """Partition the copies into ``n_files`` files; when shuffling, in shuffle-key order.

    Shuffling range-partitions by the key, so file i holds the i-th key range, and
    sorts each partition with Arrow compute. The sort is done by the UDF rather
    than by ``sortWithinPartitions`` because some engines (Sail 0.7) drop a sort
    that feeds a file write; rows leave the UDF in order and are written as they come.
    """
    if not cfg.shuffle:
        return copies.repartition(n_files)
    keyed = copies.withColumn("_key", shuffle_key(F.col("doc_id"), F.col("replica"), cfg.seed))
    ranged = keyed.repartitionByRange(n_files, "_key", "doc_id", "replica")
    return ranged.mapInArrow(_sort_partition, ranged.schema).drop("_key")


_SORT_KEYS = [("_key", "ascending"), ("doc_id", "ascending"), ("replica", "ascending")]
# Rows and string bytes per batch handed back to the engine: they bound the memory of each gather whatever
# the documents' sizes, and keep a batch's strings far below the 2 GiB that 32-bit offsets address.
_SORTED_BATCH_ROWS = 65_536
_SORTED_BATCH_BYTES = 32 * 2**20


def _sort_partition(batches):
    """Executor side: the whole partition (one output file's rows) sorted by (key, doc_id, replica).

    Only the three key columns are sorted. The rows are then gathered from the
    batches as they arrived, one slice of the order at a time, so a worker holds
    the file's rows once plus a few copies of one slice, not whole copies of the
    file as sorting the table itself does.

    Arrow sorts strings by UTF-8 bytes, which is code point order, and the three
    keys are unique per row, so the order does not depend on how rows arrived.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    batches = [batch for batch in batches if batch.num_rows]
    if not batches:
        return
    keys = pa.Table.from_batches([batch.select([name for name, _ in _SORT_KEYS]) for batch in batches])
    order = pc.sort_indices(keys, sort_keys=_SORT_KEYS).to_numpy().astype(np.int64)
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    for rows in _slices(order, _string_bytes(batches)[order]):
        yield from _gather(batches, starts, rows).to_batches()


def _string_bytes(batches: list):
    """Each row's bytes of string data, over the concatenated batches."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def row_bytes(batch):
        lengths = [pc.binary_length(column).fill_null(0).to_numpy().astype(np.int64)
                   for column in batch.columns if pa.types.is_string(column.type)]
        return np.sum(lengths, axis=0) if lengths else np.zeros(batch.num_rows, np.int64)
    return np.concatenate([row_bytes(batch) for batch in batches])


def _slices(order, sizes):
    """Consecutive runs of ``order`` of at most _SORTED_BATCH_ROWS rows and _SORTED_BATCH_BYTES (or one row)."""
    import numpy as np

    total = np.cumsum(sizes)
    begin = 0
    while begin < len(order):
        before = total[begin - 1] if begin else 0
        end = int(np.searchsorted(total, before + _SORTED_BATCH_BYTES, side="right"))
        end = min(max(end, begin + 1), begin + _SORTED_BATCH_ROWS)
        yield order[begin:end]
        begin = end


def _gather(batches: list, starts, rows):
    """The partition's rows at positions ``rows`` (indices over the concatenated batches), in that order."""
    import numpy as np
    import pyarrow as pa

    owner = np.searchsorted(starts, rows, side="right") - 1
    by_owner = np.argsort(owner, kind="stable")
    owners, firsts = np.unique(owner[by_owner], return_index=True)
    parts = np.split(rows[by_owner], firsts[1:])
    pieces = [batches[b].take(pa.array(part - starts[b])) for b, part in zip(owners, parts)]
    # The pieces hold the slice's rows grouped by batch; taking by the inverse permutation restores the order.
    return pa.Table.from_batches(pieces, batches[0].schema).take(pa.array(np.argsort(by_owner)))


def build_output(weights: DataFrame, documents: DataFrame, cfg: MixingConfig, n_files: int = 1) -> DataFrame:
    """doc_id, domain, text, n_tokens, replica: one row per copy; count-0 documents drop out."""
    selected = weights.filter(F.col("count") > 0).select("doc_id", "count")
    texts = documents.select("doc_id", "domain", "text", "n_tokens")
    copies = explode_copies(selected.join(texts, "doc_id"), list(OUTPUT_COLUMNS[:-1]))
    return lay_out(copies, cfg, n_files)


def output_changes(output: DataFrame, weights: DataFrame, documents: DataFrame) -> DataFrame:
    """The copies to insert into and delete from ``output`` so that it holds ``count`` copies of every document
    of ``weights``: OUTPUT_COLUMNS plus ``_action`` ('insert' or 'delete'), for ``TableStore.apply_changes``.

    What ``output`` holds is read from the table itself (replicas 0..n-1 of a document),
    not from an earlier ``weights``, so a change stopped before its commit is found
    again whole on the next run. A document that left ``weights`` loses its copies.
    """
    held = output.groupBy("doc_id").agg((F.max("replica") + 1).alias("held"))
    wanted = weights.select("doc_id", "count")
    both = held.join(wanted, "doc_id", "full")
    changed = (both.select("doc_id", *(F.coalesce(c, F.lit(0)).alias(c) for c in ("held", "count")))
               .filter(F.col("held") != F.col("count")))
    texts = documents.select("doc_id", "domain", "text", "n_tokens")
    inserted = changed.filter(F.col("count") > F.col("held")).join(texts, "doc_id").select(
        *OUTPUT_COLUMNS[:-1], F.explode(F.sequence(F.col("held"), F.col("count") - 1)).alias("replica"),
        F.lit("insert").alias("_action"))
    deleted = changed.filter(F.col("held") > F.col("count")).select(
        "doc_id", *(F.lit(None).cast(output.schema[c].dataType).alias(c) for c in ("domain", "text", "n_tokens")),
        F.explode(F.sequence(F.col("count"), F.col("held") - 1)).alias("replica"), F.lit("delete").alias("_action"))
    return inserted.unionByName(deleted)


def export_output(output: DataFrame, cfg: MixingConfig, n_files: int, laid_out: bool = True) -> None:
    """Write the output as JSON lines or Parquet files for trainers that do not read Delta.

    An ``output`` this mix wrote whole is already laid out (``lay_out``), so it is
    exported as it is read: the text is not shuffled a second time, and each
    export file holds runs of an output file's rows in that file's order (how an
    engine's reader splits or packs the files decides where the runs meet). An
    ``output`` changed by a refresh's MERGE (``laid_out`` False) holds its added
    copies in files of their own, so it is laid out again.
    """
    rows = output.select(*OUTPUT_COLUMNS)
    writer = (rows if laid_out else lay_out(rows, cfg, n_files)).write.mode("overwrite")
    if cfg.export_format == "jsonl":
        writer.json(cfg.export_path)
    else:
        writer.parquet(cfg.export_path)
