"""Which stages are up to date: the ``stage_runs`` table.

After a stage has written all of its tables, its fingerprint is recorded: a
hash of the stage name, its config section and the fingerprint of the stage
before it (for ingest, also the source files: path as the config names it, size,
and a digest of their content). ``samplemix run`` skips a stage whose recorded
fingerprint matches and whose tables exist, so a killed run resumes where it
stopped; ``--force`` reruns everything. A stage killed before it finished has no
new record, so it runs again. Upstream changes invalidate every later stage.

Files are known by content, not by timestamp: a copy of a finished warehouse and
its sources (tar, rsync, a cache restore), or the same folder moved elsewhere
with a config that names the sources relatively, finds every stage current. A
file's digest covers its first and last ``DIGEST_BYTES`` (the whole of a smaller
file), so fingerprinting a terabyte reads two MiB a file; a same-size edit in the
middle of a large file goes unseen (``--force`` reruns). Object-store files are
known by size and the store's modification time. Each record also keeps what the
fingerprint was made of (``inputs``), so a stage that reruns says why: a source
file that changed, came or went, a setting that changed, or an earlier stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Optional

from pyspark.sql import SparkSession

from samplemix_spark.errors import InputError
from samplemix_spark.tables.files import (filesystem_for, is_remote, resolve_sources, strip_file_scheme, table_files,
                                          table_name)
from samplemix_spark.tables.store import TableStore

log = logging.getLogger(__name__)
STATE_TABLE = "stage_runs"
# The pipeline's stages in the order `samplemix run` runs them.
STAGES = ("ingest", "quality", "embed", "cluster", "assign", "domains", "diversity", "mix", "report")
SCHEMA = "stage string, fingerprint string, finished_at string, seconds double, hash_scheme string, inputs string"


def source_signature(sources: list[str], spark: Optional[SparkSession] = None) -> list:
    """[path, size, content digest] of each local source file (object-store files: [path, size, modified]).

    Paths stay as the config names them (a relative source gives relative paths).
    A catalog table counts as the data files behind it now, so a new Delta version or a
    rewritten Parquet table changes the signature; the files are named by the engine.
    """
    signature = []
    for path in resolve_sources(sources):
        name = table_name(path)
        if name is not None:
            if spark is None:
                raise ValueError(f"the signature of table:{name} needs a Spark session")
            signature.append([path, *[entry for file in table_files(spark, name) for entry in _files_signature(file)]])
        else:
            signature.extend(_files_signature(path))
    return signature


DIGEST_BYTES = 1 << 20


def content_digest(path: str, size: int) -> str:
    """BLAKE2b of a file's first and last ``DIGEST_BYTES`` (all of it when smaller than twice that)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        if size <= 2 * DIGEST_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(DIGEST_BYTES))
            handle.seek(size - DIGEST_BYTES)
            digest.update(handle.read(DIGEST_BYTES))
    return digest.hexdigest()


def _files_signature(path: str) -> list:
    """[path, size, digest] of each file under a local path; object-store files by size and modification time;
    a path this node cannot see by name."""
    local = strip_file_scheme(path)
    if is_remote(path):
        return _remote_signature(path)
    if not os.path.exists(local):
        return [[path]]
    signature = []
    for root, _, files in os.walk(local) if os.path.isdir(local) else [("", [], [local])]:
        for name in sorted(files):
            full = os.path.join(root, name)
            size = os.stat(full).st_size
            signature.append([full, size, content_digest(full, size)])
    return signature


def _remote_signature(path: str) -> list:
    """[uri, size, modified] of each object under a URI, as the store lists them (by name if it cannot)."""
    from pyarrow import fs

    try:
        filesystem, inner = filesystem_for(path)
        info = filesystem.get_file_info(inner)
        infos = ([info] if info.type == fs.FileType.File
                 else filesystem.get_file_info(fs.FileSelector(inner, recursive=True)))
    except (OSError, ValueError, InputError) as error:
        log.warning("ingest source %s: its files could not be listed (%s); it is known by name only, so a "
                    "rewritten file is not seen: run with --force after changing it", path, error)
        return [[path]]
    scheme = path.split("://", 1)[0]
    return [[f"{scheme}://{i.path}", i.size, i.mtime_ns] for i in sorted(infos, key=lambda i: i.path)
            if i.type == fs.FileType.File]


def why_changed(stage: str, before: Optional[dict], after: dict) -> str:
    """One line: what differs between a stage's recorded inputs and its current ones."""
    if before is None:
        return "its last run was recorded before runs kept what they were made of"
    reasons = _source_changes(_sources(before), _sources(after))
    if before.get("config") != after.get("config"):
        changed = changed_keys(before.get("config"), after.get("config"))
        reasons.append(f"settings changed: {', '.join(changed[:5]) or 'the stage section'}")
    if before.get("previous") != after.get("previous") and stage != "ingest":
        reasons.append("an earlier stage changed")
    if not reasons and before != after:
        reasons.append("what the fingerprint is made of changed (hash scheme or labelling)")
    return "; ".join(reasons) or "its output table is missing"


def _sources(inputs: dict) -> dict:
    """path -> (size, digest) of the recorded source files (a table source's files included)."""
    extra = inputs.get("extra")
    while isinstance(extra, dict):
        extra = extra.get("sources")
    files = {}
    for entry in extra or []:
        for item in (entry[1:] if entry and isinstance(entry[0], str) and str(entry[0]).startswith("table:")
                     else [entry]):
            files[item[0]] = tuple(item[1:])
    return files


