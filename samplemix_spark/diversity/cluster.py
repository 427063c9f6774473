"""``samplemix cluster``: spherical k-means with faiss on a subsample, on the driver (SPEC §2, App. G/S).

Driver side only. A uniform subsample (a hash of doc_id and seed below a
fraction, so it does not depend on partitioning) of at most
``diversity.sample_size`` embeddings is collected; the job prints the memory it
will take first. It arrives in chunks of at most ``tables.collect_chunk_mb``
(staged once in the ``kmeans_sample`` table when it takes more than one), so
``spark.driver.maxResultSize`` bounds a chunk, not the sample. The sample is
sorted by doc_id so faiss sees the same input order on every engine, and
``max_points_per_centroid`` is set to the sample size so faiss trains on all
of it instead of subsampling again. Defaults follow the paper: k = round(sqrt(N))
for N embedded documents, 50 iterations, seed 1024. faiss uses a GPU when one
is visible (faiss-gpu) and the CPU otherwise.

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
from samplemix_spark.tables.driver_reads import ranged_chunks, staged_chunks

log = logging.getLogger(__name__)

# Rows per createDataFrame message, so k x dim centroids never approach the
# Spark Connect 128 MiB message cap.
_CHUNK_BYTES = 16 * 1024 * 1024
# A doc_id's share of a sample row in the size estimate (hashed ids are 16-40 characters).
_ID_BYTES = 48


def default_k(n_docs: int, cfg: DiversityConfig) -> int:
    """k = round(sqrt(N)) (paper App. G) unless set, capped by ``k_max``."""
    k = cfg.k if cfg.k is not None else max(1, round(math.sqrt(n_docs)))
    return min(k, cfg.k_max)


def collect_sample(store: TableStore, embeddings: DataFrame, n_docs: int,
                   cfg: DiversityConfig) -> tuple[np.ndarray, np.ndarray]:
    """doc_ids and float32 vectors of a hashed uniform subsample, sorted by doc_id.

    The rows reach the driver in chunks (``tables.driver_reads``): first every
    doc_id, which fixes each row's place, then the vectors chunk by chunk into
    one preallocated array, so the peak is the array plus one chunk.
    """
    fraction = min(1.0, cfg.sample_size / n_docs)
    chosen = uniform(F.col("doc_id"), cfg.seed, KMEANS_SAMPLE, store.hash_scheme) < fraction
    sample = embeddings if fraction >= 1 else embeddings.filter(chosen)
    columns = embedding_columns(embeddings)
    dim = len(embedding_matrix(embeddings.select(*columns).limit(1).toPandas())[0])
    stored_bytes = 2 if columns == ["embedding_f16"] else 4
    expected_rows = int(fraction * n_docs)
    log.info("cluster: collecting about %d of %d embeddings (dim %d) to the driver: about %.1f MiB",
             expected_rows, n_docs, dim, expected_rows * dim * 4 / 2**20)
    row_bytes = dim * stored_bytes + _ID_BYTES
    chunks = staged_chunks(store, sample.select("doc_id", *columns), "kmeans_sample", F.col("doc_id"),
                           expected_rows * row_bytes, "cluster")
    ids = chunks.read("doc_id", chunks_per_job=row_bytes // _ID_BYTES)
    doc_ids = np.sort(np.concatenate([c["doc_id"].to_numpy(dtype=object) for c in ids]))
    vectors = np.empty((len(doc_ids), dim), dtype=np.float32)
    for chunk in chunks.read("doc_id", *columns):
        vectors[np.searchsorted(doc_ids, chunk["doc_id"].to_numpy(dtype=object))] = embedding_matrix(chunk)
    return doc_ids, vectors


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
    """(k, dim) float32 centroids ordered by cluster_id, read in chunks of consecutive clusters."""
    table = store.read("centroids")
    shape = table.agg(F.count(F.lit(1)).alias("k"), F.max(F.size("centroid")).alias("dim")).collect()[0]
    if not shape["k"]:
        raise InputError("the centroids table is empty: run `samplemix cluster` again")
    k, dim = shape["k"], shape["dim"]
    chunks = ranged_chunks(store, table, "cluster_id", k, dim * 4 + 8, "centroids")
    centroids = np.empty((k, dim), dtype=np.float32)
    for chunk in chunks.read("cluster_id", "centroid"):
        centroids[chunk["cluster_id"].to_numpy()] = np.stack(chunk["centroid"].to_numpy())
    return centroids


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
        doc_ids, vectors = collect_sample(store, embeddings, n_docs, cfg)
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
