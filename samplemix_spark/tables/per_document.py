"""Stages that compute one row per document: the whole table, or only new documents.

Quality, embed, assign and the ``column`` score methods each turn one row of
their source table into one row of their output table, independently of every
other row. ``run_per_document`` writes the output for every source row, or, for
a refresh, for the documents listed in ``only``:

- appended (``append``; a refresh that only adds documents, on Delta): one
  commit adds the rows of listed documents the table does not hold yet, so a
  refresh writes the new rows alone, and a killed refresh run again appends only
  what its first try did not commit;
- otherwise (a re-split, where documents can leave; Parquet, which has no atomic
  append) the table is replaced in one atomic overwrite that keeps the stored
  rows of documents still in the source.
"""

from __future__ import annotations

from typing import Optional

from pyspark.sql import DataFrame, SparkSession

from samplemix_spark.engine.progress import Progress, interval_s
from samplemix_spark.tables.store import TableStore


class PerDocumentStep:
    """Base of the per-document steps: ``run`` writes ``output`` from every row of ``source``."""

    name: str
    source: str  # table read, keyed by doc_id
    output: str  # table written, keyed by doc_id
    reports_progress = False  # True where a UDF does the work: it then gets a Progress over the rows

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        """The output rows for these source rows (built on the driver, run on executors)."""
        raise NotImplementedError

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        return run_per_document(spark, store, self)


def run_per_document(spark: SparkSession, store: TableStore, step: PerDocumentStep,
                     only: Optional[DataFrame] = None, append: bool = False) -> dict[str, int]:
    """Write ``step.output`` for every source row, or with ``only`` (doc_id) for those rows alone."""
    if only is not None and append and store.appends_atomically:
        _append_new(spark, store, step, only)
        return {step.output: store.read(step.output).count()}
    source = store.read(step.source)
    rows = source if only is None else source.join(only, "doc_id", "left_semi")
    if only is None:
        store.write(step.transform(spark, store, rows, _progress(step, rows)), step.output)
    else:
        fresh = step.transform(spark, store, rows, _progress(step, rows))
        # Rows of documents that left the source (held out by a re-split) go with them.
        kept = (store.read(step.output).join(only, "doc_id", "left_anti")
                .join(source.select("doc_id"), "doc_id", "left_semi"))
        store.write(kept.unionByName(fresh), step.output)
    return {step.output: store.read(step.output).count()}


def _append_new(spark: SparkSession, store: TableStore, step: PerDocumentStep, only: DataFrame) -> None:
    """Append the output rows of the listed documents that the output table does not hold yet."""
    stored = store.read(step.output)
    pending = only.select("doc_id").join(stored.select("doc_id"), "doc_id", "left_anti")
    rows = store.read(step.source).join(pending, "doc_id", "left_semi")
    fresh = step.transform(spark, store, rows, _progress(step, rows)).select(*stored.columns)
    # The local sort costs little on new rows alone, and keeps the embedded engine (Sail 0.7) from merging the
    # transform's projections into its append, which then fails to resolve `text` inside a lambda.
    store.append(fresh.sortWithinPartitions("doc_id"), step.output)


def _progress(step: PerDocumentStep, rows: DataFrame) -> Optional[Progress]:
    # Counting the rows is the lines' one extra cost, so it is skipped when they are off.
    return Progress(step.name, rows.count()) if step.reports_progress and interval_s() > 0 else None
