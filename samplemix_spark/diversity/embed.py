"""``samplemix embed``: one L2-normalised embedding per document (SPEC §2).

Driver side: ``EmbedStep`` resolves the encoder (distilling ``static`` on first
use) and builds an Iterator pandas UDF whose closure holds only settings and a
path. Executor side: the encoder loads once per Python process. A transformer
embeds each Arrow batch sorted by length in model batches (bf16/fp16 autocast on
the task's GPU, fp32 on CPU); a static model averages token vectors. Vectors are
then normalised.

Storage: ``array<float>`` (``embedding``), or with ``diversity.storage: float16``
the raw little-endian float16 bytes (``embedding_f16``), half the size; readers
use ``embedding_matrix`` to get float32 vectors either way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import STATIC_ENCODER, DiversityConfig, SampleMixConfig
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import ConfigError
from samplemix_spark.models.cache import cached
from samplemix_spark.models.paths import portable_location, resolve_local_path
from samplemix_spark.models.static_encoder import is_static_model
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep
from samplemix_spark.tables.store import local_folder


def load_encoder(cfg: DiversityConfig):
    """The process-wide encoder for these settings (executor side): transformer or static by the folder."""
    key = ("diversity", cfg.encoder, cfg.pooling, cfg.max_tokens, cfg.device, cfg.precision)
    return cached(key, lambda: _new_encoder(cfg))


def _new_encoder(cfg: DiversityConfig):
    path = resolve_local_path(cfg.encoder, "diversity.encoder")
    if is_static_model(path):
        from samplemix_spark.models.static_encoder import StaticEncoder

        return StaticEncoder(path, cfg.max_tokens)
    from samplemix_spark.models.encoder import TextEncoder

    return TextEncoder(path, cfg.pooling, cfg.max_tokens, cfg.device, cfg.precision)


def static_encoder_root(cfg: SampleMixConfig) -> Path:
    """The folder distilled static models live under: ``diversity.static.path``, else ``encoders/`` beside the
    warehouse (driver side)."""
    if cfg.diversity.static.path:
        return Path(cfg.diversity.static.path).expanduser().resolve()
    warehouse = local_folder(cfg.tables.warehouse) if cfg.tables.catalog is None else None
    if warehouse is None:
        raise ConfigError(f"config key 'diversity.static.path': the warehouse {cfg.tables.warehouse!r} is not a local "
                          "folder, so the distilled encoder has no default home; set it to a folder every executor "
                          "reads (e.g. /dbfs/... or /Volumes/...)")
    return warehouse.resolve().parent / "encoders"


def static_encoder_folder(cfg: SampleMixConfig) -> Path:
    """The distilled static model for ``cfg``, distilled now if it is not there yet (driver side)."""
    from samplemix_spark.models.static_encoder import distill_static, static_folder

    static = cfg.diversity.static
    source = resolve_local_path(static.source, "diversity.static.source")
    return distill_static(source, static_folder(static_encoder_root(cfg), source, static.pca_dims),
                          static.pca_dims, static.source)


def encoder_settings(cfg: SampleMixConfig) -> DiversityConfig:
    """``cfg.diversity`` as executors need it: ``static`` replaced by the distilled folder (distilled on first
    use), any local path made absolute (driver side)."""
    location = cfg.diversity.encoder
    if location == STATIC_ENCODER:
        location = str(static_encoder_folder(cfg))
    return dataclasses.replace(cfg.diversity, encoder=portable_location(location))


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
        check_encoder(self.cfg)

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        return embed_rows(rows, encoder_settings(self.cfg), progress)


def check_encoder(cfg: SampleMixConfig) -> None:
    """The encoder's files exist (for ``static``: its source, and a home for the distilled model)."""
    if cfg.diversity.encoder == STATIC_ENCODER:
        resolve_local_path(cfg.diversity.static.source, "diversity.static.source")
        static_encoder_root(cfg)
    else:
        resolve_local_path(cfg.diversity.encoder, "diversity.encoder")


def embed_rows(rows: DataFrame, cfg: DiversityConfig, progress: Optional[Progress] = None) -> DataFrame:
    """doc_id and the stored vector column of each row's ``text``; ``cfg`` from ``encoder_settings``, so the
    UDF's closure holds settings and a path only."""
    column = "embedding_f16" if cfg.storage == "float16" else "embedding"
    return rows.select("doc_id", embedding_column(F.col("text"), cfg, progress).alias(column))
