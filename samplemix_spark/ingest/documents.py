"""Ingest: raw sources -> ``documents`` table, bad rows -> ``rejects`` table.

Every input row ends up in exactly one of the two tables; the step checks that
input rows = kept + rejected and prints both counts.

``doc_id`` is the configured id column, or the first 128 bits of the SHA-256 of
the text. With hashed ids a repeated text is an exact duplicate and is rejected
as ``duplicate_text``; with given ids a repeated id is rejected as
``duplicate_id``. Among rows that share an id the kept one is chosen by text hash
and domain, so the choice does not depend on file order or partitioning.
"""

from __future__ import annotations

import contextlib
import logging

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.errors import InputError
from samplemix_spark.ingest.sources import map_columns, read_sources
from samplemix_spark.ingest.tokens import token_count_column, tokenizer_file
from samplemix_spark.tables import TableStore

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
    reason = (F.when(F.col("text").isNull(), "null_text")
              .when(_is_blank(F.col("text")), "empty_text")
              .when(F.col("domain").isNull() | _is_blank(F.col("domain")), "null_domain"))
    if ingest.id_column:
        reason = reason.when(F.col("source_id").isNull() | _is_blank(F.col("source_id")), "null_id")
    if ingest.quality_column:
        reason = reason.when(_invalid_score(F.col("q_input")), "invalid_quality")
    if ingest.diversity_column:
        reason = reason.when(_invalid_score(F.col("d_input")), "invalid_diversity")
    return reason


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
    rank = F.row_number().over(Window.partitionBy("doc_id").orderBy("_text_hash", "domain"))
    duplicate = "duplicate_id" if cfg.ingest.id_column else "duplicate_text"
    valid = valid.withColumn("reason", F.when(rank > 1, F.lit(duplicate)))
    return valid.unionByName(flagged.filter(F.col("reason").isNotNull()))


@contextlib.contextmanager
def _unreadable_input(sources: list[str]):
    """Turn an engine's decoding failure into an error that names the problem."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - engines raise different classes
        if "utf-8" in str(exc).lower():
            # JVM Spark reads such bytes as U+FFFD; Sail's JSON reader refuses the file.
            raise InputError(f"ingest sources {sources} contain bytes that are not valid UTF-8 "
                             "(re-encode them as UTF-8, or read them on JVM Spark, which replaces them "
                             "with U+FFFD)") from exc
        raise


class IngestStep:
    """Read the sources, count tokens, split rows into documents and rejects."""

    name = "ingest"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        tokenizer_file(self.cfg.ingest.tokenizer)

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        flagged, n_input = self._flagged(spark)
        store.write(self._documents(flagged.filter(F.col("reason").isNull())), "documents")
        n_rejects = self._write_rejects(flagged, store)
        n_docs = store.read("documents").count()
        log.info("ingest: %d input rows = %d documents + %d rejects", n_input, n_docs, n_rejects)
        _check_conservation(n_input, n_docs + n_rejects, f"{n_docs} kept + {n_rejects} rejected")
        if n_docs == 0:
            raise InputError(f"ingest kept no documents: all {n_input} rows were rejected; "
                             "see the rejects table for reasons")
        return {"documents": n_docs, "rejects": n_rejects}

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
        flagged, n_input = self._flagged(spark)
        kept = flagged.filter(F.col("reason").isNull())
        stored = store.read("documents")
        new = kept.join(stored.select("doc_id"), "doc_id", "left_anti")
        n_new, n_seen = _count_new_and_stored(kept, stored)  # before the writes below add the new rows
        pending = store.read_if_exists("increment")
        new_ids = new.select("doc_id") if pending is None else new.select("doc_id").unionByName(pending)
        store.write(new_ids.distinct(), "increment")
        store.write(stored.unionByName(self._documents(new)), "documents")
        n_rejects = self._write_rejects(flagged, store)
        log.info("ingest: %d input rows = %d new documents + %d already stored + %d rejects",
                 n_input, n_new, n_seen, n_rejects)
        _check_conservation(n_input, n_new + n_seen + n_rejects,
                            f"{n_new} new + {n_seen} already stored + {n_rejects} rejected")
        return {"increment": store.read("increment").count(), "documents": store.read("documents").count(),
                "rejects": n_rejects}

    def _flagged(self, spark: SparkSession) -> tuple[DataFrame, int]:
        """Source rows with doc_id and reason, and how many there are."""
        ingest = self.cfg.ingest
        with _unreadable_input(ingest.sources):  # reading happens here, before any table is written
            source = read_sources(spark, ingest.sources, ingest.format)
            if not source.columns:  # an empty file has no schema to map
                raise InputError(f"ingest sources {ingest.sources} hold no rows")
            raw = map_columns(source, ingest)
            n_input = raw.count()
        if n_input == 0:
            raise InputError(f"ingest sources {ingest.sources} hold no rows")
        return flag_rows(raw, self.cfg), n_input

    @staticmethod
    def _write_rejects(flagged: DataFrame, store: TableStore) -> int:
        store.write(flagged.filter(F.col("reason").isNotNull()).select("reason", "doc_id", "domain", "text"),
                    "rejects")
        return store.read("rejects").count()

    def _documents(self, kept: DataFrame) -> DataFrame:
        columns = [F.col("doc_id"), F.col("domain"), F.col("text"),
                   token_count_column(F.col("text"), self.cfg.ingest.tokenizer).alias("n_tokens")]
        if self.cfg.ingest.quality_column:
            columns.append(F.col("q_input"))
        if self.cfg.ingest.diversity_column:
            columns.append(F.col("d_input"))
        return kept.select(*columns)


def _count_new_and_stored(kept: DataFrame, stored: DataFrame) -> tuple[int, int]:
    """Kept rows whose doc_id is new and whose doc_id is stored, in one pass; warns about changed ones."""
    old = stored.select("doc_id", F.col("domain").alias("_stored_domain"), F.sha2("text", 256).alias("_stored_hash"))
    is_new = F.col("_stored_hash").isNull()
    changed = ~is_new & ((F.col("domain") != F.col("_stored_domain")) | (F.col("_text_hash") != F.col("_stored_hash")))
    counts = kept.join(old, "doc_id", "left").agg(
        F.count(F.lit(1)).alias("kept"), F.sum(is_new.cast("long")).alias("new"),
        F.sum(changed.cast("long")).alias("changed")).first()
    n_new, n_changed = int(counts["new"] or 0), int(counts["changed"] or 0)
    if n_changed:
        log.warning("ingest: %d stored documents have a different text or domain in the sources now; "
                    "the refresh keeps the stored versions (samplemix run --force ingests the new ones)", n_changed)
    return n_new, int(counts["kept"]) - n_new


def _check_conservation(n_input: int, n_accounted: int, detail: str) -> None:
    if n_accounted != n_input:
        raise InputError(f"ingest lost rows: {n_input} in, {detail}")
