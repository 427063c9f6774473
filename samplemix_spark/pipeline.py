"""Stage registry and runner: checks every step first, then times each and prints rows, time and rows/s."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.engine.progress import heartbeat
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.state import STAGES, StageState, hash_inputs, stage_inputs

log = logging.getLogger(__name__)

# Every stage is in STAGES, in pipeline order; `samplemix run` runs those that its methods need.
# Jobs run on their own: labelling and training feed the quality model.
EXTRA_JOBS = ("annotate", "train-quality", "score-quality")


def pipeline_stages(cfg: SampleMixConfig) -> tuple[str, ...]:
    """The stages `samplemix run` runs: embed/cluster/assign only for k-means diversity, and no diversity
    stage at all for QuaDMix unless domains come from clusters.

    Domains from clusters come after assign, and quality after them (a perplexity
    reference names domains).
    """
    if cfg.domain.method == "clusters":
        return ("ingest", "embed", "cluster", "assign", "domains", "quality", "diversity", "mix", "report")
    skipped = {"domains"} if cfg.diversity.method == "kmeans" else {"embed", "cluster", "assign", "domains"}
    if cfg.mixing.method == "quadmix":  # QuaDMix never reads d(x)
        skipped |= {"embed", "cluster", "assign", "diversity"}
    return tuple(s for s in STAGES if s not in skipped)


class Step(Protocol):
    name: str

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        """Write the stage's tables; return rows written per table."""


# stage or job -> (module, factory taking the config). Imported on demand, so the
# mixing path never imports torch or faiss (the BiMix swarm imports torch only when it trains).
_FACTORIES = {
    "ingest": ("samplemix_spark.ingest", "IngestStep"),
    "quality": ("samplemix_spark.quality", "quality_step"),
    "embed": ("samplemix_spark.diversity.embed", "EmbedStep"),
    "cluster": ("samplemix_spark.diversity.cluster", "ClusterStep"),
    "assign": ("samplemix_spark.diversity.assign", "AssignStep"),
    "domains": ("samplemix_spark.diversity.domains", "DomainGroupsStep"),
    "diversity": ("samplemix_spark.diversity", "diversity_step"),
    "mix": ("samplemix_spark.evaluation.mix_stage", "mix_step"),
    "report": ("samplemix_spark.report", "ReportStep"),
    "annotate": ("samplemix_spark.quality.annotate", "AnnotateStep"),
    "train-quality": ("samplemix_spark.quality.train", "TrainQualityStep"),
    "score-quality": ("samplemix_spark.quality.scorer", "ModelQuality"),
}


def make_step(stage: str, cfg: SampleMixConfig) -> Step:
    """The step object for a stage or job name."""
    if stage not in _FACTORIES:
        raise ValueError(f"unknown stage {stage!r}")
    module, factory = _FACTORIES[stage]
    return getattr(importlib.import_module(module), factory)(cfg)


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


def run_step(spark: SparkSession, cfg: SampleMixConfig, step: Step,
             work: Optional[Callable[[SparkSession, TableStore], dict[str, int]]] = None) -> StageResult:
    """Run one step (or ``work`` in its name) on the driver; its Spark work runs wherever ``spark`` sends it."""
    store = TableStore(spark, with_hash_scheme(spark, cfg).tables)  # resolved once, not on every use
    log.info("stage %s: started", step.name)
    started = time.perf_counter()
    with heartbeat(step.name):
        rows = (work or step.run)(spark, store)
    result = StageResult(step.name, rows, time.perf_counter() - started)
    log.info(result.describe())
    return result


def run_stage(spark: SparkSession, cfg: SampleMixConfig, stage: str) -> StageResult:
    step = make_step(stage, cfg)
    check_steps([step])
    return run_step(spark, cfg, step)


# The table whose presence shows that a stage finished (with its recorded fingerprint).
STAGE_OUTPUT = {"ingest": "documents", "quality": "quality", "embed": "embeddings", "cluster": "centroids",
                "assign": "assignments", "domains": "domain_groups",
                "diversity": "diversity", "mix": "output", "report": "report_summary"}


def plan(cfg: SampleMixConfig, stages: tuple[str, ...] | None = None) -> list[tuple[str, Step]]:
    """The (stage, step) pairs to run, each checked; fails before any Spark work."""
    stages = pipeline_stages(cfg) if stages is None else stages
    steps = [make_step(stage, cfg) for stage in stages]
    check_steps(steps)
    return list(zip(stages, steps))


def execute(spark: SparkSession, cfg: SampleMixConfig, planned: list[tuple[str, Step]],
            resume: bool = False) -> list[StageResult]:
    """Run the planned stages in order, recording each one's fingerprint when it finishes.

    With ``resume``, a stage whose recorded fingerprint matches (same config
    section, same upstream, same source files) and whose output exists is skipped.
    """
    cfg = with_hash_scheme(spark, cfg, rebuild=not resume)
    state = StageState(spark, TableStore(spark, cfg.tables))
    results = []
    for (stage, step), current in zip(planned, chained_inputs(cfg, [stage for stage, _ in planned], spark)):
        if resume and state.is_current(stage, current, [STAGE_OUTPUT[stage]]):
            log.info("stage %s: up to date, skipped (--force reruns it)", stage)
            continue
        if resume:
            log.info("stage %s: runs: %s", stage, state.why_stale(stage, current))
        results.append(run_step(spark, cfg, step))
        state.record(stage, current, results[-1].seconds)
    return results


def with_hash_scheme(spark: SparkSession, cfg: SampleMixConfig, rebuild: bool = False) -> SampleMixConfig:
    """``cfg`` with ``tables.hash_scheme`` resolved: as configured, the warehouse's, or on a rebuild the current."""
    from samplemix_spark.hashing import CURRENT_SCHEME

    if cfg.tables.hash_scheme != "auto":
        return cfg
    scheme = CURRENT_SCHEME if rebuild else TableStore(spark, cfg.tables).hash_scheme
    return dataclasses.replace(cfg, tables=dataclasses.replace(cfg.tables, hash_scheme=scheme))


def fingerprints(cfg: SampleMixConfig, stages: list[str], spark: Optional[SparkSession] = None) -> list[str]:
    """Each stage's fingerprint, chained through the stages before it (``spark`` lists catalog tables' files)."""
    return [hash_inputs(inputs) for inputs in chained_inputs(cfg, stages, spark)]


def chained_inputs(cfg: SampleMixConfig, stages: list[str], spark: Optional[SparkSession] = None) -> list[dict]:
    """What each stage's fingerprint is made of, each chained on the fingerprint of the stage before it."""
    chain, previous = [], None
    for stage in stages:
        chain.append(stage_inputs(stage, cfg, previous, spark))
        previous = hash_inputs(chain[-1])
    return chain


def run_pipeline(spark: SparkSession, cfg: SampleMixConfig, stages: tuple[str, ...] | None = None,
                 resume: bool = False) -> list[StageResult]:
    """Check every stage, then run them in order (default: the stages of `samplemix run`)."""
    return execute(spark, cfg, plan(cfg, stages), resume)
