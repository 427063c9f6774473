"""A proxy's training bytes: its mix's copies in a hashed order, chosen in Spark into a small table.

A mix's copies are (doc_id, replica, text): an output table's rows, or, for a
candidate mix that was never written out, one candidate's rows of a counts table
(candidate, doc_id, count) taken ``count`` times and joined to the documents'
text. Both give the same copies, hence the same stream. ``Copies`` names where
they are (files) and carries their total bytes as the driver measured them.

The stream of a proxy with seed s is the copies in the order of
``hashing.stream_key(s, epoch, doc_id, replica)`` (xxhash64), each text followed
by the separator, cut at budget + 1 bytes; when the budget exceeds the mix, the
stream goes through the mix again in the next epoch's order. It is a function of
the mix and the seed alone, not of the output's layout, file count or
``mixing.shuffle``: a prefix is an unbiased sample of the mixture, and two runs
that share documents read them in the same relative order.

Driver side (``stage``): one Spark job per batch of proxies computes every
copy's key for each proxy and keeps every copy of the proxy's whole epochs and,
of its last epoch, the copies whose key lies under a threshold of about twice
the budget's share of the mix. The kept copies and their text go to the
``proxy_copies`` table, each proxy's rows (``job``) in one file and grouped
inside it. A proxy whose kept
copies fall short of its budget gets its threshold widened by the shortfall, and
the table is written again. The copies under a threshold are, in key order, exactly the first
copies of the full order, so the threshold never changes the stream; and the
table holds about twice each proxy's budget, however large the mix.

Executor side (``read_stream``, where the proxy trains): only the proxy's rows
are read (row groups of other proxies are skipped by their statistics), sorted by
(epoch, key) and joined.

``STREAM_VERSION`` names this order in proxy fingerprints. Proxies stored under
the earlier order (a BLAKE2b key that every proxy computed in Python over every
copy of the mix) train once more; the two orders are equally valid samples.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from samplemix_spark.errors import TableError
from samplemix_spark.models.proxy_presets import SEPARATOR

log = logging.getLogger(__name__)

STREAM_TABLE = "proxy_copies"
STREAM_VERSION = "xxhash64-staged"
STAGED_COLUMNS = ["job", "epoch", "key", "doc_id", "replica", "text"]
PLAN_SCHEMA = "job long, candidate long, seed long, epoch int, cap long"
_KEY_MAX = 2**63 - 1
# The last epoch first keeps about this many times the bytes it needs, so one pass is nearly always enough.
_MARGIN = 2.0


@dataclass
class Stream:
    data: np.ndarray  # uint8, budget + 1 bytes
    epochs: float     # how many times the stream went through the mix


@dataclass(frozen=True)
class Copies:
    """Where a mix's copies (doc_id, replica, text) are read from: plain data, so it travels in a proxy job.

    ``files`` are an output table's files (``counts_files`` empty), or the
    documents table's files with ``candidate``'s rows of ``counts_files``.
    ``total_bytes`` is every copy's text plus separator as the driver measured it;
    0 when unknown, and then ``stage`` measures it.
    """

    files: tuple
    counts_files: tuple = ()
    candidate: int = -1
    total_bytes: int = 0


@dataclass(frozen=True)
class StreamRequest:
    """One proxy's stream: ``job`` names its rows in the staged table."""

    job: int
    copies: Copies
    seed: int
    budget_bytes: int


def key_cap(threshold: float) -> int:
    """The largest key kept under ``threshold``: a key k stands for (k + 2^63) / 2^64 in [0, 1)."""
    if threshold >= 1.0:
        return _KEY_MAX
    return math.ceil(threshold * 2.0**64) - 2**63 - 1


def epoch_plan(budget_bytes: int, total_bytes: int) -> tuple[int, int]:
    """(whole epochs, bytes wanted from the next epoch) of a stream of budget + 1 bytes over a mix of
    ``total_bytes``."""
    return divmod(budget_bytes + 1, total_bytes)


def _plan_rows(request: StreamRequest, total: int, threshold: float) -> list[tuple]:
    """``PLAN_SCHEMA`` rows: every whole epoch with no cap, and the last epoch capped at ``threshold``."""
    whole, partial = epoch_plan(request.budget_bytes, total)
    head = (request.job, request.copies.candidate, request.seed)
    rows = [(*head, epoch, _KEY_MAX) for epoch in range(whole)]
    return rows + ([(*head, whole, key_cap(threshold))] if partial else [])


# ---- driver side ----------------------------------------------------------------------------------------------


