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
the text; those 128 bits are also stored as ``text_hash``, so a refresh compares
new text with stored text without hashing the stored text again. With hashed
ids a repeated text is an exact duplicate and is rejected as ``duplicate_text``;
with given ids a repeated id is rejected as ``duplicate_id``. Among rows that
share an id the kept one is chosen by text hash and domain, so the choice does
not depend on file order or partitioning.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from functools import reduce
from typing import Optional

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from samplemix_spark.config import IngestConfig, SampleMixConfig
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import HOLDOUT_SPLIT, stored_hash, uniform
from samplemix_spark.ingest.decontaminate import drop_leaks, kept
from samplemix_spark.ingest.domain_labels import labelled
from samplemix_spark.ingest.reader import RAW_DDL, RAW_SCHEMA, Mapping, file_error_message, list_units, read_units
from samplemix_spark.ingest.sources import map_columns, read_sources
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


def flag_rows(raw: DataFrame, cfg: SampleMixConfig) -> DataFrame:
    """Add ``doc_id`` and ``reason`` (null = kept) to the mapped source rows."""
    text_hash = F.sha2(F.col("text"), 256)
    flagged = raw.select(
        "*",
        text_hash.alias("_text_hash"),
        F.coalesce(F.col("source_id"), stored_hash(text_hash)).alias("doc_id"),
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


def holdout_rows(flagged: DataFrame) -> DataFrame:
    """The ``holdout`` table's rows: doc_id, domain, text."""
    return flagged.filter(kept("holdout")).select("doc_id", "domain", "text")


def training_rows(flagged: DataFrame) -> DataFrame:
    return flagged.filter(kept("train"))


@contextlib.contextmanager
def file_errors():
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
    """Rows and mapped-field flags per reject reason (null = kept), in one aggregate; ``per_file`` splits the
    same rows by source file.

    Each of the ``n_scores`` score columns adds ``has_extra_<i>`` and ``bad_extra_<i>``;
    each of the ``n_labels`` text columns adds ``has_labels_<i>``.
    """
    return by_reason(per_file(flagged, n_scores, n_labels))


def per_file(flagged: DataFrame, n_scores: int = 0, n_labels: int = 0) -> list[dict]:
    """``summarise``'s aggregate per (reason, source_file): one row per file and reason, which the driver lists
    anyway (one work unit per file)."""
    flags = [F.sum(F.col(name).cast("long")).alias(name)
             for name in ("has_text", "bad_text", "has_domain", "has_id", "has_q", "bad_q", "has_d", "bad_d")]
    flags += [F.sum(F.col(name)[i].cast("long")).alias(f"{name}_{i}")
              for i in range(n_scores) for name in ("has_extra", "bad_extra")]
    flags += [F.sum(F.col("has_labels")[i].cast("long")).alias(f"has_labels_{i}") for i in range(n_labels)]
    with file_errors():
        return [row.asDict() for row in flagged.groupBy("reason", "source_file").agg(
            F.count(F.lit(1)).alias("rows"), *flags, F.max("fields").alias("fields")).collect()]


def by_reason(rows: list[dict]) -> list[dict]:
    """``per_file``'s rows summed over files: one per reason."""
    merged: dict = {}
    for row in rows:
        into = merged.setdefault(row["reason"], {"reason": row["reason"], "fields": None})
        for key, value in row.items():
            if key == "fields":
                into["fields"] = max(filter(None, (into["fields"], value)), default=None)
            elif key not in ("reason", "source_file"):
                into[key] = into.get(key, 0) + int(value or 0)
    return list(merged.values())


def rows_per_file(rows: list[dict]) -> dict[str, int]:
    """Input rows per source file, from ``per_file``'s rows."""
    counts: Counter = Counter()
    for row in rows:
        counts[row["source_file"]] += int(row["rows"])
    return dict(counts)


def empty_raw(spark: SparkSession) -> DataFrame:
    """No source rows, in the reader's schema: a refresh with nothing new on one side."""
    return spark.createDataFrame([], RAW_DDL)
