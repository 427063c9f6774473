"""Which stages are up to date: the ``stage_runs`` table.

After a stage has written all of its tables, its fingerprint is recorded: a
hash of the stage name, its config section and the fingerprint of the stage
before it (for ingest, the source files' paths, sizes and modification times).
``samplemix run`` skips a stage whose recorded fingerprint matches and whose
tables exist, so a killed run resumes where it stopped; ``--force`` reruns
everything. A stage killed before it finished has no new record, so it runs
again. Upstream changes invalidate every later stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from typing import Optional

from pyspark.sql import SparkSession

from samplemix_spark.tables.files import is_remote, resolve_sources, strip_file_scheme, table_files, table_name
from samplemix_spark.tables.store import TableStore

STATE_TABLE = "stage_runs"
# The pipeline's stages in the order `samplemix run` runs them.
STAGES = ("ingest", "quality", "embed", "cluster", "assign", "domains", "diversity", "mix", "report")
SCHEMA = "stage string, fingerprint string, finished_at string, seconds double, hash_scheme string"


def source_signature(sources: list[str], spark: Optional[SparkSession] = None) -> list:
    """Path, size and modification time of each local source file (remote URIs by name only).

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


def _files_signature(path: str) -> list:
    """[path, size, mtime] of each file under a local path; a URI (or a path not on this node) by name."""
    local = strip_file_scheme(path)
    if is_remote(path) or not os.path.exists(local):
        return [[path]]
    signature = []
    for root, _, files in os.walk(local) if os.path.isdir(local) else [("", [], [local])]:
        for name in sorted(files):
            full = os.path.join(root, name)
            stat = os.stat(full)
            signature.append([full, stat.st_size, stat.st_mtime_ns])
    return signature


def fingerprint(stage: str, section: object, previous: str, extra: object = None) -> str:
    record = getattr(section, "fingerprint_record", None)
    config = record() if record is not None else asdict(section) if section is not None else None
    payload = {"stage": stage, "config": config,
               "previous": previous, "extra": extra}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


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
                             r.get("hash_scheme") or "v1") for r in rows}

    def record(self, stage: str, stage_fingerprint: str, seconds: float) -> None:
        self.record_many({stage: (stage_fingerprint, seconds)})

    def record_many(self, runs: dict[str, tuple[str, float]]) -> None:
        """Record stage -> (fingerprint, seconds) for several stages in one write."""
        finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        scheme = self.store.hash_scheme
        rows = {**self._rows(), **{stage: (stage, fp, finished, float(sec), scheme)
                                   for stage, (fp, sec) in runs.items()}}
        self.store.write(self.spark.createDataFrame([rows[s] for s in sorted(rows)], SCHEMA), STATE_TABLE)

    def is_current(self, stage: str, stage_fingerprint: str, tables: list[str]) -> bool:
        return self.recorded().get(stage) == stage_fingerprint and all(self.store.exists(t) for t in tables)


def stage_fingerprint(stage: str, cfg, previous: Optional[str], spark: Optional[SparkSession] = None) -> str:
    """The fingerprint of ``stage`` under ``cfg`` after a stage with fingerprint ``previous``.

    ``spark`` is needed only to list the files behind ``table:`` sources.
    """
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
    return fingerprint(stage, sections[stage], previous or "", extra)
