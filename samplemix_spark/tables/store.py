"""The one place that knows table names, format and location.

A table is either a path under ``tables.warehouse`` (Delta or Parquet) or a
catalog name ``catalog.schema.<prefix><table>`` (Unity Catalog, Glue, Hive).
Every write is a whole-table overwrite that readers see atomically:

- Delta: an overwrite is one commit, so a killed job leaves the previous version.
- Catalog: ``saveAsTable`` in overwrite mode, a single Delta commit on Databricks.
- Parquet (local paths only, for JVM runs without Delta jars): the data is written
  to a staging folder and swapped in by directory renames.

A refresh adds rows to the per-document tables by ``append``, one Delta commit.

Fault injection, for tests of the above: with ``SAMPLEMIX_FAULT_KILL_DURING_WRITE``
set to a table name, the write (or append) of that table kills its own process (SIGKILL)
from inside the write's data stream, after the first record batch has gone to
the writer and before the commit. On the embedded engine the UDF runs in the
driver's process, so the whole job dies mid-write, as in a real crash.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from pyspark.sql import DataFrame, SparkSession

from samplemix_spark.config import TablesConfig
from samplemix_spark.engine.progress import in_pass
from samplemix_spark.errors import TableError
from samplemix_spark.tables.files import filesystem_for

log = logging.getLogger(__name__)
FAULT_ENV = "SAMPLEMIX_FAULT_KILL_DURING_WRITE"
# The writer lease this process holds, by the location of its ``lease`` table: a check each write
# runs first, so a command whose lease was taken over writes nothing more (``tables.lease``).
WRITE_GUARDS: dict[str, Callable[[str], None]] = {}

# Stage outputs, in pipeline order. The producing stage is named so that a
# missing-table error can say what to run.
TABLES: dict[str, str] = {
    "documents": "ingest",
    "rejects": "ingest",
    "holdout": "ingest",
    "holdout_split": "ingest",
    "holdout_thresholds": "ingest",
    "holdout_shingles": "ingest",
    "holdout_seen": "ingest",
    "holdout_overlap": "ingest",
    "holdout_candidates": "ingest",
    "source_files": "ingest",
    "increment": "run --incremental",
    "annotations": "annotate",
    "annotation_rejects": "annotate",
    "quality_labels": "train-quality",
    "perplexity_models": "quality (method perplexity)",
    "quality": "quality",
    "embeddings": "embed",
    "kmeans_sample": "cluster",
    "centroids": "cluster",
    "assignments": "assign",
    "domain_groups": "domains",
    "cluster_stats": "diversity",
    "diversity": "diversity",
    "mix_scores": "mix",
    "weights": "mix",
    "mix_run": "mix",
    "output": "mix",
    "report_domains": "report",
    "report_summary": "report",
    "stage_runs": "run",
    "lease": "any command that writes (the writer lease)",
    "sweep": "sweep",
    "sweep_scores": "sweep",
    "holdout_scored": "evaluate, tune, mix (bimix swarm): the held-out documents proxies are scored on",
    "proxy_copies": "evaluate, tune, mix (bimix swarm): the copies each proxy trains on, about its byte budget",
    "proxy_eval": "evaluate",
    "proxy_eval_docs": "evaluate",
    "proxy_eval_step_docs": "evaluate",
    "proxy_eval_curves": "evaluate",
    "reference_counts": "evaluate (its natural reference, under the prefix reference_natural_)",
    "search_scores": "tune, tune --method quadmix, mix (bimix swarm)",
    "tune_counts": "tune",
    "tune": "tune",
    "tune_docs": "tune",
    "tune_regression": "tune --domains",
    "tune_quadmix": "tune --method quadmix",
    "tune_quadmix_docs": "tune --method quadmix",
    "tune_quadmix_confirm": "tune --method quadmix",
    "tune_quadmix_confirm_docs": "tune --method quadmix",
    "bimix_counts": "mix (bimix swarm)",
    "bimix_observations": "mix (bimix swarm)",
    "bimix_fit": "mix (bimix)",
}


def local_folder(location: str) -> Optional[Path]:
    """The local folder of a path or ``file://`` URI; None for an object-store URI."""
    if "://" in location and not location.startswith("file://"):
        return None
    return Path(location[len("file://"):] if location.startswith("file://") else location)