def _source_changes(before: dict, after: dict) -> list[str]:
    lines = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None:
            lines.append(f"new source file {path}")
        elif new is None:
            lines.append(f"source file {path} is gone")
        elif old != new:
            sizes = f"size {old[0]:,} -> {new[0]:,}" if old and new and old[0] != new[0] else "same size, new content"
            lines.append(f"source file {path} changed: {sizes}")
    return lines[:5] + ([f"and {len(lines) - 5} more files"] if len(lines) > 5 else [])


def changed_keys(before, after, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return [key for k in sorted(set(before) | set(after))
                for key in changed_keys(before.get(k), after.get(k), f"{prefix}{k}.")]
    return [f"{prefix.rstrip('.')}: {before!r} -> {after!r}"] if before != after else []


def fingerprint_inputs(stage: str, section: object, previous: str, extra: object = None) -> dict:
    """What a stage's fingerprint is made of, as JSON-ready data (recorded, so a rerun can say what changed)."""
    record = getattr(section, "fingerprint_record", None)
    config = record() if record is not None else asdict(section) if section is not None else None
    return json.loads(json.dumps({"stage": stage, "config": config, "previous": previous, "extra": extra},
                                 sort_keys=True, default=str))


def fingerprint(stage: str, section: object, previous: str, extra: object = None) -> str:
    return hash_inputs(fingerprint_inputs(stage, section, previous, extra))


def hash_inputs(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class StageState:
    """Read and record stage fingerprints in the ``stage_runs`` table."""

    def __init__(self, spark: SparkSession, store: TableStore) -> None:
        self.spark = spark
        self.store = store

    def recorded(self) -> dict[str, str]:
        """stage -> fingerprint of its last finished run."""
        return {stage: row[1] for stage, row in self._rows().items()}

    def _rows(self) -> dict[str, tuple]:
        table = self.store.read_if_exists(STATE_TABLE)
        if table is None:
            return {}
        rows = [row.asDict() for row in table.collect()]
        return {r["stage"]: (r["stage"], r["fingerprint"], r["finished_at"], r.get("seconds"),
                             r.get("hash_scheme") or "v1", r.get("inputs")) for r in rows}

    def recorded_inputs(self, stage: str) -> Optional[dict]:
        """What the stage's recorded fingerprint was made of; None for a record from before they were kept."""
        row = self._rows().get(stage)
        return json.loads(row[5]) if row and row[5] else None

    def record(self, stage: str, inputs: dict, seconds: float) -> None:
        self.record_many({stage: (inputs, seconds)})

    def record_many(self, runs: dict[str, tuple[dict, float]]) -> None:
        """Record stage -> (fingerprint inputs, seconds) for several stages in one write."""
        finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        scheme = self.store.hash_scheme
        rows = {**self._rows(), **{stage: (stage, hash_inputs(inputs), finished, float(sec), scheme,
                                           json.dumps(inputs, sort_keys=True))
                                   for stage, (inputs, sec) in runs.items()}}
        self.store.write(self.spark.createDataFrame([rows[s] for s in sorted(rows)], SCHEMA), STATE_TABLE)

    def is_current(self, stage: str, inputs: dict, tables: list[str]) -> bool:
        return self.recorded().get(stage) == hash_inputs(inputs) and all(self.store.exists(t) for t in tables)

    def why_stale(self, stage: str, inputs: dict) -> str:
        """Why ``stage`` is not current under ``inputs`` (``why_changed``)."""
        row = self._rows().get(stage)  # one read of the table for the fingerprint and its inputs
        if row is None:
            return "no earlier run in this warehouse"
        if row[1] == hash_inputs(inputs):
            return "its output table is missing"
        return why_changed(stage, json.loads(row[5]) if row[5] else None, inputs)


def stage_fingerprint(stage: str, cfg, previous: Optional[str], spark: Optional[SparkSession] = None) -> str:
    """The fingerprint of ``stage`` under ``cfg`` after a stage with fingerprint ``previous``.

    ``spark`` is needed only to list the files behind ``table:`` sources.
    """
    return hash_inputs(stage_inputs(stage, cfg, previous, spark))


def stage_inputs(stage: str, cfg, previous: Optional[str], spark: Optional[SparkSession] = None) -> dict:
    """What ``stage_fingerprint`` hashes (``fingerprint_inputs``)."""
    sections = {"ingest": cfg.ingest, "quality": cfg.quality, "embed": cfg.diversity, "cluster": cfg.diversity,
                "assign": cfg.diversity, "domains": cfg.domain, "diversity": cfg.diversity, "mix": cfg.mixing,
                "report": None}
    extra = source_signature(cfg.ingest.sources, spark) if stage == "ingest" else None
    if stage == "ingest" and cfg.domain.method != "column":
        # Labels from a model are part of what ingest writes (the default keeps its old fingerprint).
        extra = {"sources": extra, "domain": asdict(cfg.domain)}
    scheme = cfg.tables.hash_scheme
    if stage == "ingest" and scheme not in ("v1", "auto"):
        # Every later stage chains on ingest's fingerprint. v1 keeps the fingerprints it always had, so a
        # warehouse written before schemes were recorded stays current.
        extra = {"sources": extra, "hash_scheme": scheme}
    return fingerprint_inputs(stage, sections[stage], previous or "", extra)
