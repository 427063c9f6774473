"""``samplemix embed``: one L2-normalised embedding per document (SPEC §2).

Driver side: ``EmbedStep`` resolves the encoder and builds an Iterator pandas UDF
whose closure holds only settings. Executor side: the encoder loads once per
Python process, each Arrow batch is sorted by length and embedded in model
batches (bf16/fp16 autocast on the task's GPU, fp32 on CPU), then normalised.

Storage: ``array<float>`` (``embedding``), or with ``diversity.storage: float16``
the raw little-endian float16 bytes (``embedding_f16``), half the size; readers
use ``embedding_matrix`` to get float32 vectors either way.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import DiversityConfig, SampleMixConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.models.cache import cached
from samplemix_spark.models.paths import portable_location, resolve_local_path
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep


def load_encoder(cfg: DiversityConfig):
    """The process-wide encoder for these settings (executor side)."""
    from samplemix_spark.models.encoder import TextEncoder

    key = ("diversity", cfg.encoder, cfg.pooling, cfg.max_tokens, cfg.device, cfg.precision)
    return cached(key, lambda: TextEncoder(resolve_local_path(cfg.encoder, "diversity.encoder"), cfg.pooling,
                                           cfg.max_tokens, cfg.device, cfg.precision))


def embedding_column(text: Column, cfg: DiversityConfig, progress: Optional[Progress] = None) -> Column:
    """Normalised embedding of ``text`` as array<float> or float16 bytes; built on the driver."""
    half = cfg.storage == "float16"

    @F.pandas_udf("binary" if half else "array<float>")
    def embed(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        encoder = load_encoder(cfg)
        for texts in batches:
            vectors = encoder.embed(texts.tolist(), cfg.batch_size, normalize=True,
                                    on_batch=progress.add if progress else None)
            if half:
                yield pd.Series([v.astype("<f2").tobytes() for v in vectors])
            else:
                yield pd.Series(list(vectors))

    return embed(text)


def embedding_matrix(frame: pd.DataFrame) -> np.ndarray:
    """float32 (n, dim) matrix from a pandas batch of the embeddings table, in either storage."""
    if "embedding_f16" in frame.columns:
        return np.stack([np.frombuffer(b, dtype="<f2") for b in frame["embedding_f16"]]).astype(np.float32)
    return np.stack(frame["embedding"].to_numpy()).astype(np.float32)


def embedding_columns(embeddings: DataFrame) -> list[str]:
    """The stored vector column of an embeddings table."""
    return ["embedding_f16"] if "embedding_f16" in embeddings.columns else ["embedding"]


class EmbedStep(PerDocumentStep):
    """Write ``embeddings``: doc_id, embedding (or embedding_f16)."""

    name = "embed"
    source, output = "documents", "embeddings"
    reports_progress = True

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def check(self) -> None:
        resolve_local_path(self.cfg.diversity.encoder, "diversity.encoder")

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        return embed_rows(rows, self.cfg.diversity, progress)


def embed_rows(rows: DataFrame, cfg: DiversityConfig, progress: Optional[Progress] = None) -> DataFrame:
    """doc_id and the stored vector column of each row's ``text``; the UDF's closure holds settings only."""
    portable = dataclasses.replace(cfg, encoder=portable_location(cfg.encoder))
    column = "embedding_f16" if portable.storage == "float16" else "embedding"
    return rows.select("doc_id", embedding_column(F.col("text"), portable, progress).alias(column))