def stage(store, requests: list[StreamRequest]) -> dict[int, tuple[tuple, int]]:
    """Write the copies every request's stream needs to ``STREAM_TABLE`` in ``store`` (driver side; see the
    module doc). Returns job -> (the table's files, the mix's total bytes)."""
    if not requests:
        return {}
    measured = {copies: _total_bytes(store.spark, copies) for copies in {r.copies for r in requests}}
    totals = {r.job: measured[r.copies] for r in requests}
    thresholds = {r.job: min(1.0, _MARGIN * epoch_plan(r.budget_bytes, totals[r.job])[1] / totals[r.job])
                  for r in requests}
    while True:
        _write_kept(store, requests, totals, thresholds)
        short = _short_of_budget(store, requests, totals, thresholds)
        if not short:
            break
        log.info("proxy streams: %d of %d proxies need more of their last epoch; staging again", len(short),
                 len(requests))
        thresholds.update({job: min(1.0, thresholds[job] * widening) for job, widening in short.items()})
    from samplemix_spark.tables.files import snapshot_files

    files = tuple(snapshot_files(store, STREAM_TABLE))
    return {r.job: (files, totals[r.job]) for r in requests}


def _total_bytes(spark, copies: Copies) -> int:
    """``copies.total_bytes``, else one aggregate over the copies; refuses a mix with no copies or no text."""
    if not copies.files:
        raise TableError("the output table has no data files: the mix selected no documents")
    total = copies.total_bytes or _measured_bytes(spark, copies)
    if not total:
        raise TableError("the mix holds no text")
    return total


def copy_bytes(text):
    """A copy's bytes in a training stream, as a Spark column: its UTF-8 text and the separator."""
    from pyspark.sql import functions as F

    return F.octet_length(text) + len(SEPARATOR)


def output_copies_bytes(output) -> int:
    """Every copy's bytes of an output frame (doc_id, replica, text) (driver side: one aggregate row)."""
    from pyspark.sql import functions as F

    return int(output.agg(F.sum(copy_bytes("text")).alias("bytes")).collect()[0]["bytes"] or 0)


def counted_copies_bytes(counts, documents) -> dict[int, int]:
    """Every candidate's copies' bytes, from counts (candidate, doc_id, count) and the documents
    (driver side: a row per candidate)."""
    from pyspark.sql import functions as F

    sizes = documents.select("doc_id", copy_bytes("text").alias("bytes"))
    per_candidate = (counts.join(sizes, "doc_id").groupBy("candidate")
                     .agg(F.sum(F.col("count") * F.col("bytes")).alias("bytes")).collect())
    return {row["candidate"]: int(row["bytes"]) for row in per_candidate}


def _measured_bytes(spark, copies: Copies) -> int:
    from pyspark.sql import functions as F

    if not copies.counts_files:
        return output_copies_bytes(spark.read.parquet(*copies.files))
    counts = spark.read.parquet(*copies.counts_files).where(F.col("candidate") == copies.candidate)
    return counted_copies_bytes(counts, spark.read.parquet(*copies.files)).get(copies.candidate, 0)


def _write_kept(store, requests: list[StreamRequest], totals: dict, thresholds: dict) -> None:
    """One table of every request's kept copies, each proxy's rows in one file, grouped by proxy inside it."""
    groups: dict[tuple, list[tuple]] = {}
    for r in requests:
        groups.setdefault((r.copies.files, r.copies.counts_files), []).extend(
            _plan_rows(r, totals[r.job], thresholds[r.job]))
    frames = [_kept(store, files, counts, store.spark.createDataFrame(rows, PLAN_SCHEMA))
              for (files, counts), rows in sorted(groups.items())]
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    # Hash partitions, not ranges: a range partitioning would scan the mix once more to sample its bounds.
    spread = frame.repartition(min(len(requests), 1000), "job").sortWithinPartitions("job", "epoch", "key")
    store.write(spread, STREAM_TABLE)


def _kept(store, files: tuple, counts_files: tuple, plan):
    """(job, epoch, key, doc_id, replica, text) of the copies under each plan row's cap."""
    from pyspark.sql import functions as F

    from samplemix_spark.hashing import stream_key
    from samplemix_spark.mixing.output import explode_copies

    spark = store.spark
    key = stream_key(F.col("seed"), F.col("epoch"), F.col("doc_id"), F.col("replica"))
    replica = F.col("replica").cast("int").alias("replica")
    if not counts_files:
        copies = spark.read.parquet(*files).select("doc_id", replica, "text")
        keyed = copies.crossJoin(F.broadcast(plan.drop("candidate"))).withColumn("key", key)
        return keyed.where(F.col("key") <= F.col("cap")).select(*STAGED_COLUMNS)
    counts = spark.read.parquet(*counts_files).where(F.col("count") > 0).join(F.broadcast(plan), "candidate")
    keyed = explode_copies(counts, ["job", "seed", "epoch", "cap", "doc_id"]).withColumn("key", key)
    kept = keyed.where(F.col("key") <= F.col("cap")).select("job", "epoch", "key", "doc_id", replica)
    return kept.join(_kept_texts(store, files, kept), "doc_id").select(*STAGED_COLUMNS)


