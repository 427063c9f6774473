"""Quality q(x) (SPEC §1): writes the ``quality`` table (doc_id, quality, method, ...).

Methods (``quality.method``):
- ``heuristic`` (default): text statistics as native Spark expressions (``heuristic.py``);
- ``model``: the ordinal-regression evaluator (``ordinal.py``, ``train.py``, ``scorer.py``);
- ``classifier``: a sequence classifier checkpoint users already have (``classifier.py``,
  scoring in ``models.classifier``);
- ``perplexity``: bits per byte under byte-level models of trusted domains (``perplexity.py``);
- ``column``: precomputed scores from ``ingest.quality_column``.

``annotate.py`` produces rubric labels for training. Torch is imported only by
the model method and training, so the other methods never load it.
"""

from samplemix_spark.config import SampleMixConfig


def quality_step(cfg: SampleMixConfig):
    """The quality step for ``cfg.quality.method``."""
    if cfg.quality.method == "heuristic":
        from samplemix_spark.quality.heuristic import HeuristicQuality

        return HeuristicQuality(cfg)
    if cfg.quality.method == "model":
        from samplemix_spark.quality.scorer import ModelQuality

        return ModelQuality(cfg)
    if cfg.quality.method == "classifier":
        from samplemix_spark.quality.classifier import ClassifierQuality

        return ClassifierQuality(cfg)
    if cfg.quality.method == "perplexity":
        from samplemix_spark.quality.perplexity import PerplexityQuality

        return PerplexityQuality(cfg)
    from samplemix_spark.scores import InputScoreStep

    return InputScoreStep("quality", "q_input")
