"""``samplemix cluster``: spherical k-means with faiss on a subsample, on the driver (SPEC §2, App. G/S).

Driver side only. A uniform subsample (a hash of doc_id and seed below a
fraction, so it does not depend on partitioning) of at most
``diversity.sample_size`` embeddings is collected; the job prints the memory it
will take first. The sample is sorted by doc_id so faiss sees the same input
order on every engine, and ``max_points_per_centroid`` is set to the sample size
so faiss trains on all of it instead of subsampling again. Defaults follow the
paper: k = round(sqrt(N)) for N embedded documents, 50 iterations, seed 1024.
faiss uses a GPU when one is visible (faiss-gpu) and the CPU otherwise.

Output: the ``centroids`` table (cluster_id, centroid) and a ``centroids.npy`` copy.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import DiversityConfig, SampleMixConfig
from samplemix_spark.diversity.embed import embedding_columns, embedding_matrix
from samplemix_spark.errors import InputError
from samplemix_spark.hashing import KMEANS_SAMPLE, uniform
from samplemix_spark.models.kmeans import train_kmeans
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

# Rows per createDataFrame message, so k x dim centroids never approach the
# Spark Connect 128 MiB message cap.
_CHUNK_BYTES = 16 * 1024 * 1024


def default_k(n_docs: int, cfg: DiversityConfig) -> int:
    """k = round(sqrt(N)) (paper App. G) unless set, capped by ``k_max``."""
    k = cfg.k if cfg.k is not None else max(1, round(math.sqrt(n_docs)))
    return min(k, cfg.k_max)


def collect_sample(embeddings: DataFrame, n_docs: int, cfg: DiversityConfig,
                   hash_scheme: str) -> tuple[list[str], np.ndarray]:
    """doc_ids and vectors of a hashed uniform subsample, sorted by doc_id."""
    fraction = min(1.0, cfg.sample_size / n_docs)
    chosen = uniform(F.col("doc_id"), cfg.seed, KMEANS_SAMPLE, hash_scheme) < fraction
    sample = embeddings if fraction >= 1 else embeddings.filter(chosen)
    dim = len(embedding_matrix(embeddings.limit(1).toPandas())[0])
    expected_rows = int(fraction * n_docs)
    log.info("cluster: collecting about %d of %d embeddings (dim %d) to the driver: about %.1f MiB",
             expected_rows, n_docs, dim, expected_rows * dim * 4 / 2**20)
    frame = sample.select("doc_id", *embedding_columns(embeddings)).toPandas().sort_values("doc_id")
    return frame["doc_id"].tolist(), embedding_matrix(frame)


def centroids_frame(spark: SparkSession, centroids: np.ndarray) -> DataFrame:
    """The centroids as a DataFrame, sent in chunks that stay far below the message cap."""
    rows_per_chunk = max(1, _CHUNK_BYTES // max(1, centroids.shape[1] * 4))
    frames = []
    for start in range(0, len(centroids), rows_per_chunk):
        ids = np.arange(start, min(start + rows_per_chunk, len(centroids)), dtype=np.int32)
        # Python floats, not float32 arrays: Spark 3.5's row converter refuses numpy scalars
        # for FloatType; the values are float32 already, so the round trip is exact.
        chunk = pd.DataFrame({"cluster_id": ids.tolist(),
                              "centroid": centroids[start:start + rows_per_chunk].tolist()})
        frames.append(spark.createDataFrame(chunk, "cluster_id int, centroid array<float>"))
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def read_centroids(store: TableStore) -> np.ndarray:
    """(k, dim) float32 centroids ordered by cluster_id."""
    frame = store.read("centroids").select("cluster_id", "centroid").toPandas().sort_values("cluster_id")
    return np.stack(frame["centroid"].to_numpy()).astype(np.float32)


def npy_path(store: TableStore, cfg: DiversityConfig) -> Optional[Path]:
    """Where the .npy copy goes: ``diversity.centroids_path``, else next to a local centroids table."""
    if cfg.centroids_path:
        return Path(cfg.centroids_path)
    location = store.location("centroids")
    if store.cfg.catalog or "://" in location:
        return None
    return Path(location + ".npy")


class ClusterStep:
    """Fit centroids on the driver; write the centroids table and its .npy copy."""

    name = "cluster"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        cfg = self.cfg.diversity
        embeddings = store.read("embeddings")
        n_docs = embeddings.count()
        if n_docs == 0:
            raise InputError("the embeddings table is empty: nothing to cluster")
        doc_ids, vectors = collect_sample(embeddings, n_docs, cfg, store.hash_scheme)
        k = min(default_k(n_docs, cfg), len(doc_ids))
        log.info("cluster: spherical k-means, k=%d on %d vectors, %d iterations, seed %d",
                 k, len(doc_ids), cfg.niter, cfg.seed)
        centroids = train_kmeans(vectors, k, cfg.niter, cfg.seed)
        store.write(centroids_frame(spark, centroids), "centroids")
        path = npy_path(store, cfg)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, centroids)
            log.info("cluster: centroids also saved to %s", path)
        return {"centroids": k}
