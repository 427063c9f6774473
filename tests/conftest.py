"""Shared fixtures: one embedded (Sail) Spark session per test run, and corpus helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Every JVM a test starts (local Spark in this process or a subprocess, a standalone cluster's
# master, workers and executors) lives for seconds on tiny data, where the optimising JIT compiler's
# work is never paid back: the quick tier alone and one GC thread cut their CPU time by a third to a
# half on two cores.
# Compilation tiers change speed, never results.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

from samplemix_spark.config import EngineConfig, SampleMixConfig, build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402

from .realtext import quality_labels  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# pyspark 3.5 (the Spark of EMR 7 and of Databricks LTS before 17), installed beside the
# main environment by the README's test command with `pip install --target`: the Spark of
# the 3.5 standalone cluster in test_pipeline_parity.py, while the tests keep pyspark 4.
PYSPARK35 = Path(os.environ.get("SAMPLEMIX_PYSPARK35", REPO / ".venv" / "spark35"))


def spark35_home() -> Path:
    """The SPARK_HOME of pyspark 3.5; fails with the command that installs it when it is missing."""
    home = PYSPARK35 / "pyspark"
    if not home.is_dir():
        pytest.fail(f"pyspark 3.5 is not installed at {PYSPARK35}: run the README's test command, or point "
                    "SAMPLEMIX_PYSPARK35 at a `pip install --target` folder holding pyspark 3.5 and py4j")
    return home


# The longest modules (whole pipelines on JVM Spark and a standalone cluster) start first, so
# that with `-n` (pytest-xdist, whole modules per worker) the short ones fill the other
# workers meanwhile instead of leaving one long module running alone at the end.
LONGEST_FIRST = ("test_pipeline_parity.py", "test_jvm_parity.py", "test_ingest_formats.py")


def pytest_collection_modifyitems(items: list) -> None:
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each module is kept


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
        "diversity": {"method": "column"},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return build_config(data)


def store_for(spark, cfg: SampleMixConfig) -> TableStore:
    return TableStore(spark, cfg.tables)


@pytest.fixture(scope="session")
def quality_checkpoint(spark, tmp_path_factory):
    """A frozen-encoder ordinal checkpoint trained on real text, with its training report."""
    from samplemix_spark.pipeline import run_stage

    root = tmp_path_factory.mktemp("quality_model")
    labels = write_jsonl(root / "labels.jsonl", quality_labels())
    cfg = make_config(root / "wh", [labels], quality={"train": {
        "labels": [str(labels)], "mode": "frozen", "compare": False, "max_tokens": 128,
        "holdout_fraction": 0.25, "output": str(root / "checkpoint")}})
    run_stage(spark, cfg, "train-quality")
    return root / "checkpoint", json.loads((root / "checkpoint" / "metrics.json").read_text()), labels


def write_scored_tables(spark, cfg: SampleMixConfig, frame) -> None:
    """Write documents, quality and diversity tables from a pandas frame (doc_id, domain, text,
    n_tokens, quality, diversity, and any ingest.score_columns), staged through Parquet so large frames
    stay off the wire."""
    from samplemix_spark.config import score_column_name

    path = f"{cfg.tables.warehouse}_scored_source.parquet"
    frame.to_parquet(path)
    source = spark.read.parquet(path)
    store = store_for(spark, cfg)
    extra = [score_column_name(n) for n in cfg.ingest.score_columns]
    store.write(source.select("doc_id", "domain", "text", "n_tokens", *extra), "documents")
    store.write(source.select("doc_id", "quality"), "quality")
    store.write(source.select("doc_id", "diversity"), "diversity")
