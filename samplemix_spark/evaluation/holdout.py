"""The held-out evaluation set, as the proxies see it. Driver side.

Ingest splits the held-out documents off into the ``holdout`` table (see
``ingest.documents.split_holdout``). Here that table becomes a fingerprint, which
every mix run records so that runs judged on different held-out sets are
refused, and per-domain byte strings the proxies are scored on.
"""

from __future__ import annotations

from pyspark.sql import Window
from pyspark.sql import functions as F

from samplemix_spark.errors import InputError
from samplemix_spark.tables import TableStore

# Documents are joined with a blank line, as in the training stream.
SEPARATOR = b"\n\n"


def fingerprint(store: TableStore) -> str:
    """``rows:hash-sum`` of the held-out (doc_id, text) pairs; ``none`` when the warehouse has no held-out table.

    A sum of per-row hashes does not depend on row order or partitioning. The
    hash is shifted to 31 bits so that the sum of up to 2^32 rows cannot overflow.
    """
    holdout = store.read_if_exists("holdout")
    if holdout is None:
        return "none"
    row = holdout.agg(F.count(F.lit(1)).alias("n"),
                      F.sum(F.shiftrightunsigned(F.xxhash64("doc_id", "text"), 33)).alias("h")).collect()[0]
    return f"{row['n']}:{int(row['h'] or 0):x}"


def required_fingerprint(store: TableStore, command: str) -> str:
    """The fingerprint of a held-out set that ``command`` needs; refuses a warehouse without one."""
    found = fingerprint(store)
    if found == "none" or found.startswith("0:"):
        raise InputError(f"{command} needs a held-out set: set ingest.holdout_fraction (or ingest.holdout_sources) "
                         "and rerun ingest and the stages after it")
    return found


def held_out_bytes(store: TableStore, max_bytes: int) -> dict[str, bytes]:
    """Per domain, held-out texts in a fixed hashed order, joined by a blank line, up to ``max_bytes``.

    The running byte total is computed in Spark, so only the chosen texts reach the driver.
    """
    holdout = store.read("holdout").withColumn("_key", F.xxhash64("doc_id"))
    size = F.octet_length("text") + F.lit(len(SEPARATOR))
    ordered = Window.partitionBy("domain").orderBy("_key", "doc_id").rowsBetween(Window.unboundedPreceding, 0)
    chosen = (holdout.withColumn("_end", F.sum(size).over(ordered))
              .filter(F.col("_end") - size < F.lit(max_bytes))
              .select("domain", "text", "_key", "doc_id").toPandas())
    chosen = chosen.sort_values(["domain", "_key", "doc_id"])
    return {domain: SEPARATOR.join(t.encode("utf-8") for t in group["text"])[:max_bytes]
            for domain, group in chosen.groupby("domain", sort=True)}
