"""Stage registry and runner: checks every step first, then times each and prints rows, time and rows/s."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

# Every stage, in pipeline order; `samplemix run` runs those that its methods need.
STAGES = ("ingest", "quality", "embed", "cluster", "assign", "diversity", "mix", "report")
# Jobs run on their own: labelling and training feed the quality model.
EXTRA_JOBS = ("annotate", "train-quality", "score-quality")


def pipeline_stages(cfg: SampleMixConfig) -> tuple[str, ...]:
    """The stages `samplemix run` runs: embed/cluster/assign only for k-means diversity."""
    if cfg.diversity.method == "kmeans":
        return STAGES
    return tuple(s for s in STAGES if s not in ("embed", "cluster", "assign"))


class Step(Protocol):
    name: str

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """Write the stage's tables; return rows written per table."""


def make_step(stage: str, cfg: SampleMixConfig) -> Step:
    """The step object for a stage or job name; model code is imported only when asked for."""
    if stage == "ingest":
        from samplemix_spark.ingest import IngestStep
        return IngestStep(cfg)
    if stage == "quality":
        from samplemix_spark.quality import quality_step
        return quality_step(cfg)
    if stage == "diversity":
        from samplemix_spark.diversity import diversity_step
        return diversity_step(cfg)
    if stage == "embed":
        from samplemix_spark.diversity.embed import EmbedStep
        return EmbedStep(cfg)
    if stage == "cluster":
        from samplemix_spark.diversity.cluster import ClusterStep
        return ClusterStep(cfg)
    if stage == "assign":
        from samplemix_spark.diversity.assign import AssignStep
        return AssignStep(cfg)
    if stage == "mix":
        from samplemix_spark.mixing import MixStep
        return MixStep(cfg)
    if stage == "report":
        from samplemix_spark.report import ReportStep
        return ReportStep(cfg)
    if stage == "annotate":
        from samplemix_spark.quality.annotate import AnnotateStep
        return AnnotateStep(cfg)
    if stage == "train-quality":
        from samplemix_spark.quality.train import TrainQualityStep
        return TrainQualityStep(cfg)
    if stage == "score-quality":
        from samplemix_spark.quality.scorer import ModelQuality
        return ModelQuality(cfg)
    raise ValueError(f"unknown stage {stage!r}")


def check_steps(steps: list[Step]) -> None:
    """Run each step's ``check`` (paths, models, endpoints): fails before any Spark work."""
    for step in steps:
        check = getattr(step, "check", None)
        if check is not None:
            check()


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


def run_step(spark: SparkSession, cfg: SampleMixConfig, step: Step) -> StageResult:
    """Run one step on the driver; its Spark work runs wherever ``spark`` sends it."""
    store = TableStore(spark, cfg.tables)
    log.info("stage %s: started", step.name)
    started = time.perf_counter()
    rows = step.run(spark, store)
    result = StageResult(step.name, rows, time.perf_counter() - started)
    log.info(result.describe())
    return result


def run_stage(spark: SparkSession, cfg: SampleMixConfig, stage: str) -> StageResult:
    step = make_step(stage, cfg)
    check_steps([step])
    return run_step(spark, cfg, step)


def run_pipeline(spark: SparkSession, cfg: SampleMixConfig, stages: tuple[str, ...] | None = None) -> list[StageResult]:
    """Check every stage, then run them in order (default: the stages of `samplemix run`)."""
    stages = pipeline_stages(cfg) if stages is None else stages
    steps = [make_step(stage, cfg) for stage in stages]
    check_steps(steps)
    return [run_step(spark, cfg, step) for step in steps]
