"""Reads that bring rows to the driver in chunks no larger than a setting.

Spark fails a job whose results add up to more than
``spark.driver.maxResultSize`` (1g by default), and one ``toPandas`` holds a
whole result twice (Arrow buffers and the pandas frame). A read that grows with
a setting (the k-means sample, the quality labels, the centroids) is therefore
split by a chunk number into one Spark job per chunk of at most
``tables.collect_chunk_mb`` (a quarter of ``spark.driver.maxResultSize`` when
that is smaller), and the caller consumes each chunk before the next arrives.

A read whose source is expensive to scan (a filter over the embeddings table)
is first written once to a staging table through ``TableStore`` with its chunk
number, so each chunk rescans only the staged rows. Driver side.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.tables.store import TableStore

log = logging.getLogger(__name__)

CHUNK_COLUMN = "chunk"
# A chunk is this share of spark.driver.maxResultSize at most: the size estimate is not exact, and Spark
# counts serialised task results, which carry some overhead over the data.
_RESULT_SIZE_SHARE = 4
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> Optional[int]:
    """Bytes of a Spark size setting ("64m", "1g", "1024"); None for 0 (no limit) or an unreadable value."""
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(text).lower())
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def result_size_limit(store: TableStore) -> Optional[int]:
    """``spark.driver.maxResultSize`` in bytes where the engine reports one (classic Spark does; Sail does not)."""
    try:
        value = store.spark.conf.get("spark.driver.maxResultSize", None)
    except Exception:  # noqa: BLE001 - engines that do not know the key raise their own classes
        return None
    return parse_size(value) if value else None


def chunk_limit(store: TableStore) -> int:
    """The most bytes one chunk may bring to the driver."""
    limit = store.cfg.collect_chunk_mb * 2**20
    cap = result_size_limit(store)
    return limit if cap is None else max(1, min(limit, cap // _RESULT_SIZE_SHARE))


def chunk_count(total_bytes: float, limit: int) -> int:
    return max(1, math.ceil(total_bytes / limit))


@dataclass
class DriverChunks:
    """A frame read to the driver one chunk at a time (``chunk`` numbers rows 0..count-1)."""

    frame: DataFrame
    chunk: Column
    count: int

    def read(self, *columns: str, chunks_per_job: int = 1) -> Iterator[pd.DataFrame]:
        """``columns`` of every row, one pandas frame per Spark job of ``chunks_per_job`` chunks (more than one
        when ``columns`` are a small part of the rows the chunks were sized for)."""
        if self.count <= chunks_per_job:
            yield self.frame.select(*columns).toPandas()
            return
        for first in range(0, self.count, chunks_per_job):
            in_job = (self.chunk >= F.lit(first)) & (self.chunk < F.lit(first + chunks_per_job))
            yield self.frame.where(in_job).select(*columns).toPandas()

    def gather(self, *columns: str) -> pd.DataFrame:
        """Every chunk concatenated (for reads whose total the driver holds anyway)."""
        return pd.concat(list(self.read(*columns)), ignore_index=True)


def staged_chunks(store: TableStore, frame: DataFrame, staging: str, key: Column, total_bytes: float,
                  what: str) -> DriverChunks:
    """``frame`` in chunks of about ``chunk_limit`` bytes by a hash of ``key``; written to ``staging`` first
    when it takes more than one chunk, so the source is scanned once, partitioned by chunk, so each chunk's
    job reads its own files only."""
    limit = chunk_limit(store)
    count = chunk_count(total_bytes, limit)
    log.info("%s: about %.1f MiB to the driver in %d chunk%s of at most %.1f MiB", what, total_bytes / 2**20,
             count, "" if count == 1 else "s", limit / 2**20)
    if count == 1:
        return DriverChunks(frame, F.lit(0), 1)
    store.write(frame.withColumn(CHUNK_COLUMN, F.pmod(F.xxhash64(key), F.lit(count)).cast("int")), staging,
                partition_by=[CHUNK_COLUMN])
    return DriverChunks(store.read(staging), F.col(CHUNK_COLUMN), count)


def ranged_chunks(store: TableStore, frame: DataFrame, row_id: str, rows: int, row_bytes: float,
                  what: str) -> DriverChunks:
    """``frame`` (cheap to rescan) in chunks of consecutive ``row_id`` values 0..rows-1."""
    per_chunk = max(1, int(chunk_limit(store) // max(row_bytes, 1.0)))
    count = chunk_count(rows, per_chunk)
    if count > 1:
        log.info("%s: %d rows to the driver in %d chunks", what, rows, count)
    return DriverChunks(frame, F.floor(F.col(row_id) / F.lit(per_chunk)).cast("int"), count)