# Bytes a broadcast doc_id takes on the driver and in every task (a hashed id of 32 characters and its row).
_ID_BYTES = 64


def _kept_texts(store, files: tuple, kept):
    """(doc_id, text) of the documents the kept copies name.

    Only those documents' text should cross the network, so their ids (a narrow
    pass over the counts) are broadcast to filter the documents as they are read,
    when they fit in one driver read (``tables.driver_reads.chunk_limit``); the
    documents table would otherwise be shuffled whole, text and all, for a few
    thousand copies.
    """
    from pyspark.sql import functions as F

    from samplemix_spark.tables.driver_reads import chunk_limit

    texts = store.spark.read.parquet(*files).select("doc_id", "text")
    ids = kept.select("doc_id").distinct()
    if ids.count() * _ID_BYTES > chunk_limit(store):
        log.info("proxy streams: the kept copies name too many documents to broadcast; joining their text by a "
                 "shuffle")
        return texts
    return texts.join(F.broadcast(ids), "doc_id", "left_semi")


def _short_of_budget(store, requests: list[StreamRequest], totals: dict, thresholds: dict) -> dict[int, float]:
    """job -> how much to widen its threshold, for the jobs whose kept copies of their last epoch hold fewer
    bytes than it must give (one small aggregate): twice the shortfall's ratio, or 64x when none was kept."""
    from pyspark.sql import functions as F

    sizes = store.read(STREAM_TABLE).groupBy("job", "epoch").agg(F.sum(copy_bytes("text")).alias("bytes"))
    got = {(row["job"], row["epoch"]): int(row["bytes"]) for row in sizes.collect()}
    short = {}
    for r in requests:
        whole, partial = epoch_plan(r.budget_bytes, totals[r.job])
        kept = got.get((r.job, whole), 0)
        if partial and thresholds[r.job] < 1.0 and kept < partial:
            short[r.job] = _MARGIN * partial / kept if kept else 64.0
    return short


# ---- executor side --------------------------------------------------------------------------------------------


def read_stream(files: tuple, job: int, budget_bytes: int, total_bytes: int) -> Stream:
    """``budget_bytes + 1`` bytes of proxy ``job``'s stream from the staged table's ``files`` (see the module doc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = list(_job_rows(files, job))
    if not parts:
        raise TableError(f"proxy {job} has no staged copies in {STREAM_TABLE}: stage its stream first")
    rows = pa.concat_tables(parts)
    order = pc.sort_indices(rows, sort_keys=[("epoch", "ascending"), ("key", "ascending"),
                                             ("doc_id", "ascending"), ("replica", "ascending")])
    need, pieces, size = budget_bytes + 1, [], 0
    for text in rows.column("text").take(order).to_pylist():
        if size >= need:
            break
        pieces.append(text.encode("utf-8") + SEPARATOR)
        size += len(pieces[-1])
    if size < need:
        raise TableError(f"proxy {job}: its staged copies hold {size:,} bytes, fewer than its budget of {need:,}")
    return Stream(np.frombuffer(b"".join(pieces)[:need], dtype=np.uint8), need / total_bytes)


def _job_rows(files: tuple, job: int) -> Iterator:
    """Proxy ``job``'s rows, a row group at a time; row groups whose statistics exclude it are skipped unread."""
    import pyarrow.compute as pc

    from samplemix_spark.tables.files import parquet_files

    for handle in parquet_files(files):
        column = handle.metadata.schema.names.index("job")
        for group in range(handle.num_row_groups):
            stats = handle.metadata.row_group(group).column(column).statistics
            if stats is not None and stats.has_min_max and not stats.min <= job <= stats.max:
                continue
            rows = handle.read_row_group(group, columns=STAGED_COLUMNS)
            yield rows.filter(pc.equal(rows.column("job"), job))


def training_stream(store, copies: Copies, budget_bytes: int, seed: int, job: int = 0) -> Stream:
    """One proxy's stream, staged in ``store`` and read back on the driver (a single proxy, or a look at one)."""
    staged = stage(store, [StreamRequest(job, copies, seed, budget_bytes)])
    files, total = staged[job]
    return read_stream(files, job, budget_bytes, total)
