"""The ingest stage: sources -> ``documents``, ``rejects`` and the held-out tables (driver-side orchestration).

A full ingest reads every source. A refresh (``run_increment``, for ``samplemix
run --incremental``) reads only the source files that are new or changed since
the last ingest (``source_files``) and grows ``documents``, ``rejects`` and
``holdout`` by Delta appends; the decontamination tables follow
(``decontaminate.refresh_overlap``). Row-level rules live in ``documents``,
the refresh's in ``increment``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import SampleMixConfig, score_column_name
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import SHINGLE_WORDS, stored_hash
from samplemix_spark.ingest import increment
from samplemix_spark.ingest.decontaminate import (CHECK_ROOM, copied_holdout, drop_leaks, kept, mark, near_copies,
                                                  refresh_overlap, reject_near_duplicates)
from samplemix_spark.ingest.documents import (by_reason, check_flagged, domain_thresholds, empty_raw, file_errors,
                                              flag_rows, holdout_rows, per_file, read_raw, rows_per_file,
                                              split_holdout, training_rows)
from samplemix_spark.ingest.domain_labels import check_domain_classifier, classified, label_domains, labelled
from samplemix_spark.ingest.holdout import check_split_unchanged, record_split, split_settings
from samplemix_spark.ingest.source_files import TABLE as SOURCE_FILES
from samplemix_spark.ingest.source_files import FilePlan, every_file, plan_files, record_files
from samplemix_spark.ingest.tokens import token_count_column, tokenizer_file
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
REJECT_COLUMNS = ("reason", "doc_id", "domain", "text", "source_file", "source_line")


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
        plan = every_file(self.cfg.ingest)
        flagged, n_input, files = self._flagged(spark, store, plan)
        rows = self._write_all(flagged, n_input, store)
        record_files(store, plan, files)
        return rows

    def _write_all(self, flagged: DataFrame, n_input: int, store: TableStore) -> dict[str, int]:
        """Write documents, rejects and the held-out set from every flagged row; check conservation."""
        log.info("ingest: %d input rows checked; writing the tables", n_input)
        store.write(self._documents(training_rows(flagged)), "documents")
        n_rejects = self._write_rejects(flagged, store)
        n_holdout = self._write_holdout(flagged, store)
        record_split(store, split_settings(self.cfg.ingest, store.hash_scheme), self._checked_per_domain)
        self._log_near_duplicates(store)
        n_docs = store.read("documents").count()
        log.info("ingest: %d input rows = %d documents + %d rejects + %d held out", n_input, n_docs, n_rejects,
                 n_holdout)
        increment.check_conservation(n_input, n_docs + n_rejects + n_holdout,
                                     f"{n_docs} kept + {n_rejects} rejected + {n_holdout} held out")
        if n_docs == 0:
            raise InputError(f"ingest kept no documents: all {n_input} rows were rejected or held out; "
                             "see the rejects table for reasons")
        return {"documents": n_docs, "rejects": n_rejects, "holdout": n_holdout}

    def run_increment(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """Add the documents of new and changed source files; list the new ones in the ``increment`` table.

        Unchanged files are not opened. The rows read are checked and de-duplicated
        as a full ingest does; stored documents stay as they are
        (``increment``'s module doc). ``documents``, ``rejects`` and ``holdout``
        grow by one append each; ``rejects`` is rewritten only when a changed file
        replaces its earlier rejects, ``holdout`` only when new training text
        copies a stored held-out document (which then becomes a reject). The
        increment is written first and merged with any increment a killed
        refresh left behind, so its documents are scored on the next try. A
        Parquet warehouse has no table versions to read the stored rows at, so it
        ingests every source again, as ``run_resplit`` does.
        """
        ingest = self.cfg.ingest
        check_split_unchanged(store, split_settings(ingest, store.hash_scheme), ingest.id_column)
        if not store.appends_atomically:
            log.info("ingest: tables.format %s has no atomic append; the refresh ingests every source again",
                     store.cfg.format)
            return self.run_resplit(spark, store)
        plan = plan_files(store, ingest)
        log.info("ingest: source files: %s", plan.describe())
        stored_files = store.read_if_exists(SOURCE_FILES)
        if not plan.to_read("train") and not plan.to_read("holdout"):
            if plan.moved or plan.gone:
                record_files(store, plan, {}, stored_files)
            pending = store.read_if_exists("increment")
            if pending is None:
                store.write(spark.createDataFrame([], "doc_id string"), "increment")
            log.info("ingest: no new or changed source files: nothing read")
            return {"increment": 0 if pending is None else pending.count()}
        documents, holdout = store.pinned("documents"), store.pinned("holdout")
        flagged, n_input, files = self._flagged(spark, store, plan, documents, holdout)
        moved = self._copied_holdout(flagged, holdout, store)
        counts = increment.count_rows(flagged)
        log.info("ingest: %d input rows = %d new documents + %d already stored + %d rejects + %d held out",
                 n_input, counts["new"], counts["stored"], counts["rejects"], counts["holdout"])
        increment.check_conservation(n_input, counts["rows"],  # before any write, so a failure leaves none
                                     f"{counts['new']} new + {counts['stored']} already stored + "
                                     f"{counts['rejects']} rejected + {counts['holdout']} held out")
        record_files(store, plan, files, stored_files, pending=True)
        increment.write_increment(store, training_rows(flagged).select("doc_id"))
        store.append(self._documents(training_rows(flagged)), "documents")
        self._add_rejects(flagged, moved, holdout, plan, store)
        self._add_holdout(flagged, moved, store)
        record_split(store, split_settings(ingest, store.hash_scheme), self._checked_per_domain)
        record_files(store, plan, files, store.read(SOURCE_FILES))
        self._log_near_duplicates(store)
        return {"increment": store.read("increment").count(), "documents": store.read("documents").count(),
                "rejects": store.read("rejects").count(), "holdout": store.read("holdout").count()}

    def run_resplit(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """A full ingest under the configured split, listing in ``increment`` the documents not stored before.

        Documents that stay in training keep their doc_id, so the per-document
        stages that follow compute only the listed ones; rows of documents now
        held out drop out of those tables (``tables.per_document``).
        """
        stored = store.read("documents").select("doc_id")
        plan = every_file(self.cfg.ingest)
        flagged, n_input, files = self._flagged(spark, store, plan)
        # Written while ``documents`` still holds the old split: the training documents it does not hold.
        increment.write_increment(store, training_rows(flagged).select("doc_id").join(stored, "doc_id",
                                                                                       "left_anti"))
        rows = self._write_all(flagged, n_input, store)
        record_files(store, plan, files)
        n_increment = store.read("increment").count()
        log.info("ingest: re-split into %d documents and %d held out; %d documents to score", rows["documents"],
                 rows["holdout"], n_increment)
        return {"increment": n_increment, **rows}

    def _read(self, spark: SparkSession, sources: list[str], refresh: bool) -> tuple[DataFrame, int, dict]:
        """(flagged rows, input rows, rows per file) of ``sources``; none for a refresh with nothing on this side."""
        ingest, read_domain = self.cfg.ingest, not labelled(self.cfg)
        if not sources:
            return flag_rows(empty_raw(spark), self.cfg), 0, {}
        given = dataclasses.replace(ingest, sources=sources)
        flagged = flag_rows(read_raw(spark, given, read_domain), self.cfg)
        summary = per_file(flagged, len(ingest.score_columns), len(ingest.text_columns))
        if refresh and not summary:  # new files that hold no rows
            return flagged, 0, {}
        return flagged, check_flagged(by_reason(summary), given, read_domain), rows_per_file(summary)

    def _flagged(self, spark: SparkSession, store: TableStore, plan: FilePlan,
                 documents: Optional[DataFrame] = None,
                 holdout: Optional[DataFrame] = None) -> tuple[DataFrame, int, dict]:
        """The rows of the files ``plan`` reads, with doc_id, reason and split; the input row count; rows per file.

        With ``ingest.holdout_sources`` the held-out set is those sources' valid rows
        (read with the same mapping), else a hashed ``ingest.holdout_fraction`` of the
        sources' rows. Either way a held-out text that is also a training text is
        rejected, and so is one that shares ``ingest.holdout_overlap`` of its
        13-word shingles with training text (``decontaminate``). A refresh passes
        the stored ``documents`` and ``holdout`` (pinned versions): rows with a
        stored doc_id are marked (``increment.mark_stored``), and held-out rows
        are checked against stored training text too.
        """
        ingest, refresh = self.cfg.ingest, documents is not None
        flagged, n_input, files = self._read(spark, plan.to_read("train"), refresh)
        duplicate = "duplicate_id" if ingest.id_column else "duplicate_text"
        if refresh:  # with held-out sources each side is de-duplicated on its own, as a full ingest does
            keys = increment.stored_keys(documents, None if ingest.holdout_sources else holdout)
            flagged = increment.mark_stored(flagged, keys, plan.reread, duplicate)
        if ingest.holdout_sources:
            held, n_held, held_files = self._read(spark, plan.to_read("holdout"), refresh)
            if refresh:
                held = increment.mark_stored(held, increment.stored_keys(None, holdout), plan.reread, duplicate)
            n_input, files = n_input + n_held, {**files, **held_files}
            both = flagged.withColumn("split", F.lit("train")).unionByName(held.withColumn("split", F.lit("holdout")))
            flagged = drop_leaks(both)
        else:
            flagged = split_holdout(flagged, ingest, store.hash_scheme, self._thresholds(flagged, store, refresh))
        if refresh and ingest.holds_out and self._copies_cross_the_split:
            flagged = mark(flagged, increment.copies_of_stored_training(flagged, documents), "holdout",
                           "holdout_duplicate")
        if not ingest.holds_out:
            return flagged, n_input, files
        if not refresh:
            return reject_near_duplicates(flagged, store, ingest.holdout_overlap, self._checked_per_domain), \
                n_input, files
        refresh_overlap(flagged, store, documents.select("doc_id", "text"), holdout, self._checked_per_domain)
        return mark(flagged, near_copies(store, ingest.holdout_overlap), "holdout", "holdout_near_duplicate"), \
            n_input, files

    @property
    def _copies_cross_the_split(self) -> bool:
        """Whether a text can be training and held out at once: with hashed ids and a hashed split the same
        text is the same doc_id on the same side, so a stored doc_id already catches an exact copy."""
        return bool(self.cfg.ingest.id_column or self.cfg.ingest.holdout_sources)

    def _copied_holdout(self, flagged: DataFrame, holdout: DataFrame, store: TableStore) -> DataFrame:
        """(doc_id, reason) of stored held-out documents that the refresh's training rows copy."""
        ingest = self.cfg.ingest
        return copied_holdout(flagged.filter(kept("train")), increment.stored_keys(None, holdout), store,
                              self._copies_cross_the_split, ingest.holdout_overlap if ingest.holds_out else None)

    def _thresholds(self, flagged: DataFrame, store: TableStore, refresh: bool) -> Optional[DataFrame]:
        """With ``ingest.holdout_docs``: each domain's threshold, written to ``holdout_thresholds`` (a refresh keeps
        the stored ones, see ``domain_thresholds``); None otherwise."""
        holdout_docs = self.cfg.ingest.holdout_docs
        if not holdout_docs:
            return None
        recorded = store.read_if_exists("holdout_thresholds") if refresh else None
        store.write(domain_thresholds(flagged, holdout_docs, recorded), "holdout_thresholds")
        return store.read("holdout_thresholds")

    @property
    def _checked_per_domain(self) -> int:
        """How many held-out documents per domain the near-copy check covers (``decontaminate``'s module doc)."""
        return CHECK_ROOM * self.cfg.evaluate.max_eval_docs

    def _log_near_duplicates(self, store: TableStore) -> None:
        ingest = self.cfg.ingest
        if not ingest.holds_out:
            return
        n_near = store.read("rejects").filter(F.col("reason") == "holdout_near_duplicate").count()
        n_checked = store.read("holdout_overlap").count()
        log.info("ingest: %d held-out documents share at least %.0f%% of their %d-word shingles with training text: "
                 "rejected as holdout_near_duplicate; the check covered %d held-out documents, those evaluate can "
                 "score (up to %d per domain, %d x evaluate.max_eval_docs), whose shares are in holdout_overlap",
                 n_near, 100 * ingest.holdout_overlap, SHINGLE_WORDS, n_checked, self._checked_per_domain, CHECK_ROOM)

    def _holdout_rows(self, flagged: DataFrame) -> DataFrame:
        rows = holdout_rows(flagged)
        if classified(self.cfg):
            rows = label_domains(rows, self.cfg.domain, Progress("ingest: labelling held-out domains", total=0))
        return rows.select("doc_id", "domain", "text")

    def _write_holdout(self, flagged: DataFrame, store: TableStore) -> int:
        """Write the held-out documents (an empty table when no split is configured, so none is stale)."""
        with file_errors():
            store.write(self._holdout_rows(flagged), "holdout")
        return store.read("holdout").count()

    def _add_holdout(self, flagged: DataFrame, moved: DataFrame, store: TableStore) -> None:
        """Append the new held-out documents; without the stored ones that became rejects (a rewrite, rare)."""
        new = self._holdout_rows(flagged)
        with file_errors():
            if not moved.limit(1).count():
                store.append(new, "holdout")
                return
            kept_rows = store.read("holdout").join(moved.select("doc_id"), "doc_id", "left_anti")
            store.write(kept_rows.unionByName(new), "holdout")
        # A full ingest checks shingles only of held-out documents that are not exact copies: so here.
        exact = moved.filter(F.col("reason") == "holdout_duplicate").select("doc_id")
        if self.cfg.ingest.holds_out and exact.limit(1).count():
            for table in ("holdout_shingles", "holdout_overlap"):
                store.write(store.read(table).join(exact, "doc_id", "left_anti"), table)

    @staticmethod
    def _reject_rows(flagged: DataFrame) -> DataFrame:
        # A row that could not be parsed keeps the start of its raw line as its text.
        text = F.coalesce(F.col("raw"), F.col("text")).alias("text")
        rejects = flagged.filter(F.col("reason").isNotNull() & (F.col("reason") != increment.STORED))
        return rejects.select("reason", "doc_id", "domain", text, "source_file", "source_line")

    def _write_rejects(self, flagged: DataFrame, store: TableStore) -> int:
        with file_errors():
            store.write(self._reject_rows(flagged), "rejects")
        return store.read("rejects").count()

    def _add_rejects(self, flagged: DataFrame, moved: DataFrame, holdout: DataFrame, plan: FilePlan,
                     store: TableStore) -> None:
        """Append the new rejects and the stored held-out documents that became rejects; a changed file's
        earlier rejects are replaced (a rewrite)."""
        copied = (moved.join(holdout, "doc_id")
                  .select("reason", "doc_id", "domain", "text", F.lit(None).cast("string").alias("source_file"),
                          F.lit(None).cast("long").alias("source_line")))
        new = self._reject_rows(flagged).unionByName(copied)
        with file_errors():
            if plan.reread:
                earlier = store.read("rejects")
                again = increment.read_again(plan.reread) & ~F.col("reason").startswith("holdout_")
                store.write(earlier.filter(~F.coalesce(again, F.lit(False))).unionByName(new), "rejects")
            else:
                store.append(new, "rejects")

    def _documents(self, kept_rows: DataFrame) -> DataFrame:
        counted = Progress("ingest: counting tokens", total=0)
        if classified(self.cfg):
            kept_rows = label_domains(kept_rows, self.cfg.domain, Progress("ingest: labelling domains", total=0))
        columns = [F.col("doc_id"), F.col("domain"), F.col("text"),
                   token_count_column(F.col("text"), self.cfg.ingest.tokenizer, counted).alias("n_tokens"),
                   stored_hash(F.col("_text_hash")).alias("text_hash")]
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
        return kept_rows.select(*columns)

