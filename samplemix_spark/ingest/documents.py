"""Ingest: raw sources -> ``documents`` table, bad rows -> ``rejects`` table.

Every input row ends up in exactly one of the two tables; the step checks that
input rows = kept + rejected and prints both counts. JSONL and Parquet files are
read by ``reader.py`` (the same rows on every engine); a line that is not JSON or
not UTF-8 is a reject with the file and line it came from, never a failed job.
Before any table is written, one aggregate over the flagged rows checks that
every mapped column exists somewhere with the right type and that no more than
``ingest.max_reject_share`` of the rows are rejected (a wrong format or column
mapping, not bad rows).

``doc_id`` is the configured id column, or the first 128 bits of the SHA-256 of
the text. With hashed ids a repeated text is an exact duplicate and is rejected
as ``duplicate_text``; with given ids a repeated id is rejected as
``duplicate_id``. Among rows that share an id the kept one is chosen by text hash
and domain, so the choice does not depend on file order or partitioning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from functools import reduce
from typing import Optional

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from samplemix_spark.config import IngestConfig, SampleMixConfig, score_column_name
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import HOLDOUT_SPLIT, SHINGLE_WORDS, ShingleSet, shingle_rows, uniform
from samplemix_spark.ingest.domain_labels import check_domain_classifier, classified, label_domains, labelled
from samplemix_spark.ingest.holdout import check_split_unchanged, record_split, split_settings
from samplemix_spark.ingest.reader import RAW_SCHEMA, Mapping, file_error_message, list_units, read_units
from samplemix_spark.ingest.sources import map_columns, read_sources
from samplemix_spark.ingest.tokens import token_count_column, tokenizer_file
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import read_table, split_sources

log = logging.getLogger(__name__)

# Whitespace characters treated alike by every engine's regex dialect.
_BLANK = "^[ \t\n\r\f\x0b\xa0\u2028\u2029\u3000]*$"


def _is_blank(column: Column) -> Column:
    return column.rlike(_BLANK)


def _invalid_score(column: Column) -> Column:
    return column.isNull() | F.isnan(column) | (F.abs(column) == float("inf"))


def reject_reason(cfg: SampleMixConfig) -> Column:
    """The first rule a row breaks, or null for a row that is kept (duplicates come later)."""
    ingest = cfg.ingest
    reason = (F.when(F.col("parse_error").isNotNull(), F.col("parse_error"))
              .when(F.col("bad_text"), "invalid_text")
              .when(F.col("text").isNull(), "null_text")
              .when(_is_blank(F.col("text")), "empty_text"))
    if not labelled(cfg):  # a labelled corpus gets its domains after these checks
        reason = reason.when(F.col("domain").isNull() | _is_blank(F.col("domain")), "null_domain")
    if ingest.id_column:
        reason = reason.when(F.col("source_id").isNull() | _is_blank(F.col("source_id")), "null_id")
    if ingest.quality_column:
        reason = reason.when(_invalid_score(F.col("q_input")), "invalid_quality")
    if ingest.diversity_column:
        reason = reason.when(_invalid_score(F.col("d_input")), "invalid_diversity")
    for i, name in enumerate(ingest.score_columns):
        reason = reason.when(_invalid_score(F.col("extra")[i]), f"invalid_{name}")
    return reason


# The join hint for a side that grows with the corpus: a sort-merge join, never a broadcast. A broadcast is
# collected through the driver, and a planner's size estimate can be far below the relation (2M text hashes
# estimated under the 10 MB threshold collected 92 MiB), past spark.driver.maxResultSize.
CORPUS_SIZED = "merge"


def flag_rows(raw: DataFrame, cfg: SampleMixConfig) -> DataFrame:
    """Add ``doc_id`` and ``reason`` (null = kept) to the mapped source rows."""
    text_hash = F.sha2(F.col("text"), 256)
    flagged = raw.select(
        "*",
        text_hash.alias("_text_hash"),
        F.coalesce(F.col("source_id"), F.substring(text_hash, 1, 32)).alias("doc_id"),
        reject_reason(cfg).alias("reason"),
    )
    valid = flagged.filter(F.col("reason").isNull())
    # Ties (the same text and domain twice) are broken by where the row came from, so every
    # engine keeps the same copy and rejects the same others.
    rank = F.row_number().over(Window.partitionBy("doc_id").orderBy("_text_hash", "domain", "source_file",
                                                                     "source_line"))
    duplicate = "duplicate_id" if cfg.ingest.id_column else "duplicate_text"
    valid = valid.withColumn("reason", F.when(rank > 1, F.lit(duplicate)))
    return valid.unionByName(flagged.filter(F.col("reason").isNotNull()))


def split_holdout(flagged: DataFrame, ingest: IngestConfig, hash_scheme: str,
                  thresholds: Optional[DataFrame] = None) -> DataFrame:
    """Add ``split`` ('train' or 'holdout'): a hashed share of each domain's kept rows is held out.

    The choice is ``xxhash64(doc_id, holdout_seed, "holdout-split") < threshold``,
    separate from the mixing seed, so the held-out set does not move when mixing
    settings change. The threshold is ``holdout_fraction``, or with
    ``holdout_docs`` each domain's own (``thresholds``, from ``domain_thresholds``).
    """
    u = uniform(F.col("doc_id"), ingest.holdout_seed, HOLDOUT_SPLIT, hash_scheme)
    if ingest.holdout_docs:
        named = F.broadcast(thresholds.select(F.col("domain").alias("_t_domain"), F.col("threshold").alias("_t")))
        flagged = flagged.join(named, flagged["domain"].eqNullSafe(named["_t_domain"]), "left").drop("_t_domain")
        threshold = F.coalesce(F.col("_t"), F.lit(0.0))
    else:
        threshold = F.lit(float(ingest.holdout_fraction))
    chosen = F.col("reason").isNull() & (u < threshold)
    marked = flagged.withColumn("split", F.when(chosen, "holdout").otherwise("train")).drop("_t")
    # With hashed ids a repeated text is already a duplicate_text reject: nothing can leak.
    return drop_leaks(marked) if ingest.id_column and ingest.holds_out else marked


def domain_thresholds(flagged: DataFrame, holdout_docs: int, stored: Optional[DataFrame] = None) -> DataFrame:
    """(domain, documents, threshold): the hashed share of each domain's valid rows that holds out about
    ``holdout_docs`` of them (all of a smaller domain).

    A refresh passes the ``stored`` thresholds: a domain keeps the one it was split
    with, so no stored document moves across the split as the domain grows; only a
    new domain gets one from its count now. The number held out is binomial around
    ``holdout_docs`` (about its square root either way), the price of a choice that
    each row makes alone, on every engine and partitioning.
    """
    counts = (flagged.filter(F.col("reason").isNull()).groupBy("domain")
              .agg(F.count(F.lit(1)).alias("documents")))
    fresh = counts.withColumn("threshold", F.least(F.lit(1.0), F.lit(float(holdout_docs)) / F.col("documents")))
    if stored is None:
        return fresh
    kept = stored.select(F.col("domain").alias("_s_domain"), F.col("threshold").alias("_s_threshold"))
    merged = fresh.join(kept, fresh["domain"].eqNullSafe(kept["_s_domain"]), "full")
    return merged.select(F.coalesce(F.col("domain"), F.col("_s_domain")).alias("domain"),
                         F.coalesce(F.col("documents"), F.lit(0)).cast("long").alias("documents"),
                         F.coalesce(F.col("_s_threshold"), F.col("threshold")).alias("threshold"))


def drop_leaks(marked: DataFrame) -> DataFrame:
    """Held-out rows whose exact text is also a training document become ``holdout_duplicate`` rejects."""
    kept = F.col("reason").isNull()
    train = (marked.filter(kept & (F.col("split") == "train"))
             .select(F.col("_text_hash").alias("_train_hash")).distinct())
    joined = marked.join(train.hint(CORPUS_SIZED), marked["_text_hash"] == train["_train_hash"], "left")
    leak = kept & (F.col("split") == "holdout") & F.col("_train_hash").isNotNull()
    return joined.withColumn("reason", F.when(leak, F.lit("holdout_duplicate")).otherwise(F.col("reason"))) \
        .drop("_train_hash")


def _write_increment(store: TableStore, new_ids: DataFrame) -> None:
    """``increment``: these doc_ids, merged with any a killed refresh left behind, so all get scored."""
    pending = store.read_if_exists("increment")
    store.write((new_ids if pending is None else new_ids.unionByName(pending)).distinct(), "increment")


def reject_stored_ids(flagged: DataFrame, stored: DataFrame) -> DataFrame:
    """Held-out rows whose doc_id is a stored training document become ``holdout_duplicate`` rejects.

    A refresh keeps every stored document, so a held-out row with a stored id (a
    held-out source that repeats a training document) must not reach ``holdout``.
    """
    ids = stored.select(F.col("doc_id").alias("_stored_id"))
    joined = flagged.join(ids.hint(CORPUS_SIZED), flagged["doc_id"] == ids["_stored_id"], "left")
    leak = F.col("reason").isNull() & (F.col("split") == "holdout") & F.col("_stored_id").isNotNull()
    return joined.withColumn("reason", F.when(leak, F.lit("holdout_duplicate")).otherwise(F.col("reason"))) \
        .drop("_stored_id")


SHINGLE_SCHEMA = "doc_id string, h long"
# Up to this many distinct held-out shingle hashes (8 bytes each) are broadcast to the training side;
# above it the check is a shuffle semi-join. Training shingles are never collected.
BROADCAST_SHINGLES = 4_000_000


def _shingle_batches(batches):
    """mapInArrow function (executor side): (doc_id, text) -> one (doc_id, h) row per distinct shingle."""
    import pyarrow as pa

    for batch in batches:
        rows, hashes = shingle_rows(batch.column("text"))
        yield pa.RecordBatch.from_arrays([batch.column("doc_id").take(pa.array(rows)), pa.array(hashes, pa.int64())],
                                         names=["doc_id", "h"])


def _matching_shingles(held: np.ndarray):
    """mapInArrow function over (doc_id, text) yielding only the shingle hashes found in ``held``.

    Built on the driver; the closure carries the held-out hashes (at most
    ``BROADCAST_SHINGLES``, 32 MB) to every task, so a training document's
    shingles are matched where they are made and only the few shared ones leave
    the task, instead of one row per training shingle. Each task builds the
    lookup (``hashing.ShingleSet``) once, at its first batch.
    """
    def matched(batches):
        import pyarrow as pa

        lookup = None
        for batch in batches:
            lookup = lookup or ShingleSet(held)
            found = lookup.found(shingle_rows(batch.column("text"), distinct=False)[1])
            yield pa.RecordBatch.from_arrays([pa.array(found, pa.int64())], names=["h"])

    return matched


def holdout_overlap(flagged: DataFrame, store: TableStore) -> DataFrame:
    """Per kept held-out document of at least 13 words: its distinct shingles and how many training text shares.

    The held-out shingles are written once (``holdout_shingles``), so the sources
    are read once for them and once for the training side. Up to
    ``BROADCAST_SHINGLES`` distinct held-out hashes go to the training side's
    tasks, which keep only the shared ones; above it, every training shingle goes
    through a shuffle semi-join.
    """
    kept = F.col("reason").isNull()
    store.write(flagged.filter(kept & (F.col("split") == "holdout")).select("doc_id", "text")
                .mapInArrow(_shingle_batches, SHINGLE_SCHEMA), "holdout_shingles")
    held = store.read("holdout_shingles")
    training = flagged.filter(kept & (F.col("split") == "train")).select("doc_id", "text")
    distinct = held.select("h").distinct()
    n_distinct = distinct.count()
    if n_distinct == 0:
        seen = distinct.withColumn("_seen", F.lit(1))
    elif n_distinct <= BROADCAST_SHINGLES:
        hashes = np.sort(distinct.toPandas()["h"].to_numpy(dtype=np.int64))
        seen = (training.mapInArrow(_matching_shingles(hashes), "h long").distinct()
                .withColumn("_seen", F.lit(1)))
    else:
        train = training.mapInArrow(_shingle_batches, SHINGLE_SCHEMA).select("h")
        seen = train.join(distinct, "h", "left_semi").distinct().withColumn("_seen", F.lit(1))
    return (held.join(seen.hint(CORPUS_SIZED), "h", "left").groupBy("doc_id")
            .agg(F.count(F.lit(1)).alias("shingles"), F.count("_seen").alias("shared"))
            .withColumn("share", F.col("shared") / F.col("shingles")))


def reject_near_duplicates(flagged: DataFrame, store: TableStore, overlap: float) -> DataFrame:
    """Held-out documents that share ``overlap`` of their shingles with training text become
    ``holdout_near_duplicate`` rejects; every held-out document's share is kept in ``holdout_overlap``."""
    store.write(holdout_overlap(flagged, store), "holdout_overlap")
    near = (store.read("holdout_overlap").filter(F.col("share") >= F.lit(float(overlap)))
            .select("doc_id", F.lit(True).alias("_near")))
    joined = flagged.join(near, "doc_id", "left")
    leak = F.col("reason").isNull() & (F.col("split") == "holdout") & F.col("_near").isNotNull()
    return (joined.withColumn("reason", F.when(leak, F.lit("holdout_near_duplicate")).otherwise(F.col("reason")))
            .drop("_near"))


