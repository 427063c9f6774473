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
import string
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import QualityConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.models.cache import cached
from samplemix_spark.models.classifier import (
    BackboneLayout,
    ClassifierSpec,
    FastTextClassifier,
    TextClassifier,
    check_checkpoint,
    check_fasttext,
)
from samplemix_spark.models.paths import portable_location, resolve_local_path
from samplemix_spark.quality.scorer import ModelQuality
from samplemix_spark.tables import TableStore

SCORES = "struct<quality:int,quality_expected:double,quality_probs:array<double>>"


def classifier_spec(cfg: QualityConfig) -> ClassifierSpec:
    settings = cfg.classifier
    return ClassifierSpec(settings.head, tuple(float(v) for v in settings.range),
                          {str(k): float(v) for k, v in settings.class_values.items()}, settings.trust_remote_code)


def backbone_layout(cfg: QualityConfig) -> Optional[BackboneLayout]:
    """Where a ``backbone_head`` checkpoint's backbone and keys are; None for other formats."""
    settings = cfg.classifier
    if settings.format != "backbone_head":
        return None
    folder = resolve_local_path(settings.backbone, "quality.classifier.backbone")
    return BackboneLayout(str(folder), settings.backbone_prefix, settings.head_key)


def load_classifier(cfg: QualityConfig) -> TextClassifier | FastTextClassifier:
    """The process-wide classifier for these settings (executor side)."""
    spec, settings = classifier_spec(cfg), cfg.classifier
    path = resolve_local_path(settings.path, "quality.classifier.path")
    if settings.format == "fasttext":
        return cached(("fasttext", settings.path, settings.positive_label),
                      lambda: FastTextClassifier(path, settings.positive_label))
    layout = backbone_layout(cfg)
    key = ("classifier", settings.path, repr(spec), repr(layout), cfg.max_tokens, cfg.device, cfg.precision)
    return cached(key, lambda: TextClassifier(path, spec, cfg.max_tokens, cfg.device, cfg.precision, layout))


def classifier_column(text: Column, cfg: QualityConfig, progress: Optional[Progress] = None) -> Column:
    """The ``SCORES`` struct per document; built on the driver, evaluated on executors."""

    @F.pandas_udf(SCORES)
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        classifier = load_classifier(cfg)
        for texts in batches:
            scores = classifier.score(texts.tolist(), cfg.batch_size, progress.add if progress else None)
            probabilities = (scores.probabilities if scores.probabilities is not None
                             else [None] * len(scores.expected))
            yield pd.DataFrame({"quality": scores.quality, "quality_expected": scores.expected,
                                "quality_probs": [None if p is None else p.tolist() for p in probabilities]})

    return score(text)


def classifier_input(template: Optional[str]) -> Column:
    """The text the classifier reads: ``text``, or ``input_template`` filled from documents columns in Spark.

    ``"{url}\\n\\n{text}"`` becomes concat(coalesce(url, ''), '\\n\\n', text): a null field reads as empty.
    """
    if template is None:
        return F.col("text")
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(F.lit(literal))
        if name is not None:
            parts.append(F.coalesce(F.col(name), F.lit("")))
    return F.concat(*parts)


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
        return check_checkpoint(path, classifier_spec(self.cfg.quality), layout=backbone_layout(self.cfg.quality))

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        provenance = self.provenance()
        given = self.cfg.quality.classifier
        settings = dataclasses.replace(given, path=portable_location(given.path),
                                       backbone=given.backbone and portable_location(given.backbone))
        quality = dataclasses.replace(self.cfg.quality, classifier=settings)
        text = classifier_input(settings.input_template)
        scored = rows.select("doc_id", classifier_column(text, quality, progress).alias("s"))
        return scored.select("doc_id", "s.quality", "s.quality_expected", "s.quality_probs",
                             F.lit("classifier").alias("method"), F.lit(provenance["model_id"]).alias("model_id"),
                             F.lit(provenance["model_version"]).alias("model_version"))
