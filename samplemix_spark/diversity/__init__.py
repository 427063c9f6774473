"""Diversity d(x) (SPEC §2): writes the ``diversity`` table (doc_id, diversity, method).

Methods: ``column`` (d(x) precomputed in ``ingest.diversity_column``).
"""

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.scores import InputScoreStep


def diversity_step(cfg: SampleMixConfig) -> InputScoreStep:
    """The diversity step for ``cfg.diversity.method``."""
    return InputScoreStep("diversity", "d_input")