@dataclass
class TableStore:
    """Reads and atomically overwrites the pipeline's tables. Driver-side only."""

    spark: SparkSession
    cfg: TablesConfig

    def location(self, table: str) -> str:
        """The path or the catalog name that holds ``table``."""
        if table not in TABLES:
            raise TableError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")
        name = f"{self.cfg.prefix}{table}"
        if self.cfg.catalog:
            return f"{self.cfg.catalog}.{name}"
        root = self.cfg.warehouse
        local = local_folder(root)
        if local is not None:
            return str(local.resolve() / name)
        return f"{root.rstrip('/')}/{name}"

    def sql_ref(self, table: str) -> str:
        """How SQL text names ``table``: the catalog name or ``format.`path```."""
        location = self.location(table)
        return location if self.cfg.catalog else f"{self.cfg.format}.`{location}`"

    def read(self, table: str) -> DataFrame:
        location = self.location(table)
        try:
            if self.cfg.catalog:
                df = self.spark.table(location)
            else:
                df = self.spark.read.format(self.cfg.format).load(location)
            df.schema  # forces analysis, so a missing table fails here
        except Exception as exc:  # noqa: BLE001 - engines raise different classes
            raise TableError(f"table '{table}' not found at {location}; run "
                             f"`samplemix {TABLES[table]}` first ({_first_line(exc)})") from exc
        return df

    def pinned(self, table: str) -> DataFrame:
        """``table`` at its current Delta version, which later writes to it do not change; a plain ``read`` is
        read again at every action, so it would see them (Delta only)."""
        location, version = self.location(table), self.version(table)
        if self.cfg.catalog:
            return self.spark.sql(f"SELECT * FROM {location} VERSION AS OF {version}")
        return self.spark.read.format("delta").option("versionAsOf", version).load(location)

    def version(self, table: str) -> int:
        """The current version of a Delta ``table``: its newest commit in ``_delta_log`` (the catalog's history for
        a catalog table)."""
        location = self.location(table)
        if self.cfg.catalog:
            return int(self.spark.sql(f"DESCRIBE HISTORY {location} LIMIT 1").collect()[0]["version"])
        from pyarrow import fs

        filesystem, inner = filesystem_for(f"{location}/_delta_log")
        names = [info.base_name for info in filesystem.get_file_info(fs.FileSelector(inner, allow_not_found=True))]
        versions = [int(name[:-5]) for name in names if name.endswith(".json") and name[:-5].isdigit()]
        if not versions:
            raise TableError(f"table '{table}' has no Delta log at {location}; run `samplemix {TABLES[table]}` first")
        return max(versions)

    def read_if_exists(self, table: str) -> Optional[DataFrame]:
        """The table, or None when it has not been written yet."""
        try:
            return self.read(table)
        except TableError:
            return None

    def exists(self, table: str) -> bool:
        return self.read_if_exists(table) is not None

    @property
    def hash_scheme(self) -> str:
        """The hash scheme of this warehouse's document choices (``hashing``): the configured one, or with
        ``auto`` the one ``stage_runs`` recorded (``v1`` before schemes were recorded; the current for a new one)."""
        if self.cfg.hash_scheme != "auto":
            return self.cfg.hash_scheme
        from samplemix_spark.hashing import CURRENT_SCHEME

        runs = self.read_if_exists("stage_runs")
        if runs is None:
            return CURRENT_SCHEME
        if "hash_scheme" not in runs.columns:
            return "v1"
        recorded = {r["stage"]: r["hash_scheme"] for r in runs.select("stage", "hash_scheme").collect()}
        return recorded.get("ingest") or next((s for s in recorded.values() if s), "v1")

    def write(self, df: DataFrame, table: str, partition_by: Optional[Sequence[str]] = None) -> None:
        """Overwrite ``table`` with ``df`` so that readers see the old or the new table, never a mix."""
        location = self.location(table)
        writer = self._checked(df, table).write.mode("overwrite").format(self.cfg.format)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        with in_pass(f"writing table {table}"):
            self._save(writer, location, df.schema)
        log.info("wrote table %s -> %s", table, location)

    def _checked(self, df: DataFrame, table: str) -> DataFrame:
        """``df`` once this process may write ``table``: its writer lease holds (if it took one)."""
        guard = WRITE_GUARDS.get(self.location("lease"))
        if guard is not None:
            guard(table)
        return _killed_mid_stream(df, table) if os.environ.get(FAULT_ENV) == table else df

    @property
    def appends_atomically(self) -> bool:
        """Whether ``append`` commits all of its rows or none: Delta and catalog tables, not Parquet."""
        return self.cfg.format == "delta" or bool(self.cfg.catalog)

    def append(self, df: DataFrame, table: str) -> None:
        """Add ``df``'s rows to ``table`` in one commit (Delta), which readers see whole or not at all."""
        if not self.appends_atomically:
            raise TableError(f"table '{table}': tables.format {self.cfg.format} has no atomic append (Delta has)")
        location = self.location(table)
        writer = self._checked(df, table).write.mode("append").format(self.cfg.format)
        with in_pass(f"appending to table {table}"), self._delta_support():
            self._commit(writer, location)
        log.info("appended to table %s -> %s", table, location)

    def update(self, rows: DataFrame, table: str, key: str, columns: dict[str, str]) -> None:
        """Set ``columns`` (column of ``table`` -> column of ``rows``) on the rows of ``table`` whose ``key`` is in
        ``rows``: one Delta MERGE, which rewrites only the data files that hold those rows."""
        sets = ", ".join(f"{column} = s.{source}" for column, source in columns.items())
        self._merge(rows, table, f"t.{key} = s.{key}", f"WHEN MATCHED THEN UPDATE SET {sets}", "updating")

    def apply_changes(self, changes: DataFrame, table: str, keys: Sequence[str]) -> None:
        """Delete and insert rows of ``table`` in one Delta MERGE on ``keys``: a row of ``changes`` whose
        ``_action`` is 'delete' removes the row with its keys, one whose ``_action`` is 'insert' is added.

        Readers see the table before or after every change, never between; only the
        data files that hold deleted rows are rewritten.
        """
        columns = [c for c in changes.columns if c != "_action"]
        on = " AND ".join(f"t.{key} = s.{key}" for key in keys)
        clauses = (f"WHEN MATCHED AND s._action = 'delete' THEN DELETE "
                   f"WHEN NOT MATCHED AND s._action = 'insert' THEN INSERT ({', '.join(columns)}) "
                   f"VALUES ({', '.join(f's.{c}' for c in columns)})")
        self._merge(changes, table, on, clauses, "changing")

    def _merge(self, rows: DataFrame, table: str, on: str, clauses: str, verb: str) -> None:
        if not self.appends_atomically:
            raise TableError(f"table '{table}': tables.format {self.cfg.format} has no MERGE (Delta has)")
        view = f"samplemix_merge_{uuid.uuid4().hex[:12]}"
        self._checked(rows, table).createOrReplaceTempView(view)
        try:
            with in_pass(f"{verb} table {table}"), self._delta_support():
                self.spark.sql(f"MERGE INTO {self.sql_ref(table)} t USING {view} s ON {on} {clauses}").collect()
        finally:
            self.spark.catalog.dropTempView(view)
        log.info("merged into table %s -> %s", table, self.location(table))

    def create(self, df: DataFrame, table: str) -> None:
        """Write ``table`` only if it does not exist yet; the engine refuses the write otherwise."""
        with self._delta_support():
            self._commit(df.write.mode("error").format(self.cfg.format), self.location(table))

    def remove_if_only(self, table: str) -> bool:
        """Delete a local warehouse folder that holds nothing but ``table``; False where it holds more."""
        folder = None if self.cfg.catalog else local_folder(self.cfg.warehouse)
        if folder is None or not folder.is_dir():
            return False
        if [entry.name for entry in folder.iterdir()] != [f"{self.cfg.prefix}{table}"]:
            return False
        shutil.rmtree(folder)
        return True

    def _save(self, writer, location: str, schema=None) -> None:
        with self._delta_support():
            if self.cfg.format == "delta" or self.cfg.catalog:
                self._commit(writer.option("overwriteSchema", "true"), location)
            else:
                self._write_parquet_swapped(writer, location, schema)

    def _commit(self, writer, location: str) -> None:
        """Save to the catalog name (creating its schema) or the path."""
        if self.cfg.catalog:
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {self.cfg.catalog}")
            writer.saveAsTable(location)
        else:
            writer.save(location)

    @contextmanager
    def _delta_support(self) -> Iterator[None]:
        """Turn the engine's missing-Delta failure into one line that says what to do."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001
            if self.cfg.format == "delta" and "DATA_SOURCE_NOT_FOUND" in str(exc):
                raise TableError("this engine has no Delta Lake support; add the Delta jars "
                                 "(engine.spark_conf) or set tables.format=parquet") from exc
            raise

    def _write_parquet_swapped(self, writer, location: str, schema=None) -> None:
        target = local_folder(location)
        if target is None:
            log.warning("parquet overwrite of %s is not atomic on remote storage; use delta", location)
            writer.save(location)
            return
        staging = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
        try:
            writer.save(str(staging))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # the old table is untouched
            raise
        if not staging.exists() and schema is not None:
            _write_empty(staging, schema)  # the embedded engine writes no folder for no rows
        retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)

    def register_views(self) -> list[str]:
        """Expose every existing table to SQL under its plain name (temp views in path mode)."""
        names = []
        for table in [] if self.cfg.catalog else TABLES:
            frame = self.read_if_exists(table)
            if frame is not None:
                frame.createOrReplaceTempView(f"{self.cfg.prefix}{table}")
                names.append(f"{self.cfg.prefix}{table}")
        return names


def _killed_mid_stream(df: DataFrame, table: str) -> DataFrame:
    """``df`` passed through a function that kills its process after handing over the first batch."""

    def run(batches):
        for batch in batches:
            yield batch
            print(f"fault injection: killing the process during the write of table '{table}'",
                  file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return df.mapInArrow(run, df.schema)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _write_empty(folder: Path, schema) -> None:
    """A Parquet table of no rows with ``schema`` (a Spark StructType), so readers find its columns."""
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema

    folder.mkdir(parents=True)
    pq.write_table(to_arrow_schema(schema).empty_table(), folder / "part-00000-empty.parquet")