def holdout_rows(flagged: DataFrame) -> DataFrame:
    """The ``holdout`` table's rows: doc_id, domain, text."""
    return flagged.filter(F.col("reason").isNull() & (F.col("split") == "holdout")).select("doc_id", "domain", "text")


def training_rows(flagged: DataFrame) -> DataFrame:
    return flagged.filter(F.col("reason").isNull() & (F.col("split") == "train"))


@contextlib.contextmanager
def _file_errors():
    """Turn a reader's file-level failure, raised on an executor, into a one-line InputError."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - engines wrap executor errors in different classes
        message = file_error_message(exc)
        if message is None:
            raise
        raise InputError(message) from None


def read_raw(spark: SparkSession, ingest: IngestConfig, read_domain: bool = True) -> DataFrame:
    """Source rows mapped onto the reader's schema (``reader.RAW_SCHEMA``), for every source format.

    JSONL and Parquet files go through the project's reader; Delta paths and ``table:`` sources through
    the engine's, whose schema is checked up front. Without ``read_domain`` (``domain.method:
    classifier``) the domain column is not read: domains come later.
    """
    paths, tables = split_sources(ingest.sources)
    frames = []
    if paths and ingest.format != "delta":
        mapping = Mapping(ingest.text_column, ingest.domain_column if read_domain else None, ingest.id_column,
                          ingest.quality_column, ingest.diversity_column, tuple(ingest.score_columns),
                          tuple(ingest.text_columns))
        frames.append(read_units(spark, list_units(paths, ingest.format), mapping))
    elif paths:
        frames.append(_engine_rows(read_sources(spark, paths, "delta"), ingest, read_domain, None))
    frames += [_engine_rows(read_table(spark, name), ingest, read_domain, f"table:{name}") for name in tables]
    return reduce(DataFrame.unionByName, frames)


def _engine_rows(frame: DataFrame, ingest: IngestConfig, read_domain: bool, source: Optional[str]) -> DataFrame:
    """A frame read by the engine (Delta, a catalog table) as ``RAW_SCHEMA`` rows; ``source`` names their origin."""
    mapped = map_columns(frame, ingest, read_domain)
    present = {"has_text": True, "has_domain": read_domain, "has_id": bool(ingest.id_column),
               "has_q": bool(ingest.quality_column), "has_d": bool(ingest.diversity_column)}
    if ingest.score_columns:
        n = len(ingest.score_columns)
        mapped = mapped.withColumn("has_extra", F.array(*[F.lit(True)] * n)).withColumn(
            "bad_extra", F.array(*[F.lit(False)] * n))
    if ingest.text_columns:
        mapped = mapped.withColumn("has_labels", F.array(*[F.lit(True)] * len(ingest.text_columns)))
    columns = []
    for field in RAW_SCHEMA:
        if field.name in mapped.columns:
            columns.append(F.col(field.name))
        elif field.name in present:
            columns.append(F.lit(present[field.name]).alias(field.name))
        elif field.name == "source_file":
            columns.append(F.lit(source).cast("string").alias(field.name))
        else:
            flag = field.name.startswith("bad_") and field.type == pa.bool_()
            columns.append(F.lit(False if flag else None).cast(_spark_type(field.type)).alias(field.name))
    return mapped.select(*columns)


def _spark_type(arrow_type) -> str:
    if pa.types.is_list(arrow_type):
        return f"array<{_spark_type(arrow_type.value_type)}>"
    return {pa.string(): "string", pa.int64(): "long", pa.float64(): "double", pa.bool_(): "boolean"}[arrow_type]


# What a large reject share most likely means, by its most common reason.
_LIKELY_CAUSE = {
    "malformed_json": "the files are not JSON Lines: check ingest.format",
    "invalid_utf8": "the files are not UTF-8 text: check ingest.format and the files' encoding",
    "null_text": "the text column is empty in most records: check ingest.text_column",
    "invalid_text": "the text column holds non-text values: check ingest.text_column",
    "empty_text": "the text column is blank in most records: check ingest.text_column",
    "null_domain": "the domain column is missing in most records: check ingest.domain_column",
    "null_id": "the id column is missing in most records: check ingest.id_column",
    "invalid_id": "the id column holds arrays, objects or non-UTF-8 bytes in most records: check ingest.id_column",
    "invalid_domain": ("the domain column holds arrays, objects or non-UTF-8 bytes in most records: "
                       "check ingest.domain_column"),
    "duplicate_id": "most ids repeat: check that ingest.id_column names a unique id",
    "duplicate_text": "most texts repeat: check ingest.sources for the same files listed twice",
    "invalid_quality": "the quality column is not numeric in most records: check ingest.quality_column",
    "invalid_diversity": "the diversity column is not numeric in most records: check ingest.diversity_column",
}


def check_flagged(summary: list, ingest: IngestConfig, read_domain: bool = True) -> int:
    """Check column presence and the reject share from ``summarise``'s rows; returns the input row count."""
    extras = [f"{flag}_{i}" for i in range(len(ingest.score_columns)) for flag in ("has_extra", "bad_extra")]
    extras += [f"has_labels_{i}" for i in range(len(ingest.text_columns))]
    total = {key: sum(int(row[key] or 0) for row in summary)
             for key in ("rows", "has_text", "bad_text", "has_domain", "has_id", "has_q", "bad_q", "has_d", "bad_d",
                         *extras)}
    n_input = total["rows"]
    if n_input == 0:
        raise InputError(f"ingest sources {ingest.sources} hold no rows")
    fields = next((row["fields"] for row in summary if row["fields"]), None)
    seen = f" (fields of a record: {fields})" if fields else ""
    parsed = sum(int(row["rows"]) for row in summary if row["reason"] not in ("malformed_json", "invalid_utf8"))
    checks = [("text_column", ingest.text_column, "has_text", "bad_text", "string"),
              ("domain_column", ingest.domain_column if read_domain else None, "has_domain", None, None),
              ("id_column", ingest.id_column, "has_id", None, None),
              ("quality_column", ingest.quality_column, "has_q", "bad_q", "numeric"),
              ("diversity_column", ingest.diversity_column, "has_d", "bad_d", "numeric")]
    checks += [("score_columns", column, f"has_extra_{i}", f"bad_extra_{i}", "numeric")
               for i, column in enumerate(ingest.score_columns)]
    checks += [("text_columns", column, f"has_labels_{i}", None, None) for i, column in enumerate(ingest.text_columns)]
    for key, column, has, bad, expected in checks:
        if not column or not parsed or total[has]:
            continue
        if bad and total[bad]:
            raise InputError(f"config key 'ingest.{key}': column {column!r} never holds a {expected} value "
                             f"({total[bad]} records hold another type); expected {expected}")
        raise InputError(f"config key 'ingest.{key}': column {column!r} not found in any record of "
                         f"the sources{seen}")
    _check_reject_share(summary, n_input, ingest.max_reject_share)
    return n_input


