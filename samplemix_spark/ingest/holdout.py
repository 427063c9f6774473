"""What ingest keeps about the held-out table it owns: its fingerprint and the settings of its split.

Every mix run records the fingerprint of the held-out set its documents were
split from, so that runs judged on different held-out sets are refused.

The split's settings (fraction, seed, held-out sources, hash scheme) are
recorded in ``holdout_split`` when ingest writes the table. An incremental
refresh keeps every stored document, so it may only add documents under the
same split: with other settings a stored training document could be held out
now (or the reverse). ``check_split_unchanged`` refuses that refresh and names
the setting; ``samplemix run --resplit`` re-splits, keeping the scores and
embeddings of the documents that stay in training.

The same record keeps the version of the rules that turn a source id into a
``doc_id`` (``ID_READER``). When those rules change, a refresh could give a stored
document a new doc_id and ingest it twice, so a refresh of a warehouse whose ids
came from ``ingest.id_column`` under other rules is refused, asking for ``--force``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Optional

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from samplemix_spark.config import IngestConfig
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import HOLDOUT_ORDER, doc_key
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
SPLIT_SCHEMA = ("holdout_fraction double, holdout_seed long, holdout_sources string, hash_scheme string, "
                "id_reader long, holdout_docs long, checked_per_domain long")
# 2: a Parquet number used as an id is its shortest text (float64 7.0 -> "7.0", was "7"), and a JSON array
# or object is an invalid_id reject (was its compact JSON). 1: before that (no id_reader column).
ID_READER = 2
# Standard deviations of room above ``per_domain`` in the share of a domain's keys that is ranked.
_ROOM_SIGMAS = 8


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
        raise InputError(f"{command} needs a held-out set: set ingest.holdout_fraction, ingest.holdout_docs or "
                         "ingest.holdout_sources, and rerun ingest and the stages after it")
    return found


def split_settings(ingest: IngestConfig, hash_scheme: str) -> dict:
    """The settings that decide which documents are held out, keyed by their config names."""
    return {"ingest.holdout_fraction": float(ingest.holdout_fraction or 0.0),
            "ingest.holdout_docs": int(ingest.holdout_docs or 0),
            "ingest.holdout_seed": int(ingest.holdout_seed),
            "ingest.holdout_sources": json.dumps(sorted(str(s) for s in ingest.holdout_sources or [])),
            "tables.hash_scheme": hash_scheme}


def record_split(store: TableStore, settings: dict, checked_per_domain: int) -> None:
    """Write the ``holdout_split`` table: the settings the stored held-out table was split with, and how many
    held-out documents per domain the near-copy check covers."""
    row = (settings["ingest.holdout_fraction"], settings["ingest.holdout_seed"], settings["ingest.holdout_sources"],
           settings["tables.hash_scheme"], ID_READER, settings["ingest.holdout_docs"], checked_per_domain)
    store.write(store.spark.createDataFrame([row], SPLIT_SCHEMA), "holdout_split")


def checked_documents(store: TableStore) -> Optional[DataFrame]:
    """(doc_id) of the held-out documents the near-copy check covered (``holdout_overlap``), the only ones that
    may be scored; None for a warehouse whose check covered every held-out document (written before the check
    was bounded: its ``holdout_overlap`` leaves out the documents too short for a shingle)."""
    split = store.read_if_exists("holdout_split")
    if split is None or "checked_per_domain" not in split.columns or not store.exists("holdout_overlap"):
        return None
    return store.read("holdout_overlap").select("doc_id")


def check_split_unchanged(store: TableStore, settings: dict, id_column: str | None = None) -> None:
    """Refuse, naming the setting, when the stored split was made with other settings, or the stored ids from
    ``id_column`` were read under other rules (see the module doc)."""
    stored = store.read_if_exists("holdout_split")
    row = stored.collect()[0] if stored is not None else None
    reader = int(row["id_reader"]) if row is not None and "id_reader" in row.asDict() else 1
    if id_column and reader != ID_READER:
        raise InputError(f"the ids in this warehouse were read from ingest.id_column under older rules (version "
                         f"{reader}, now {ID_READER}: Parquet numbers keep their shortest text and JSON arrays or "
                         "objects are rejected), so a refresh could ingest a stored document again under a new "
                         "doc_id; rebuild with `samplemix run --force`")
    if row is None:
        log.warning("ingest: the warehouse records no held-out split settings (written by an older version); "
                    "taking the configured ones as those of the stored split")
        return
    recorded = {"ingest.holdout_fraction": row["holdout_fraction"], "ingest.holdout_seed": row["holdout_seed"],
                "ingest.holdout_docs": int(row.asDict().get("holdout_docs") or 0),
                "ingest.holdout_sources": row["holdout_sources"], "tables.hash_scheme": row["hash_scheme"]}
    changed = [f"{key} {recorded[key]} -> {value}" for key, value in settings.items() if recorded[key] != value]
    if changed:
        raise InputError(f"the held-out split changed since it was made ({'; '.join(changed)}): a refresh would "
                         "move documents across the split. Re-split with `samplemix run --resplit` (keeps the "
                         "scores and embeddings of documents that stay in training), or restore the settings")


def first_in_order(rows: DataFrame, per_domain: int) -> DataFrame:
    """(doc_id) of each domain's first ``per_domain`` (doc_id, domain) rows in ``HOLDOUT_ORDER``: the held-out
    documents that are scored (``evaluation.holdout``) and those the near-copy check covers
    (``decontaminate``). Executor-side work; the driver collects one count per domain.

    The order key is BLAKE2b, which Spark cannot compute natively, so a pandas UDF
    writes it as 16 hex digits (which sort as the number). A domain's keys are
    uniform, so its first ``per_domain`` lie below a share sized from its count
    (``per_domain`` plus about eight standard deviations of room) but for a chance
    below 2e-11 (below 1e-14 from ``per_domain`` 256 up); the rank is taken over
    the keys below that share alone, so no task sorts a whole large domain. Rows
    without a domain are left out.
    """
    rows = rows.where(F.col("domain").isNotNull())
    # Counted before the key exists, so the count pass runs no Python UDF on any engine.
    counts = {r["domain"]: r["n"] for r in rows.groupBy("domain").agg(F.count(F.lit(1)).alias("n")).collect()}
    keyed = rows.select("doc_id", "domain", _order_key(F.col("doc_id")).alias("_key"))
    limits = F.create_map(*(F.lit(x) for domain, n in counts.items() for x in (domain, _key_limit(n, per_domain))))
    limit = limits[F.col("domain")] if counts else F.lit("g")
    ranked = keyed.where(F.col("_key") < limit).withColumn(
        "_rank", F.row_number().over(Window.partitionBy("domain").orderBy("_key", "doc_id")))
    return ranked.where(F.col("_rank") <= per_domain).select("doc_id")


def _key_limit(n: int, per_domain: int) -> str:
    """The hex key below which a domain of ``n`` documents keeps about ``per_domain`` plus room (all if few)."""
    share = (per_domain + _ROOM_SIGMAS * math.sqrt(per_domain) + 16) / max(n, 1)
    return "g" if share >= 1 else f"{int(share * 2**64):016x}"


def _order_key(doc_id: Column) -> Column:
    @F.pandas_udf("string")
    def keys(ids: pd.Series) -> pd.Series:
        return pd.Series([f"{doc_key(HOLDOUT_ORDER, d):016x}" for d in ids], dtype=object)

    return keys(doc_id)
