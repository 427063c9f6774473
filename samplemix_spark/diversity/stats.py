"""``samplemix diversity`` (kmeans): cluster compactness x separation (SPEC §2, eq. 1, App. H).

For cluster j with centroid c_j (distances are cosine distances, 1 - cos):
- compactness_j: mean distance of its members to c_j (a loose cluster scores high);
- separation_j: mean distance from c_j to its m nearest other centroids, with
  m = max(1, round(0.01 * k)) as in App. H (an isolated cluster scores high);
- d(x) = compactness_j * separation_j for every x in cluster j.

Edge cases, all finite: a cluster of one document has that document's distance
as compactness; a cluster with no members gets compactness 0 (no document uses
it); with k = 1 there is no other centroid and separation is 1, so d(x) is the
compactness; m is capped at k - 1.

Driver side: per-cluster sizes and distance sums come from one Spark
aggregate (k rows); separation is computed with numpy from the centroids; the
small stats table is joined back to the assignments on executors.

A floating-point sum depends on the order of its terms, which differs between
engines and partitionings. So each distance is taken in fixed point
(floor(distance * 2^32), exact for a double in [0, 2]) and summed as a 64-bit
integer, which is exact in any order; the mean is formed on the driver. The
quantisation (2^-32, about 2e-10) is far below the float32 precision of the
similarities the distances come from.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import DiversityConfig, SampleMixConfig
from samplemix_spark.diversity.cluster import read_centroids
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)


def neighbour_count(k: int, cfg: DiversityConfig) -> int:
    """m, the number of nearest other centroids that define separation."""
    m = cfg.neighbors if cfg.neighbors is not None else max(1, round(cfg.neighbors_fraction * k))
    return max(1, min(m, k - 1))


# Cosine rows computed at once in ``separation``: memory stays near this many float64 values whatever k is
# (a whole k x k matrix is 3.9 GB at k = 22,000, the k of 500M documents, and 80 GB at k_max).
_SEPARATION_BLOCK_VALUES = 4_000_000


def separation(centroids: np.ndarray, m: int) -> np.ndarray:
    """Mean cosine distance from each centroid to its m nearest other centroids (1.0 when k = 1).

    Runs on the driver, a block of rows at a time, so memory is bounded by
    ``_SEPARATION_BLOCK_VALUES`` instead of growing as k squared. The blocks
    are fixed by k alone, so the result is the same on every engine and rerun
    (it agrees with a whole-matrix product to float32 rounding).
    """
    k = len(centroids)
    if k == 1:
        return np.ones(1)
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    rows = max(1, _SEPARATION_BLOCK_VALUES // k)
    out = np.empty(k)
    for start in range(0, k, rows):
        stop = min(start + rows, k)
        distance = 1.0 - unit[start:stop] @ unit.T
        distance[np.arange(stop - start), np.arange(start, stop)] = np.inf  # a centroid is not its own neighbour
        out[start:stop] = np.partition(distance, m - 1, axis=1)[:, :m].mean(axis=1)
    return out


# Fixed-point scale of distance sums: exact for 2^30 members of distance <= 2 within a signed 64-bit sum.
_FIXED_POINT = float(2**32)


def cluster_sizes(assignments) -> pd.DataFrame:
    """cluster_id, size, compactness (mean member distance) from one exact, order-independent aggregate."""
    fixed = F.floor(F.col("distance") * F.lit(_FIXED_POINT)).cast("long")
    sizes = assignments.groupBy("cluster_id").agg(F.count(F.lit(1)).alias("size"),
                                                  F.sum(fixed).alias("fixed_sum")).toPandas()
    sizes["compactness"] = sizes["fixed_sum"].astype(float) / _FIXED_POINT / sizes["size"]
    return sizes.drop(columns="fixed_sum")


def cluster_statistics(sizes: pd.DataFrame, centroids: np.ndarray, cfg: DiversityConfig) -> pd.DataFrame:
    """cluster_id, size, compactness, separation, diversity for every centroid."""
    k = len(centroids)
    stats = pd.DataFrame({"cluster_id": np.arange(k, dtype=np.int32)})
    stats = stats.merge(sizes, on="cluster_id", how="left")
    stats["size"] = stats["size"].fillna(0).astype(np.int64)
    stats["compactness"] = stats["compactness"].fillna(0.0).astype(float)
    stats["separation"] = separation(centroids, neighbour_count(k, cfg))
    stats["diversity"] = stats["compactness"] * stats["separation"]
    return stats


def describe_sizes(sizes: pd.Series) -> str:
    q = np.percentile(sizes, [0, 25, 50, 75, 100]) if len(sizes) else [0] * 5
    return (f"{len(sizes)} clusters; size min {q[0]:.0f}, p25 {q[1]:.0f}, median {q[2]:.0f}, p75 {q[3]:.0f}, "
            f"max {q[4]:.0f}; {int((sizes == 1).sum())} singletons, {int((sizes == 0).sum())} empty")


class ClusterDiversity:
    """Write ``cluster_stats`` and the ``diversity`` table (doc_id, diversity, cluster_id, method)."""

    name = "diversity"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        centroids = read_centroids(store)
        assignments = store.read("assignments")
        stats = cluster_statistics(cluster_sizes(assignments), centroids, self.cfg.diversity)
        log.info("diversity: %s", describe_sizes(stats["size"]))
        store.write(spark.createDataFrame(stats), "cluster_stats")
        per_cluster = store.read("cluster_stats").select("cluster_id", "diversity")
        store.write(assignments.join(per_cluster, "cluster_id")  # k rows: engines broadcast it
                    .select("doc_id", "diversity", "cluster_id", F.lit("kmeans").alias("method")), "diversity")
        return {"diversity": store.read("diversity").count(), "cluster_stats": len(stats)}
