"""``quality.method: classifier``: q(x) from a sequence classifier checkpoint (FineWeb-Edu style).

Driver side: ``ClassifierQuality.check`` refuses a missing folder or labels that
do not match ``class_values`` in one line, before any stage runs; ``transform``
builds an Iterator pandas UDF whose closure holds only the path and settings.
Executor side: ``models.classifier.TextClassifier`` loads once per Python process
and scores each Arrow batch in the encoder's length buckets (it imports no
pyspark, so the GPU suite runs it without Spark).

With ``input_template`` the classifier reads a text built in Spark from the
documents columns (``classifier_input``), e.g. WebOrganizer's ``url\\n\\ntext``.

Columns: ``quality`` (0-10 integer, the paper's scale), ``quality_expected``
(unrounded), ``quality_probs`` (class probabilities in the checkpoint's id
order; null for a regression head), ``model_id`` and ``model_version`` (folder
name and a hash of the weights and config).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import QualityConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.ingest.domain_labels import classifier_input
from samplemix_spark.models.classifier import (
    ClassifierSpec,
    FastTextClassifier,
    TextClassifier,
    backbone_layout,
    check_checkpoint,
    check_fasttext,
    first_chars,
    open_classifier,
    portable_settings,
)
from samplemix_spark.models.paths import resolve_local_path
from samplemix_spark.quality.scorer import ModelQuality
from samplemix_spark.tables import TableStore

SCORES = "struct<quality:int,quality_expected:double,quality_probs:array<double>>"


def classifier_spec(cfg: QualityConfig) -> ClassifierSpec:
    settings = cfg.classifier
    return ClassifierSpec(settings.head, tuple(float(v) for v in settings.range),
                          {str(k): float(v) for k, v in settings.class_values.items()}, settings.trust_remote_code)


def load_classifier(cfg: QualityConfig) -> TextClassifier | FastTextClassifier:
    """The process-wide classifier for these settings (executor side)."""
    settings = cfg.classifier
    path = resolve_local_path(settings.path, "quality.classifier.path")
    return open_classifier(path, settings, classifier_spec(cfg), cfg.max_tokens, cfg.device, cfg.precision,
                           settings.positive_label)


def classifier_column(text: Column, cfg: QualityConfig, progress: Optional[Progress] = None) -> Column:
    """The ``SCORES`` struct per document; built on the driver, evaluated on executors."""

    @F.pandas_udf(SCORES)
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        classifier = load_classifier(cfg)
        for texts in batches:
            scores = classifier.score(first_chars(texts.tolist(), cfg.classifier.char_cap), cfg.batch_size,
                                      progress.add if progress else None)
            probabilities = (scores.probabilities if scores.probabilities is not None
                             else [None] * len(scores.expected))
            yield pd.DataFrame({"quality": scores.quality, "quality_expected": scores.expected,
                                "quality_probs": [None if p is None else p.tolist() for p in probabilities]})

    return score(text)


class ClassifierQuality(ModelQuality):
    """Write the quality table with a sequence classifier's scores (the evaluator step's table and progress)."""

    def check(self) -> None:
        self.provenance()

    def provenance(self) -> dict:
        """model_id and model_version of the checkpoint, after checking it against the config."""
        settings = self.cfg.quality.classifier
        path = resolve_local_path(settings.path, "quality.classifier.path")
        if settings.format == "fasttext":
            return check_fasttext(path, settings.positive_label)
        return check_checkpoint(path, classifier_spec(self.cfg.quality), layout=backbone_layout(settings))

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        provenance = self.provenance()
        settings = portable_settings(self.cfg.quality.classifier)
        quality = dataclasses.replace(self.cfg.quality, classifier=settings)
        text = classifier_input(settings.input_template)
        scored = rows.select("doc_id", classifier_column(text, quality, progress).alias("s"))
        return scored.select("doc_id", "s.quality", "s.quality_expected", "s.quality_probs",
                             F.lit("classifier").alias("method"), F.lit(provenance["model_id"]).alias("model_id"),
                             F.lit(provenance["model_version"]).alias("model_version"))
