"""Diversity d(x) (SPEC §2): writes the ``diversity`` table (doc_id, diversity, method, ...).

Methods (``diversity.method``):
- ``kmeans`` (default): ``embed.py`` -> ``cluster.py`` (driver faiss k-means) ->
  ``assign.py`` (nearest centroid on executors) -> ``stats.py`` (compactness x separation);
- ``column``: precomputed scores from ``ingest.diversity_column``.
"""

from samplemix_spark.config import SampleMixConfig

KMEANS_STAGES = ("embed", "cluster", "assign", "diversity")


def diversity_step(cfg: SampleMixConfig):
    """The step that writes the diversity table for ``cfg.diversity.method``."""
    if cfg.diversity.method == "kmeans":
        from samplemix_spark.diversity.stats import ClusterDiversity

        return ClusterDiversity(cfg)
    from samplemix_spark.scores import InputScoreStep

    return InputScoreStep("diversity", "d_input")
