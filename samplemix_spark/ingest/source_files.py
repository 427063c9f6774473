"""The ``source_files`` table: which source files ingest has read, so a refresh opens only new and changed ones.

One row per data file (driver side; the listing is one entry per file, as the
reader's work units are): ``role`` ('train', or 'holdout' for a file of
``ingest.holdout_sources``), ``path`` as the reader names it, ``size``,
``digest`` (BLAKE2b of the first and last MiB on a local disk, ``tables.state``'s
``content_digest``; the store's modification time on an object store), ``rows``
read from it and ``ingested_at``.

A refresh compares the files listed now with the table:

- unchanged: the same path, size and digest; not opened;
- moved: a size and digest stored under a path no longer listed (a copied or
  renamed folder); not opened, and recorded under its new path;
- changed: a stored path with another size or digest, or whose last ingest did
  not finish; read again whole;
- new: read;
- gone: a stored path no longer listed; its documents stay.

Delta and catalog-table sources are not files the reader lists, so a refresh
reads them whole every time.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from pyspark.sql import DataFrame

from samplemix_spark.config import IngestConfig
from samplemix_spark.ingest.reader import FOOTER_READERS, filesystem_for, list_paths
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import is_remote, require_sources, split_sources, strip_file_scheme
from samplemix_spark.tables.state import content_digest

log = logging.getLogger(__name__)
TABLE = "source_files"
SCHEMA = "role string, path string, size long, digest string, rows long, ingested_at string"


@dataclass(frozen=True)
class SourceFile:
    role: str
    path: str
    size: int
    digest: str

    @property
    def identity(self) -> tuple:
        return self.role, self.size, self.digest


def identify(path: str, role: str) -> SourceFile:
    """A listed file's size and digest (the store's modification time for a remote file): one round trip to
    the store, so files are identified side by side."""
    if is_remote(path):
        filesystem, inner = filesystem_for(path)
        info = filesystem.get_file_info(inner)
        return SourceFile(role, path, int(info.size), f"mtime:{info.mtime_ns}")
    local = strip_file_scheme(path)
    size = os.stat(local).st_size
    return SourceFile(role, path, size, content_digest(local, size))


def tracked(ingest: IngestConfig, sources: list[str]) -> tuple[list[str], list[str]]:
    """(file sources the reader lists, sources the engine reads whole: Delta paths and catalog tables)."""
    paths, tables = split_sources(sources)
    if ingest.format == "delta":
        return [], sources
    return paths, [f"table:{name}" for name in tables]


def list_files(ingest: IngestConfig, sources: list[str], role: str) -> list[SourceFile]:
    """Every data file of the listable ``sources``, identified; an unmatched source is an error."""
    require_sources(sources)
    paths = tracked(ingest, sources)[0]
    with concurrent.futures.ThreadPoolExecutor(max_workers=FOOTER_READERS) as pool:
        return list(pool.map(lambda path: identify(path, role), list_paths(paths) if paths else []))


@dataclass
class FilePlan:
    """What a refresh reads, by role: the new and changed files, and the engine-read sources."""

    new: list[SourceFile] = field(default_factory=list)
    changed: list[SourceFile] = field(default_factory=list)
    unchanged: list[SourceFile] = field(default_factory=list)
    moved: list[SourceFile] = field(default_factory=list)
    gone: list[dict] = field(default_factory=list)
    engine: dict[str, list[str]] = field(default_factory=dict)

    def to_read(self, role: str) -> list[str]:
        """The sources to read for ``role``: new and changed files, then the engine-read sources."""
        files = [f.path for f in self.new + self.changed if f.role == role]
        return files + self.engine.get(role, [])

    @property
    def reread(self) -> list[str]:
        """Paths read again whose stored rows may already be in the tables (changed files, engine sources)."""
        return [f.path for f in self.changed] + [s for sources in self.engine.values() for s in sources]

    @property
    def listed(self) -> list[SourceFile]:
        return self.new + self.changed + self.unchanged + self.moved

    def describe(self) -> str:
        parts = [f"{len(self.new)} new", f"{len(self.changed)} changed", f"{len(self.unchanged)} unchanged"]
        if self.moved:
            parts.append(f"{len(self.moved)} moved")
        if self.gone:
            parts.append(f"{len(self.gone)} gone (their documents stay)")
        engine = sum(len(s) for s in self.engine.values())
        if engine:
            parts.append(f"{engine} Delta or catalog sources read whole")
        return ", ".join(parts)


def every_file(ingest: IngestConfig) -> FilePlan:
    """A plan that reads every source, every file as new: a full ingest."""
    roles = {"train": ingest.sources, "holdout": ingest.holdout_sources or []}
    return FilePlan(new=[f for role, sources in roles.items() if sources for f in list_files(ingest, sources, role)],
                    engine={role: tracked(ingest, sources)[1] for role, sources in roles.items() if sources})


def plan_files(store: TableStore, ingest: IngestConfig) -> FilePlan:
    """Compare the files listed now with ``source_files`` (see the module doc); logs what changed and why."""
    plan = every_file(ingest)
    listed, plan.new = plan.new, []
    stored = store.read_if_exists(TABLE)
    if stored is None:  # a warehouse from before the table: every file is read again
        plan.changed = listed
        return plan
    rows = [r.asDict() for r in stored.collect()]
    by_path = {(r["role"], r["path"]): r for r in rows}
    listed_paths = {(f.role, f.path) for f in listed}
    vacated = {(r["role"], r["size"], r["digest"]) for r in rows if (r["role"], r["path"]) not in listed_paths}
    for file in listed:
        before = by_path.get((file.role, file.path))
        if before is not None and before["ingested_at"] is None:
            log.info("ingest: source file %s: its last ingest did not finish: reading it again", file.path)
            plan.changed.append(file)
        elif before is not None and (before["size"], before["digest"]) == (file.size, file.digest):
            plan.unchanged.append(file)
        elif before is not None:
            log.info("ingest: source file %s changed (size %s -> %s%s): reading it again", file.path,
                     f"{before['size']:,}", f"{file.size:,}", "" if before["size"] != file.size else ", content")
            plan.changed.append(file)
        elif file.identity in vacated:
            plan.moved.append(file)
        else:
            plan.new.append(file)
    moved = {f.identity for f in plan.moved}
    plan.gone = [r for r in rows if (r["role"], r["path"]) not in listed_paths and
                 (r["role"], r["size"], r["digest"]) not in moved]
    return plan


def record_files(store: TableStore, plan: FilePlan, rows_read: dict[str, int],
                 stored: Optional[DataFrame] = None, pending: bool = False) -> None:
    """Write ``source_files``: every listed file, with the rows read from it now or, if unopened, before.

    With ``pending`` the files read now get no ``ingested_at``: a refresh records
    them so before its first append, and again when it is done, so a refresh
    stopped in between reads them again as changed files (rows it stored count as
    already stored, its rejects are replaced) instead of as new ones.
    """
    before = {} if stored is None else {(r["role"], r["size"], r["digest"]): r for r in stored.collect()}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    records = []
    for file in plan.listed:
        earlier = before.get(file.identity) if file.path not in rows_read else None
        rows = rows_read.get(file.path, earlier["rows"] if earlier else 0)
        records.append((file.role, file.path, file.size, file.digest, int(rows),
                        earlier["ingested_at"] if earlier else None if pending else now))
    store.write(store.spark.createDataFrame(records, SCHEMA), TABLE)
