"""``quality.method: model`` (``samplemix score-quality``): score documents with the evaluator.

Driver side: ``ModelQuality.run`` checks the checkpoint, then builds an Iterator
pandas UDF whose closure holds only the checkpoint path and settings.
Executor side: the UDF loads the model once per Python process (``models.cache``),
sorts each Arrow batch by length to cut padding, runs on the task's GPU with
bf16/fp16 autocast when one is present, else on CPU in fp32, and returns the
argmax score and the expected score.

GPU clusters: set ``spark.task.resource.gpu.amount`` (e.g. 1 per task, or 0.25 to
share a GPU between four tasks) and size batches with
``spark.sql.execution.arrow.maxRecordsPerBatch`` (e.g. 2048); ``quality.batch_size``
is the model batch inside each Arrow batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import QualityConfig, SampleMixConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import ConfigError
from samplemix_spark.models.cache import cached
from samplemix_spark.models.encoder import TextEncoder
from samplemix_spark.models.paths import portable_location, resolve_local_path
from samplemix_spark.quality import ordinal
from samplemix_spark.quality.checkpoint import ENCODER_DIR, HEAD_FILE, read_checkpoint_settings
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep


class QualityScorer:
    """A loaded checkpoint: ``score(texts)`` -> (integer scores, expected scores)."""

    def __init__(self, checkpoint: str, device: str = "auto", precision: str = "auto",
                 max_tokens: int = 512, batch_size: int = 32) -> None:
        settings = read_checkpoint_settings(checkpoint)
        encoder_dir = (Path(checkpoint) / ENCODER_DIR if settings["encoder"] == ENCODER_DIR
                       else resolve_local_path(settings["encoder"], "quality checkpoint encoder"))
        self.encoder = TextEncoder(encoder_dir, pooling=settings["pooling"],
                                   max_tokens=min(max_tokens, settings["max_tokens"]),
                                   device=device, precision=precision)
        self.head = ordinal.make_head(settings["hidden_size"], settings["head"])
        self.head.load_state_dict(torch.load(Path(checkpoint) / HEAD_FILE, map_location="cpu"))
        self.head.to(self.encoder.device).eval()
        self.head_kind = settings["head"]
        self.batch_size = batch_size

    @torch.inference_mode()
    def score(self, texts: list[str], on_batch: Optional[Callable[[int], object]] = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Argmax class and expected score per text; ``on_batch(n)`` after each forward pass."""
        scores = np.zeros(len(texts), dtype=np.int32)
        expected = np.zeros(len(texts), dtype=np.float64)
        for index, batch in self.encoder.batches(texts, self.batch_size):
            pooled = self.encoder.forward(batch)
            probabilities = ordinal.class_probabilities(self.head(pooled).float(), self.head_kind)
            argmax, mean = ordinal.predict(probabilities)
            scores[index] = argmax.cpu().numpy()
            expected[index] = mean.cpu().numpy()
            if on_batch is not None:
                on_batch(len(index))
        return scores, expected


def load_scorer(cfg: QualityConfig) -> QualityScorer:
    """The process-wide scorer for this checkpoint and settings."""
    key = ("quality", cfg.model_path, cfg.device, cfg.precision, cfg.max_tokens, cfg.batch_size)
    return cached(key, lambda: QualityScorer(cfg.model_path, cfg.device, cfg.precision,
                                             cfg.max_tokens, cfg.batch_size))


def quality_column(text: Column, cfg: QualityConfig, progress: Optional[Progress] = None) -> Column:
    """struct<quality:int, quality_expected:double> per document; built on the driver."""

    @F.pandas_udf("struct<quality:int,quality_expected:double>")
    def score(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        scorer = load_scorer(cfg)
        for texts in batches:
            quality, expected = scorer.score(texts.tolist(), progress.add if progress else None)
            yield pd.DataFrame({"quality": quality, "quality_expected": expected})

    return score(text)


class ModelQuality(PerDocumentStep):
    """Write the quality table with the ordinal evaluator's scores."""

    name = "quality"
    source, output = "documents", "quality"
    reports_progress = True

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        if not self.cfg.quality.model_path:
            raise ConfigError("config key 'quality.model_path' is not set: name the checkpoint folder "
                              "written by `samplemix train-quality`")
        read_checkpoint_settings(self.cfg.quality.model_path)

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        settings = read_checkpoint_settings(self.cfg.quality.model_path)
        quality = dataclasses.replace(self.cfg.quality, model_path=portable_location(self.cfg.quality.model_path))
        scored = rows.select("doc_id", quality_column(F.col("text"), quality, progress).alias("s"))
        return scored.select("doc_id", "s.quality", "s.quality_expected", F.lit("model").alias("method"),
                             F.lit(settings["model_id"]).alias("model_id"),
                             F.lit(settings["model_version"]).alias("model_version"))
