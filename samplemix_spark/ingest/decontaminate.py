"""Held-out text stays out of training: exact and near copies of a held-out document become rejects.

An exact copy is a held-out row whose text hash is a training text's
(``drop_leaks``, reason ``holdout_duplicate``); every held-out row is checked
for one. A near copy is a held-out document of at least 13 words that training
text shares ``ingest.holdout_overlap`` of its 13-word shingles with (reason
``holdout_near_duplicate``). That check covers the held-out documents that can be
scored: each domain's first ``CHECK_ROOM`` x ``evaluate.max_eval_docs`` in the
order ``evaluate`` scores them (``holdout.first_in_order``; the room is for
near copies found among them). So its shingles are bounded by domains x
``max_eval_docs``, not by the held-out set, which on a lake can be tens of
millions of documents. The others stay held out, unchecked, and are never
scored: ``evaluate`` scores only documents of ``holdout_overlap``. Three tables
hold the check:

- ``holdout_shingles`` (doc_id, h): each checked document's distinct shingle
  hashes; a document too short for a shingle has one row with a null h, so the
  table lists every checked document;
- ``holdout_seen`` (h): the held-out hashes that some training text contains;
- ``holdout_overlap`` (doc_id, shingles, shared, share): computed from the two,
  one row per checked document (share 0 for one without shingles).

A full ingest writes all three from the sources (``reject_near_duplicates``).
A refresh (``refresh_overlap``) checks the documents that entered the checked
prefix (new held-out documents, or stored ones when ``max_eval_docs`` grew):
it appends their shingles, matches new training text against every held-out
hash and stored training text against the new candidates' hashes only (the one
read of stored text a refresh makes, and only when it brings new candidates),
appends the hashes newly seen and recomputes ``holdout_overlap``; so a stored
held-out document that new training text copies is found as well.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.hashing import ShingleSet, shingle_rows, stored_hash
from samplemix_spark.ingest.holdout import first_in_order
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import parquet_files, snapshot_files

# The join hint for a side that grows with the corpus: a sort-merge join, never a broadcast. A broadcast is
# collected through the driver, and a planner's size estimate can be far below the relation (2M text hashes
# estimated under the 10 MB threshold collected 92 MiB), past spark.driver.maxResultSize.
CORPUS_SIZED = "merge"
SHINGLE_SCHEMA = "doc_id string, h long"
# Up to this many distinct held-out shingle hashes (8 bytes each) travel in the training side's task closure.
BROADCAST_SHINGLES = 4_000_000
# Above that and up to this many (256 MB), each training-side task reads them from ``holdout_shingles``' files
# itself; above it the check is a shuffle semi-join. Training shingles are never collected.
TASK_SHINGLES = 32_000_000
# The near-copy check covers this many times ``evaluate.max_eval_docs`` held-out documents per domain, so that
# up to half of them can be near copies before ``evaluate`` runs short of checked documents to score.
CHECK_ROOM = 2
# The kept held-out rows of a full ingest, staged so the checked prefix is chosen without reading the sources again.
CANDIDATES = "holdout_candidates"


def kept(split: str) -> Column:
    """Rows that passed every check so far and fall on ``split`` ('train' or 'holdout')."""
    return F.col("reason").isNull() & (F.col("split") == split)


def mark(flagged: DataFrame, found: DataFrame, split: str, reason: str) -> DataFrame:
    """Kept ``split`` rows whose doc_id is in ``found`` (doc_id) get ``reason``."""
    ids = found.select(F.col("doc_id").alias("_found")).distinct()
    joined = flagged.join(ids, flagged["doc_id"] == ids["_found"], "left")
    hit = kept(split) & F.col("_found").isNotNull()
    return joined.withColumn("reason", F.when(hit, F.lit(reason)).otherwise(F.col("reason"))).drop("_found")


def drop_leaks(marked: DataFrame) -> DataFrame:
    """Held-out rows whose exact text is also a training document become ``holdout_duplicate`` rejects."""
    train = marked.filter(kept("train")).select(F.col("_text_hash").alias("_train_hash")).distinct()
    joined = marked.join(train.hint(CORPUS_SIZED), marked["_text_hash"] == train["_train_hash"], "left")
    leak = kept("holdout") & F.col("_train_hash").isNotNull()
    return joined.withColumn("reason", F.when(leak, F.lit("holdout_duplicate")).otherwise(F.col("reason"))) \
        .drop("_train_hash")


def _shingle_batches(batches):
    """mapInArrow function (executor side): (doc_id, text) -> one (doc_id, h) row per distinct shingle, and one
    (doc_id, null) row for a document without any (too short), so every document checked is listed."""
    import pyarrow as pa

    for batch in batches:
        rows, hashes = shingle_rows(batch.column("text"))
        bare = np.setdiff1d(np.arange(batch.num_rows), rows)
        ids = batch.column("doc_id").take(pa.array(np.concatenate([rows, bare]).astype(np.int64)))
        h = pa.concat_arrays([pa.array(hashes, pa.int64()), pa.nulls(len(bare), pa.int64())])
        yield pa.RecordBatch.from_arrays([ids, h], names=["doc_id", "h"])


def _matching_shingles(held: Union[np.ndarray, tuple]):
    """mapInArrow function over (doc_id, text) yielding only the shingle hashes found in ``held``.

    Built on the driver; the closure carries the held-out hashes (at most
    ``BROADCAST_SHINGLES``, 32 MB), or the data files of ``holdout_shingles`` to
    read them from (up to ``TASK_SHINGLES``), to every task, so a training
    document's shingles are matched where they are made and only the few shared
    ones leave the task, instead of one row per training shingle. Each task
    builds the lookup (``hashing.ShingleSet``) once, at its first batch.
    """
    def matched(batches):
        import pyarrow as pa

        lookup = None
        for batch in batches:
            lookup = lookup or (ShingleSet(held) if isinstance(held, np.ndarray) else _file_lookup(held))
            found = lookup.found(shingle_rows(batch.column("text"), distinct=False)[1])
            yield pa.RecordBatch.from_arrays([pa.array(found, pa.int64())], names=["h"])

    return matched


@functools.lru_cache(maxsize=1)
def _file_lookup(files: tuple) -> ShingleSet:
    """Executor side: the lookup of every non-null ``h`` of the ``holdout_shingles`` data files ``files``, read
    a row group at a time; kept for the next task a reused Python worker runs, so a worker reads them once."""
    parts = [np.zeros(0, dtype=np.int64)]
    for handle in parquet_files(files):
        for group in range(handle.num_row_groups):
            parts.append(handle.read_row_group(group, columns=["h"]).column("h").drop_null().to_numpy())
    return ShingleSet(np.concatenate(parts).astype(np.int64))


def shingles(rows: DataFrame) -> DataFrame:
    """(doc_id, h): the distinct shingle hashes of each (doc_id, text) row."""
    return rows.select("doc_id", "text").mapInArrow(_shingle_batches, SHINGLE_SCHEMA)


def seen_shingles(training: DataFrame, held: DataFrame, files: Sequence[str] = ()) -> DataFrame:
    """(h): the distinct hashes of ``held`` that the (doc_id, text) rows of ``training`` contain.

    Up to ``BROADCAST_SHINGLES`` distinct held-out hashes go to the training side's
    tasks in their closure; up to ``TASK_SHINGLES`` the tasks read them from
    ``files`` (``held``'s data files, when it is ``holdout_shingles`` as stored);
    either way the tasks keep only the shared ones. Above that, or without
    ``files``, every training shingle goes through a shuffle semi-join.
    """
    distinct = held.where(F.col("h").isNotNull()).select("h").distinct()
    n_distinct = distinct.count()
    if n_distinct == 0:
        return distinct
    text = training.select("doc_id", "text")
    if n_distinct <= BROADCAST_SHINGLES:
        hashes = np.sort(distinct.toPandas()["h"].to_numpy(dtype=np.int64))
        return text.mapInArrow(_matching_shingles(hashes), "h long").distinct()
    if files and n_distinct <= TASK_SHINGLES:
        return text.mapInArrow(_matching_shingles(tuple(files)), "h long").distinct()
    train = shingles(training).select("h")
    return train.join(distinct, "h", "left_semi").distinct()


def overlap_rows(held: DataFrame, seen: DataFrame) -> DataFrame:
    """Per checked document: its distinct shingles, how many training text shares, and the share (0 without any)."""
    marked = seen.select("h", F.lit(1).alias("_seen"))
    return (held.join(marked.hint(CORPUS_SIZED), "h", "left").groupBy("doc_id")
            .agg(F.count("h").alias("shingles"), F.count("_seen").alias("shared"))
            .withColumn("share", F.when(F.col("shingles") > 0, F.col("shared") / F.col("shingles"))
                        .otherwise(F.lit(0.0))))


def checked_rows(held_out: DataFrame, per_domain: int) -> DataFrame:
    """The held-out (doc_id, domain, text) rows the near-copy check covers (see the module doc).

    Rows without a domain yet (domains from a classifier are labelled after the
    check) are all covered: which of them are scored is not known here. Only the
    chosen doc_ids of the others (at most domains x ``per_domain``) are broadcast.
    """
    chosen = first_in_order(held_out.select("doc_id", "domain"), per_domain)
    labelled = held_out.where(F.col("domain").isNotNull()).join(F.broadcast(chosen), "doc_id", "left_semi")
    return labelled.unionByName(held_out.where(F.col("domain").isNull()))


def holdout_overlap(flagged: DataFrame, store: TableStore, per_domain: int) -> DataFrame:
    """Per checked held-out document: its distinct shingles and how many training text shares.

    The kept held-out rows are staged once (``holdout_candidates``), so the
    sources are read once for each side while the checked prefix is chosen
    from them; then the checked documents' shingles and the hashes training
    text shares are written (``holdout_shingles``, ``holdout_seen``).
    """
    store.write(flagged.filter(kept("holdout")).select("doc_id", "domain", "text"), CANDIDATES)
    store.write(shingles(checked_rows(store.read(CANDIDATES), per_domain)), "holdout_shingles")
    held = store.read("holdout_shingles")
    store.write(seen_shingles(flagged.filter(kept("train")), held, snapshot_files(store, "holdout_shingles")),
                "holdout_seen")
    return overlap_rows(held, store.read("holdout_seen"))


def near_copies(store: TableStore, overlap: float) -> DataFrame:
    """(doc_id) of the held-out documents whose share in ``holdout_overlap`` reaches ``overlap``."""
    return store.read("holdout_overlap").filter(F.col("share") >= F.lit(float(overlap))).select("doc_id")


def reject_near_duplicates(flagged: DataFrame, store: TableStore, overlap: float, per_domain: int) -> DataFrame:
    """Checked held-out documents (``per_domain`` per domain) that share ``overlap`` of their shingles with
    training text become ``holdout_near_duplicate`` rejects; every checked document's share is kept in
    ``holdout_overlap``."""
    store.write(holdout_overlap(flagged, store, per_domain), "holdout_overlap")
    return mark(flagged, near_copies(store, overlap), "holdout", "holdout_near_duplicate")


def refresh_overlap(flagged: DataFrame, store: TableStore, stored_training: DataFrame, stored_holdout: DataFrame,
                    per_domain: int) -> None:
    """Bring the three tables up to date for a refresh's rows (``flagged``) beside ``stored_training``
    (doc_id, text of the stored training documents) and ``stored_holdout`` (doc_id, domain, text); see the
    module doc.

    A warehouse written before ``holdout_seen`` existed has its stored training
    text matched against every held-out hash once.
    """
    stored_shingles = store.pinned("holdout_shingles")  # as before the append below, whenever it is read
    held_out = flagged.filter(kept("holdout")).select("doc_id", "domain", "text").unionByName(
        stored_holdout.select("doc_id", "domain", "text"))
    candidates = checked_rows(held_out, per_domain).join(stored_shingles.select("doc_id").distinct(), "doc_id",
                                                         "left_anti")
    store.append(shingles(candidates), "holdout_shingles")
    held = store.read("holdout_shingles")
    first = not store.exists("holdout_seen")
    new_held = held if first else held.join(candidates.select("doc_id"), "doc_id", "left_semi")
    seen = seen_shingles(flagged.filter(kept("train")), held, snapshot_files(store, "holdout_shingles"))
    if new_held.limit(1).count():
        seen = seen.unionByName(seen_shingles(stored_training, new_held))
    if first:
        store.write(seen.distinct(), "holdout_seen")
    else:
        store.append(seen.distinct().join(store.read("holdout_seen"), "h", "left_anti"), "holdout_seen")
    store.write(overlap_rows(held, store.read("holdout_seen")), "holdout_overlap")


def copied_holdout(new_training: DataFrame, holdout: DataFrame, store: TableStore, exact_copies: bool,
                   overlap: Optional[float]) -> DataFrame:
    """(doc_id, reason) of stored held-out documents (doc_id, _stored_hash) that a refresh's training rows copy:
    with ``exact_copies``, exactly (their text hash is a new training text's); with ``overlap``, nearly (from the
    updated ``holdout_overlap``)."""
    hashes = new_training.select(stored_hash(F.col("_text_hash")).alias("_h")).distinct()
    exact = (holdout.join(hashes, holdout["_stored_hash"] == hashes["_h"], "left_semi") if exact_copies
             else holdout.limit(0)).select("doc_id", F.lit("holdout_duplicate").alias("reason"))
    if overlap is None:
        return exact
    near = (holdout.select("doc_id").join(near_copies(store, overlap), "doc_id", "left_semi")
            .join(exact.select("doc_id"), "doc_id", "left_anti")
            .select("doc_id", F.lit("holdout_near_duplicate").alias("reason")))
    return exact.unionByName(near)