def _check_reject_share(summary: list, n_input: int, limit: float) -> None:
    rejected = {row["reason"]: int(row["rows"]) for row in summary if row["reason"] is not None}
    n_rejected = sum(rejected.values())
    if n_rejected > limit * n_input:
        top = max(sorted(rejected), key=rejected.get)
        raise InputError(f"ingest would reject {n_rejected} of {n_input} rows ({n_rejected / n_input:.0%}, more than "
                         f"ingest.max_reject_share={limit}); most are {top} ({rejected[top]}): likely "
                         f"{_likely_cause(top)}; nothing was written")


def _likely_cause(reason: str) -> str:
    if reason in _LIKELY_CAUSE:
        return _LIKELY_CAUSE[reason]
    if reason.startswith("invalid_"):  # a score column's reason is invalid_<its name>
        return (f"the score column {reason.removeprefix('invalid_')!r} is not a finite number in most records: "
                "check ingest.score_columns")
    return "a wrong format or column mapping"


def summarise(flagged: DataFrame, n_scores: int = 0, n_labels: int = 0) -> list:
    """Rows and mapped-field flags per reject reason (null = kept), in one aggregate.

    Each of the ``n_scores`` score columns adds ``has_extra_<i>`` and ``bad_extra_<i>``;
    each of the ``n_labels`` text columns adds ``has_labels_<i>``.
    """
    flags = [F.sum(F.col(name).cast("long")).alias(name)
             for name in ("has_text", "bad_text", "has_domain", "has_id", "has_q", "bad_q", "has_d", "bad_d")]
    flags += [F.sum(F.col(name)[i].cast("long")).alias(f"{name}_{i}")
              for i in range(n_scores) for name in ("has_extra", "bad_extra")]
    flags += [F.sum(F.col("has_labels")[i].cast("long")).alias(f"has_labels_{i}") for i in range(n_labels)]
    with _file_errors():
        return flagged.groupBy("reason").agg(F.count(F.lit(1)).alias("rows"), *flags,
                                             F.max("fields").alias("fields")).collect()


