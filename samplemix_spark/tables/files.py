"""Data files: naming them, and reaching them with pyarrow on the driver or an executor.

Stages that read a table's files directly (the proxy's training stream, the
held-out documents, candidate counts) and ingest's reader open paths and URIs
through one helper, so that a scheme pyarrow does not know fails with the same
line everywhere. Source globs are expanded here too, for ingest and for the
stage fingerprints (``state``) alike.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from samplemix_spark.errors import InputError, TableError

if TYPE_CHECKING:
    import pyarrow.parquet
    from pyspark.sql import DataFrame, SparkSession

    from samplemix_spark.tables.store import TableStore


GLOB_CHARS = set("*?[")
_TABLE_NAME = re.compile(r"[A-Za-z0-9_`-]+(\.[A-Za-z0-9_`-]+){0,2}")
# A source named ``table:catalog.schema.name`` is a table of the engine's catalog, not a path.
TABLE_PREFIX = "table:"


def table_name(source: str) -> str | None:
    """The catalog table a source names (``table:main.lake.docs`` -> ``main.lake.docs``), or None for a path."""
    return source[len(TABLE_PREFIX):] if source.startswith(TABLE_PREFIX) else None


def require_sources(sources: list[str]) -> None:
    """One line when the source list is empty."""
    if not sources:
        raise InputError("config key 'ingest.sources' is empty: name at least one file, folder, glob or table")


def split_sources(sources: list[str]) -> tuple[list[str], list[str]]:
    """(paths, catalog table names) of a source list, each in the configured order."""
    require_sources(sources)
    return ([s for s in sources if table_name(s) is None],
            [table_name(s) for s in sources if table_name(s) is not None])


def read_table(spark: "SparkSession", name: str) -> "DataFrame":
    """A catalog table (``catalog.schema.name``, ``schema.name`` or ``name``); one line naming it when absent.

    Existence is asked of the catalog first, so a missing table reads the same on every engine.
    """
    if not _TABLE_NAME.fullmatch(name):
        raise InputError(f"ingest source 'table:{name}': not a table name; expected table:catalog.schema.name")
    if not spark.catalog.tableExists(name):
        raise InputError(f"ingest source 'table:{name}': no such table in the engine's catalog")
    try:
        frame = spark.read.table(name)
        frame.schema  # noqa: B018 - Spark Connect resolves the table only when asked for its schema
    except Exception as exc:  # noqa: BLE001 - engines raise different classes for a missing table
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"ingest source 'table:{name}': cannot read the table ({first})") from None
    return frame


def table_files(spark: "SparkSession", name: str) -> list[str]:
    """The data files behind a catalog table now (a Delta table's current snapshot), for fingerprints."""
    return sorted(read_table(spark, name).inputFiles())


def resolve_sources(sources: list[str]) -> list[str]:
    """Expand local globs and check local paths exist; remote URIs and catalog tables pass through unchanged."""
    require_sources(sources)
    resolved: list[str] = []
    for source in sources:
        if is_remote(source) or table_name(source) is not None:
            resolved.append(source)
            continue
        local = strip_file_scheme(source)
        matches = sorted(glob.glob(local)) if GLOB_CHARS & set(local) else glob.glob(glob.escape(local))
        if not matches:
            raise InputError(f"ingest source {source!r} matches no file")
        resolved.extend(matches)
    return resolved


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def strip_file_scheme(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def filesystem_for(path: str, what: str = "path"):
    """(pyarrow filesystem, path inside it) for a local path or a URI (s3://, gs://, hdfs://, ...)."""
    import pyarrow as pa
    from pyarrow import fs

    if not is_remote(path):
        return fs.LocalFileSystem(), strip_file_scheme(path)
    try:
        return fs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        scheme = path.split("://", 1)[0]
        raise InputError(f"{what} {path!r}: no filesystem for scheme {scheme!r} in pyarrow ({exc}); "
                         "use a local or mounted path, or s3://, gs://, hdfs://") from exc


def parquet_files(files: tuple) -> Iterator["pyarrow.parquet.ParquetFile"]:
    """Each of ``files`` opened for reading by row group (where a proxy trains): nothing is read until asked."""
    import pyarrow.parquet as pq

    for path in files:
        filesystem, inner = filesystem_for(path)
        with filesystem.open_input_file(inner) as raw:
            yield pq.ParquetFile(raw)


def snapshot_files(store: "TableStore", table: str = "output") -> list[str]:
    """The data files of ``table``'s current version (driver side).

    JVM Spark names them (``inputFiles``); the embedded engine does not, so a
    Delta table's log is read with the ``deltalake`` package, and a Parquet table,
    whose overwrite swaps the whole folder, is every data file in its folder.
    """
    frame = store.read(table)
    files = sorted(frame.inputFiles())
    if files:
        return files
    location = store.location(table)
    if store.cfg.format == "delta":
        try:
            from deltalake import DeltaTable
        except ImportError as exc:
            raise TableError("listing a Delta table's files on this engine needs the deltalake package "
                             "(pip install 'samplemix-spark[local]')") from exc
        return sorted(DeltaTable(location).file_uris())
    root = Path(location)
    return sorted(str(p) for p in root.rglob("*.parquet") if not _hidden(p.relative_to(root)))


def _hidden(relative: Path) -> bool:
    """Staging folders and metadata (``.name``, ``_name``) are not part of a Parquet table."""
    return any(part.startswith((".", "_")) for part in relative.parts)
