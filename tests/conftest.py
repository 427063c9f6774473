"""Shared fixtures: one embedded (Sail) Spark session per test run, and corpus helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("RUST_LOG", "warn,sail_common::actor=error")

from samplemix_spark.config import EngineConfig, SampleMixConfig, build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark():
    session = build_session(EngineConfig(kind="embedded"))
    yield session
    session.stop()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def make_config(warehouse: Path, sources: list, **sections) -> SampleMixConfig:
    """A config on the embedded engine writing under ``warehouse``; ``sections`` override keys."""
    data = {
        "engine": {"kind": "embedded"},
        "tables": {"format": "delta", "warehouse": str(warehouse)},
        "ingest": {"sources": [str(s) for s in sources], "quality_column": "quality_score",
                   "diversity_column": "diversity_score"},
        "quality": {"method": "column"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return build_config(data)


def store_for(spark, cfg: SampleMixConfig) -> TableStore:
    return TableStore(spark, cfg.tables)
