"""``domain.method: classifier``: each document's domain is a classifier's top class, given at ingest.

A web crawl arrives without a domain column, yet the domain baselines, BiMix and
every per-domain report need one. With this method ingest does not read
``ingest.domain_column``, rejects no row for lacking a domain, and labels each
kept document, training and held-out alike, in the same UDF, so everything
downstream sees the labels exactly as it would see a source column.

Driver side: ``check_domain_classifier`` refuses a missing or unusable model in
one line before any stage runs; ``label_domains`` adds ``domain`` (the top
class's ``id2label`` name, a fastText label without ``__label__``) and
``domain_confidence`` (its probability) through an Iterator pandas UDF whose
closure holds only paths and settings. Executor side: ``models.classifier``
(no pyspark), loaded once per Python process, batched in the encoder's length
buckets, so a label never depends on its batch-mates.

``classifier_input`` builds what a classifier reads (here and in
``quality.classifier``): the text, or an ``input_template`` filled in Spark.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Iterator, Optional

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from samplemix_spark.config import DomainConfig, SampleMixConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.models.paths import resolve_local_path

LABEL = "struct<domain:string,confidence:double>"


def classifier_input(template: Optional[str]) -> Column:
    """The text a classifier reads: ``text``, or ``input_template`` filled from documents columns in Spark.

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


def labelled(cfg: SampleMixConfig) -> bool:
    """Whether domains come from a model rather than ``ingest.domain_column`` (which is then not read)."""
    return cfg.domain.method != "column"


def classified(cfg: SampleMixConfig) -> bool:
    """Whether ingest labels the documents (``classifier``); ``clusters`` labels them after ``assign``."""
    return cfg.domain.method == "classifier"


def check_domain_classifier(cfg: DomainConfig) -> dict:
    """model_id and model_version of the domain classifier, after checking it (driver side, before any stage)."""
    from samplemix_spark.models.classifier import backbone_layout, check_checkpoint, check_fasttext

    settings = cfg.classifier
    path = resolve_local_path(settings.path, "domain.classifier.path")
    if settings.format == "fasttext":
        return check_fasttext(path, None, "domain.classifier")
    return check_checkpoint(path, None, "domain.classifier", backbone_layout(settings, "domain.classifier"),
                            settings.trust_remote_code)


def domain_label_column(text: Column, cfg: DomainConfig, progress: Optional[Progress] = None) -> Column:
    """The ``LABEL`` struct per document; built on the driver, evaluated on executors."""

    @F.pandas_udf(LABEL)
    def label(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        from samplemix_spark.models.classifier import ClassifierSpec, first_chars, open_classifier

        settings = cfg.classifier
        classifier = open_classifier(resolve_local_path(settings.path, "domain.classifier.path"), settings,
                                     ClassifierSpec(trust_remote_code=settings.trust_remote_code), cfg.max_tokens,
                                     cfg.device, cfg.precision, key="domain.classifier")
        for texts in batches:
            top = classifier.top_labels(first_chars(texts.tolist(), settings.char_cap), cfg.batch_size,
                                        progress.add if progress else None)
            yield pd.DataFrame({"domain": top.names, "confidence": top.confidence})

    return label(text)


def label_domains(rows: DataFrame, cfg: DomainConfig, progress: Optional[Progress] = None) -> DataFrame:
    """``rows`` with ``domain`` and ``domain_confidence`` from the domain classifier."""
    from samplemix_spark.models.classifier import portable_settings

    portable = dataclasses.replace(cfg, classifier=portable_settings(cfg.classifier))
    text = classifier_input(cfg.classifier.input_template)
    return (rows.withColumn("_label", domain_label_column(text, portable, progress))
            .withColumn("domain", F.col("_label.domain"))
            .withColumn("domain_confidence", F.col("_label.confidence")).drop("_label"))
