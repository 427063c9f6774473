"""The held-out table's fingerprint, kept by ingest, which owns the table. Driver side.

Every mix run records the fingerprint of the held-out set its documents were
split from, so that runs judged on different held-out sets are refused.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from samplemix_spark.errors import InputError
from samplemix_spark.tables import TableStore


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
