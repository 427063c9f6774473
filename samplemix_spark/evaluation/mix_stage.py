"""The pipeline's mix stage: the plain mix, or BiMix's proxy swarm followed by the mix. Driver side.

Mixing sits below evaluation, so a mix never trains proxies itself: when BiMix
has no observations file, ``SwarmThenMix`` runs the swarm
(``bimix_swarm.observe``, which writes ``bimix_observations``) and then the mix,
which reads that table. The swarm's module (and torch) is imported only then.
"""

from __future__ import annotations

from typing import Optional

from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.mixing import MixStep
from samplemix_spark.tables import TableStore


class SwarmThenMix:
    """The mix stage when BiMix has no observations file: the proxy swarm first, then the mix."""

    name = "mix"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def run(self, spark: SparkSession, store: TableStore, inputs: Optional[TableStore] = None,
            merge_output: bool = False) -> dict[str, int]:
        from samplemix_spark.evaluation.bimix_swarm import observe

        observe(spark, inputs or store, self.cfg)
        return MixStep(self.cfg).run(spark, store, inputs, merge_output=merge_output)


def mix_step(cfg: SampleMixConfig):
    """``SwarmThenMix`` when BiMix must observe its own swarm, else ``MixStep``."""
    source = cfg.mixing.domain_weights
    if cfg.mixing.method == "domain" and source.source == "bimix" and not source.bimix_observations:
        return SwarmThenMix(cfg)
    return MixStep(cfg)
