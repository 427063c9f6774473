"""``samplemix assign``: nearest centroid for every document, including ones k-means never saw.

Driver side: reads the centroids, checks that their dimension matches the
embeddings, and builds a ``mapInPandas`` function whose closure carries the
centroid matrix (Spark Connect sends it with the plan; classic PySpark
broadcasts large closures itself). Keep k x dim x 4 bytes well below the
128 MiB Connect message cap: 22k x 768 centroids are 68 MB.

Executor side: a faiss inner-product index over the centroids is built once per
Python process; each batch is searched for its top-1 centroid. For unit vectors
the inner product is the cosine similarity, so the stored distance is the
cosine distance ``1 - ip`` (0 = identical direction, 2 = opposite).
A scheduled refresh reuses this step to place new documents on stored centroids.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Iterator, Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.diversity.cluster import read_centroids
from samplemix_spark.diversity.embed import embedding_columns, embedding_matrix
from samplemix_spark.engine.progress import Progress
from samplemix_spark.errors import InputError
from samplemix_spark.models.cache import cached
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.per_document import PerDocumentStep

log = logging.getLogger(__name__)

ASSIGNMENT_SCHEMA = "doc_id string, cluster_id int, distance double"
_CLOSURE_WARN_BYTES = 64 * 1024 * 1024


# Candidates faiss proposes per vector; the nearest is then chosen in float64.
_CANDIDATES = 4


def nearest_centroids(index, vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cluster_id, cosine distance) of each vector's nearest centroid.

    faiss's float32 inner products depend on how many vectors share a search
    (its matrix blocking), so its top candidates are re-scored one row at a time
    in float64: the chosen centroid and the stored distance are then the same
    whatever batch a vector arrives in (ties go to the lower cluster id).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    _, candidates = index.search(vectors, min(_CANDIDATES, len(centroids)))
    exact = np.einsum("id,ikd->ik", vectors.astype(np.float64), centroids[candidates].astype(np.float64))
    exact[candidates < 0] = -np.inf
    order = _best(exact, candidates)
    rows = np.arange(len(vectors))
    return candidates[rows, order].astype(np.int32), 1.0 - exact[rows, order]


def _best(exact: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per row, the column of the highest similarity, the lowest cluster id among equals."""
    best = exact.max(axis=1, keepdims=True)
    masked = np.where(exact == best, candidates, np.iinfo(np.int64).max)
    return masked.argmin(axis=1)


def build_index(centroids: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def assign_batches(centroids: np.ndarray, progress: Optional[Progress] = None):
    """The mapInPandas function; the centroids and the progress counter travel in its closure."""
    key = ("centroid_index", hashlib.sha256(centroids.tobytes()).hexdigest())

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        index = cached(key, lambda: build_index(centroids))
        for batch in batches:
            cluster_id, distance = nearest_centroids(index, embedding_matrix(batch), centroids)
            if progress is not None:
                progress.add(len(batch))
            yield pd.DataFrame({"doc_id": batch["doc_id"], "cluster_id": cluster_id, "distance": distance})

    return run


def check_dimensions(store: TableStore, centroids: np.ndarray) -> None:
    embeddings = store.read("embeddings")
    first = embeddings.select(*embedding_columns(embeddings)).limit(1).toPandas()
    dim = embedding_matrix(first).shape[1] if len(first) else centroids.shape[1]
    if dim != centroids.shape[1]:
        raise InputError(f"embedding dimension {dim} does not match the stored centroids' dimension "
                         f"{centroids.shape[1]}: the encoder changed since `samplemix cluster`; re-run it")


class AssignStep(PerDocumentStep):
    """Write ``assignments``: doc_id, cluster_id, distance (cosine distance to the centroid)."""

    name = "assign"
    source, output = "embeddings", "assignments"
    reports_progress = True

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def transform(self, spark: SparkSession, store: TableStore, rows: DataFrame,
                  progress: Optional[Progress] = None) -> DataFrame:
        centroids = read_centroids(store)
        check_dimensions(store, centroids)
        return assign_rows(rows, centroids, progress)


def assign_rows(vectors: DataFrame, centroids: np.ndarray, progress: Optional[Progress] = None) -> DataFrame:
    """doc_id, cluster_id, distance of each row of an embeddings-shaped DataFrame (on executors)."""
    if centroids.nbytes > _CLOSURE_WARN_BYTES:
        log.warning("assign: %.0f MiB of centroids travel in the UDF closure; the Spark Connect message "
                    "cap is 128 MiB", centroids.nbytes / 2**20)
    vectors = vectors.select("doc_id", *embedding_columns(vectors))
    return vectors.mapInPandas(assign_batches(centroids, progress), ASSIGNMENT_SCHEMA)
