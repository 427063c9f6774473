"""What a refresh does with the rows it reads: which are new, which are stored already, what to count.

A refresh reads only new and changed source files (``source_files``). A kept
row whose doc_id is stored (in ``documents`` or ``holdout``) is:

- ``already stored`` when it comes from a file read again (a changed file, a
  Delta or catalog source): the same document delivered again;
- a ``duplicate_text`` / ``duplicate_id`` reject when it comes from a new file,
  as a full run over old and new files would reject the later copy.

Either way the stored version stays; if the text or domain differs, a warning
says how many (``samplemix run --force`` takes the new ones).
"""

from __future__ import annotations

import logging
from functools import reduce
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.errors import InputError
from samplemix_spark.hashing import stored_hash
from samplemix_spark.ingest.decontaminate import CORPUS_SIZED, kept
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
# The internal reason of a row that is the stored document read again: counted, never written.
STORED = "_already_stored"


def stored_keys(documents: Optional[DataFrame], holdout: Optional[DataFrame]) -> DataFrame:
    """(doc_id, _stored_domain, _stored_hash) of the stored training and/or held-out documents.

    ``documents`` carries its text hash (``text_hash``; computed here for a
    warehouse written before it was stored); the held-out set is small, so its
    hashes are computed.
    """
    frames = []
    if documents is not None:
        hashed = (F.col("text_hash") if "text_hash" in documents.columns
                  else stored_hash(F.sha2(F.col("text"), 256)))
        frames.append(documents.select("doc_id", F.col("domain").alias("_stored_domain"),
                                       hashed.alias("_stored_hash")))
    if holdout is not None:
        frames.append(holdout.select("doc_id", F.col("domain").alias("_stored_domain"),
                                     stored_hash(F.sha2(F.col("text"), 256)).alias("_stored_hash")))
    return reduce(DataFrame.unionByName, frames).dropDuplicates(["doc_id"])


def read_again(reread: list[str]) -> Column:
    """Rows from a source read again: a changed file, or a Delta or catalog source (named by the engine)."""
    engine = F.col("source_file").isNull() | F.col("source_file").startswith("table:")
    return engine | F.col("source_file").isin(reread) if reread else engine


def mark_stored(flagged: DataFrame, keys: DataFrame, reread: list[str], duplicate: str) -> DataFrame:
    """Kept rows with a stored doc_id get ``STORED`` or ``duplicate`` (see the module doc), and ``_changed``
    says whether their text or domain differs from the stored version."""
    joined = flagged.join(keys.hint(CORPUS_SIZED), "doc_id", "left")
    hit = F.col("reason").isNull() & F.col("_stored_hash").isNotNull()
    # A null domain (one a classifier or the clusters give later) is not a change.
    differs = (F.col("domain") != F.col("_stored_domain")) | (stored_hash(F.col("_text_hash")) != F.col("_stored_hash"))
    changed = hit & F.coalesce(differs, F.lit(False))
    reason = F.when(hit & read_again(reread), F.lit(STORED)).when(hit, F.lit(duplicate)).otherwise(F.col("reason"))
    return (joined.withColumn("_changed", changed).withColumn("reason", reason)
            .drop("_stored_domain", "_stored_hash"))


def copies_of_stored_training(flagged: DataFrame, documents: DataFrame) -> DataFrame:
    """(doc_id) of kept held-out rows whose exact text is a stored training document's.

    Needed where the split is not a function of the text alone (``ingest.id_column``,
    ``ingest.holdout_sources``); with hashed ids such a row has a stored doc_id.
    """
    hashes = documents.select(F.col("text_hash").alias("_train_hash"))
    held = flagged.filter(kept("holdout")).select("doc_id", stored_hash(F.col("_text_hash")).alias("_h"))
    return held.join(hashes.hint(CORPUS_SIZED), held["_h"] == hashes["_train_hash"], "left_semi").select("doc_id")


def count_rows(flagged: DataFrame) -> dict[str, int]:
    """In one pass: new training documents, new held-out ones, rows already stored, rejects, and how many
    stored documents arrived with another text or domain (warned about)."""
    row = flagged.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(kept("train").cast("long")).alias("new"),
        F.sum(kept("holdout").cast("long")).alias("holdout"),
        F.sum((F.col("reason") == STORED).cast("long")).alias("stored"),
        F.sum(F.col("_changed").cast("long")).alias("changed")).collect()[0]
    counts = {key: int(row[key] or 0) for key in ("rows", "new", "holdout", "stored", "changed")}
    counts["rejects"] = counts["rows"] - counts["new"] - counts["holdout"] - counts["stored"]
    if counts["changed"]:
        log.warning("ingest: %d stored documents have a different text or domain in the sources now; "
                    "the refresh keeps the stored versions (samplemix run --force ingests the new ones)",
                    counts["changed"])
    return counts


def write_increment(store: TableStore, new_ids: DataFrame) -> None:
    """``increment``: these doc_ids, merged with any a killed refresh left behind, so all get scored."""
    pending = store.read_if_exists("increment")
    store.write((new_ids if pending is None else new_ids.unionByName(pending)).distinct(), "increment")


def check_conservation(n_input: int, n_accounted: int, detail: str) -> None:
    if n_accounted != n_input:
        raise InputError(f"ingest lost rows: {n_input} in, {detail}")