class IngestStep:
    """Read the sources, count tokens, split rows into documents and rejects."""

    name = "ingest"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        tokenizer_file(self.cfg.ingest.tokenizer)
        if classified(self.cfg):
            check_domain_classifier(self.cfg.domain)

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        flagged, n_input = self._flagged(spark, store)
        return self._write_all(flagged, n_input, store)

    def _write_all(self, flagged: DataFrame, n_input: int, store: TableStore) -> dict[str, int]:
        """Write documents, rejects and the held-out set from every flagged row; check conservation."""
        log.info("ingest: %d input rows checked; writing the tables", n_input)
        store.write(self._documents(training_rows(flagged)), "documents")
        n_rejects = self._write_rejects(flagged, store)
        n_holdout = self._write_holdout(flagged, store)
        record_split(store, split_settings(self.cfg.ingest, store.hash_scheme))
        self._log_near_duplicates(store)
        n_docs = store.read("documents").count()
        log.info("ingest: %d input rows = %d documents + %d rejects + %d held out", n_input, n_docs, n_rejects,
                 n_holdout)
        _check_conservation(n_input, n_docs + n_rejects + n_holdout,
                            f"{n_docs} kept + {n_rejects} rejected + {n_holdout} held out")
        if n_docs == 0:
            raise InputError(f"ingest kept no documents: all {n_input} rows were rejected or held out; "
                             "see the rejects table for reasons")
        return {"documents": n_docs, "rejects": n_rejects, "holdout": n_holdout}

    def run_increment(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """Add only documents whose doc_id is not stored yet; list them in the ``increment`` table.

        Rows are checked and de-duplicated over all current sources exactly as a
        full ingest does, and the rejects table is rebuilt the same way. A kept
        row whose doc_id is stored is counted as already stored; if its text or
        domain differs from the stored version, the stored version stays (a
        warning says how many; ``samplemix run --force`` takes the new ones).
        The increment is written first and merged with any increment a killed
        refresh left behind, so its documents are scored on the next try.
        """
        check_split_unchanged(store, split_settings(self.cfg.ingest, store.hash_scheme), self.cfg.ingest.id_column)
        stored = store.read("documents")
        flagged, n_input = self._flagged(spark, store, stored)
        log.info("ingest: %d input rows checked; writing the tables", n_input)
        kept = training_rows(flagged)
        new = kept.join(stored.select("doc_id"), "doc_id", "left_anti")
        n_new, n_seen = _count_new_and_stored(kept, stored)  # before the writes below add the new rows
        _write_increment(store, new.select("doc_id"))
        store.write(stored.unionByName(self._documents(new)), "documents")
        n_rejects = self._write_rejects(flagged, store)
        keep_labels = self.cfg.domain.method == "clusters" and store.exists("holdout")
        n_holdout = self._write_holdout(flagged, store, keep_labels)
        record_split(store, split_settings(self.cfg.ingest, store.hash_scheme))
        self._log_near_duplicates(store)
        log.info("ingest: %d input rows = %d new documents + %d already stored + %d rejects + %d held out",
                 n_input, n_new, n_seen, n_rejects, n_holdout)
        _check_conservation(n_input, n_new + n_seen + n_rejects + n_holdout,
                            f"{n_new} new + {n_seen} already stored + {n_rejects} rejected + {n_holdout} held out")
        return {"increment": store.read("increment").count(), "documents": store.read("documents").count(),
                "rejects": n_rejects, "holdout": n_holdout}

    def run_resplit(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """A full ingest under the configured split, listing in ``increment`` the documents not stored before.

        Documents that stay in training keep their doc_id, so the per-document
        stages that follow compute only the listed ones; rows of documents now
        held out drop out of those tables (``tables.per_document``).
        """
        stored = store.read("documents").select("doc_id")
        flagged, n_input = self._flagged(spark, store)
        # Written while ``documents`` still holds the old split: the training documents it does not hold.
        _write_increment(store, training_rows(flagged).select("doc_id").join(stored, "doc_id", "left_anti"))
        rows = self._write_all(flagged, n_input, store)
        n_increment = store.read("increment").count()
        log.info("ingest: re-split into %d documents and %d held out; %d documents to score", rows["documents"],
                 rows["holdout"], n_increment)
        return {"increment": n_increment, **rows}

    def _flagged(self, spark: SparkSession, store: TableStore,
                 stored: Optional[DataFrame] = None) -> tuple[DataFrame, int]:
        """Source rows with doc_id, reason and split, and how many there are; checked before documents are written.

        With ``ingest.holdout_sources`` the held-out set is those sources' valid rows
        (read with the same mapping), else a hashed ``ingest.holdout_fraction`` of the
        sources' rows. Either way a held-out text that is also a training text is
        rejected, and so is one that shares ``ingest.holdout_overlap`` of its
        13-word shingles with training text (``holdout_overlap`` keeps every share).
        A refresh passes the ``stored`` documents: a held-out row with a stored id
        is rejected too. A refresh checks every held-out document of the current
        sources against the training rows of the current sources (not against
        stored documents whose source files are gone).
        """
        ingest, read_domain = self.cfg.ingest, not labelled(self.cfg)
        flagged = flag_rows(read_raw(spark, ingest, read_domain), self.cfg)
        n_input = check_flagged(summarise(flagged, len(ingest.score_columns), len(ingest.text_columns)), ingest,
                                read_domain)
        if ingest.holdout_sources:
            given = dataclasses.replace(ingest, sources=ingest.holdout_sources)
            held = flag_rows(read_raw(spark, given, read_domain), self.cfg)
            n_input += check_flagged(summarise(held, len(given.score_columns), len(given.text_columns)), given,
                                     read_domain)
            both = flagged.withColumn("split", F.lit("train")).unionByName(held.withColumn("split", F.lit("holdout")))
            flagged = drop_leaks(both)
        else:
            flagged = split_holdout(flagged, ingest, store.hash_scheme, self._thresholds(flagged, store, stored))
        if stored is not None:
            flagged = reject_stored_ids(flagged, stored)
        if ingest.holds_out:
            flagged = reject_near_duplicates(flagged, store, ingest.holdout_overlap)
        return flagged, n_input

    def _thresholds(self, flagged: DataFrame, store: TableStore,
                    stored: Optional[DataFrame]) -> Optional[DataFrame]:
        """With ``ingest.holdout_docs``: each domain's threshold, written to ``holdout_thresholds`` (a refresh keeps
        the stored ones, see ``domain_thresholds``); None otherwise."""
        holdout_docs = self.cfg.ingest.holdout_docs
        if not holdout_docs:
            return None
        recorded = store.read_if_exists("holdout_thresholds") if stored is not None else None
        store.write(domain_thresholds(flagged, holdout_docs, recorded), "holdout_thresholds")
        return store.read("holdout_thresholds")

    def _log_near_duplicates(self, store: TableStore) -> None:
        ingest = self.cfg.ingest
        if not ingest.holds_out:
            return
        n_near = store.read("rejects").filter(F.col("reason") == "holdout_near_duplicate").count()
        log.info("ingest: %d held-out documents share at least %.0f%% of their %d-word shingles with training text: "
                 "rejected as holdout_near_duplicate (every held-out document's share is in holdout_overlap)",
                 n_near, 100 * ingest.holdout_overlap, SHINGLE_WORDS)

    def _write_holdout(self, flagged: DataFrame, store: TableStore, keep_labels: bool = False) -> int:
        """Write the held-out documents (an empty table when no split is configured, so none is stale).

        With ``keep_labels`` (a refresh under ``domain.method: clusters``) a held-out
        document keeps the domain the stored table gave it, so a refresh never renames one.
        """
        rows = holdout_rows(flagged)
        if classified(self.cfg):
            rows = label_domains(rows, self.cfg.domain, Progress("ingest: labelling held-out domains", total=0))
        if keep_labels:
            stored = store.read("holdout").select("doc_id", F.col("domain").alias("_stored_domain"))
            rows = (rows.join(stored, "doc_id", "left").withColumn("domain", F.col("_stored_domain"))
                    .drop("_stored_domain"))
        with _file_errors():
            store.write(rows.select("doc_id", "domain", "text"), "holdout")
        return store.read("holdout").count()

    @staticmethod
    def _write_rejects(flagged: DataFrame, store: TableStore) -> int:
        # A row that could not be parsed keeps the start of its raw line as its text.
        text = F.coalesce(F.col("raw"), F.col("text")).alias("text")
        rejects = flagged.filter(F.col("reason").isNotNull())
        with _file_errors():
            store.write(rejects.select("reason", "doc_id", "domain", text, "source_file", "source_line"), "rejects")
        return store.read("rejects").count()

    def _documents(self, kept: DataFrame) -> DataFrame:
        counted = Progress("ingest: counting tokens", total=0)
        if classified(self.cfg):
            kept = label_domains(kept, self.cfg.domain, Progress("ingest: labelling domains", total=0))
        columns = [F.col("doc_id"), F.col("domain"), F.col("text"),
                   token_count_column(F.col("text"), self.cfg.ingest.tokenizer, counted).alias("n_tokens")]
        if classified(self.cfg):
            columns.append(F.col("domain_confidence"))
        if self.cfg.ingest.quality_column:
            columns.append(F.col("q_input"))
        if self.cfg.ingest.diversity_column:
            columns.append(F.col("d_input"))
        columns += [F.col("extra")[i].alias(score_column_name(name))
                    for i, name in enumerate(self.cfg.ingest.score_columns)]
        columns += [F.col("labels")[i].alias(score_column_name(name))
                    for i, name in enumerate(self.cfg.ingest.text_columns)]
        return kept.select(*columns)


def _count_new_and_stored(kept: DataFrame, stored: DataFrame) -> tuple[int, int]:
    """Kept rows whose doc_id is new and whose doc_id is stored, in one pass; warns about changed ones."""
    old = stored.select("doc_id", F.col("domain").alias("_stored_domain"), F.sha2("text", 256).alias("_stored_hash"))
    is_new = F.col("_stored_hash").isNull()
    changed = ~is_new & ((F.col("domain") != F.col("_stored_domain")) | (F.col("_text_hash") != F.col("_stored_hash")))
    counts = kept.join(old, "doc_id", "left").agg(
        F.count(F.lit(1)).alias("kept"), F.sum(is_new.cast("long")).alias("new"),
        F.sum(changed.cast("long")).alias("changed")).collect()[0]
    n_new, n_changed = int(counts["new"] or 0), int(counts["changed"] or 0)
    if n_changed:
        log.warning("ingest: %d stored documents have a different text or domain in the sources now; "
                    "the refresh keeps the stored versions (samplemix run --force ingests the new ones)", n_changed)
    return n_new, int(counts["kept"]) - n_new


def _check_conservation(n_input: int, n_accounted: int, detail: str) -> None:
    if n_accounted != n_input:
        raise InputError(f"ingest lost rows: {n_input} in, {detail}")
