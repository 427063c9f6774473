"""Stage registry and runner: times each stage and prints rows, elapsed time and rows/s."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.diversity import diversity_step
from samplemix_spark.ingest import IngestStep
from samplemix_spark.mixing import MixStep
from samplemix_spark.quality import quality_step
from samplemix_spark.report import ReportStep
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

STAGES = ("ingest", "quality", "diversity", "mix", "report")


class Step(Protocol):
    name: str

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """Write the stage's tables; return rows written per table."""


def make_step(stage: str, cfg: SampleMixConfig) -> Step:
    factories = {"ingest": IngestStep, "quality": quality_step, "diversity": diversity_step,
                 "mix": MixStep, "report": ReportStep}
    return factories[stage](cfg)


@dataclass
class StageResult:
    stage: str
    rows: dict[str, int]
    seconds: float

    def describe(self) -> str:
        written = ", ".join(f"{table} {n:,} rows" for table, n in self.rows.items())
        main_rows = next(iter(self.rows.values()), 0)
        rate = main_rows / self.seconds if self.seconds > 0 else float("inf")
        return f"stage {self.stage}: {written} in {self.seconds:.1f} s ({rate:,.0f} rows/s)"


def run_stage(spark: SparkSession, cfg: SampleMixConfig, stage: str) -> StageResult:
    """Run one stage on the driver; its Spark work runs wherever ``spark`` sends it."""
    store = TableStore(spark, cfg.tables)
    log.info("stage %s: started", stage)
    started = time.perf_counter()
    rows = make_step(stage, cfg).run(spark, store)
    result = StageResult(stage, rows, time.perf_counter() - started)
    log.info(result.describe())
    return result


def run_pipeline(spark: SparkSession, cfg: SampleMixConfig, stages: tuple[str, ...] = STAGES) -> list[StageResult]:
    """Run ``stages`` in order and return their results."""
    return [run_stage(spark, cfg, stage) for stage in stages]
