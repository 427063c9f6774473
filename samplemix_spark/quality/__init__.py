"""Quality q(x) (SPEC §1): writes the ``quality`` table (doc_id, quality, method).

Methods: ``column`` (q(x) precomputed in ``ingest.quality_column``).
"""

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.scores import InputScoreStep


def quality_step(cfg: SampleMixConfig) -> InputScoreStep:
    """The quality step for ``cfg.quality.method``."""
    return InputScoreStep("quality", "q_input")
