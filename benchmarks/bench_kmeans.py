"""k-means: faiss spherical k-means (what `samplemix cluster` runs) vs scikit-learn and Spark MLlib.

    .venv/bin/python benchmarks/bench_kmeans.py --points 200000 --dim 384 --k 447 --niter 20
    .venv/bin/python benchmarks/bench_kmeans.py --points 100000 --dim 384 --k 316 --niter 20 \
        --mllib --sample-size 20000

Both fit the same unit vectors (a mixture of von Mises-like blobs, so the
clustering has structure) with the same k and the same number of iterations:
faiss runs ``niter`` Lloyd iterations over all points; MiniBatchKMeans runs
``niter`` passes over the data (max_iter) in batches of 4096 with no early stop.
scikit-learn's full-batch KMeans (Lloyd, k-means++ init) is timed too, as the
algorithm faiss runs. Prints one JSON line with the times, the ratios and each method's mean cosine
distance to the nearest centroid (lower is tighter).

``--mllib`` replaces scikit-learn with what a Spark user would otherwise run:
``pyspark.ml.clustering.KMeans`` (cosine distance, random init, ``niter``
iterations, no early stop) on classic JVM Spark ``local[2]``, fitting every
point. ``--sample-size`` adds faiss trained on a random subsample of that size,
as ``diversity.sample_size`` makes the cluster stage do, scored on every point:
the quality cost of subsampling.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.models.kmeans import train_kmeans  # noqa: E402


def blobs(points: int, dim: int, centers: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dim)).astype(np.float32)
    x = means[rng.integers(0, centers, points)] + 0.8 * rng.standard_normal((points, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mean_distance(x: np.ndarray, centroids: np.ndarray) -> float:
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    best = np.full(len(x), -np.inf, dtype=np.float32)
    for start in range(0, len(x), 20000):
        best[start:start + 20000] = (x[start:start + 20000] @ unit.T).max(axis=1)
    return float(np.mean(1 - best))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=447)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--mllib", action="store_true", help="compare with Spark MLlib instead of scikit-learn")
    parser.add_argument("--sample-size", type=int, default=0, help="also faiss on a subsample of this size")
    args = parser.parse_args()
    x = blobs(args.points, args.dim, centers=args.k)

    started = time.perf_counter()
    faiss_centroids = train_kmeans(x, args.k, args.niter, seed=1024)
    faiss_seconds = time.perf_counter() - started
    result = {"bench": "kmeans", "points": args.points, "dim": args.dim, "k": args.k, "niter": args.niter,
              "faiss_s": round(faiss_seconds, 2), "faiss_mean_distance": round(mean_distance(x, faiss_centroids), 4)}
    if args.sample_size:
        sample = np.random.default_rng(1024).choice(len(x), size=args.sample_size, replace=False)
        started = time.perf_counter()
        sampled_centroids = train_kmeans(x[np.sort(sample)], args.k, args.niter, seed=1024)
        result.update({"faiss_sample_points": args.sample_size,
                       "faiss_sample_s": round(time.perf_counter() - started, 2),
                       "faiss_sample_mean_distance": round(mean_distance(x, sampled_centroids), 4)})
    result.update(mllib(x, args.k, args.niter) if args.mllib else sklearn(x, args.k, args.niter))
    base = "mllib_s" if args.mllib else "sklearn_minibatch_s"
    result["speedup"] = round(result[base] / faiss_seconds, 1)
    if not args.mllib:
        result["speedup_vs_lloyd"] = round(result["sklearn_lloyd_s"] / faiss_seconds, 1)
    result.update({"cpus": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")})
    print(json.dumps(result))


def mllib(x: np.ndarray, k: int, niter: int) -> dict:
    """Spark MLlib k-means on classic JVM Spark local[2]; only ``fit`` is timed."""
    os.environ.pop("SPARK_REMOTE", None)
    import pandas as pd
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "6g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    frame = spark.createDataFrame(pd.DataFrame({"v": list(x.astype(np.float64))}))
    points = frame.select(array_to_vector("v").alias("features")).cache()
    points.count()
    started = time.perf_counter()
    model = KMeans(k=k, maxIter=niter, tol=0.0, initMode="random", distanceMeasure="cosine", seed=1024).fit(points)
    seconds = time.perf_counter() - started
    centroids = np.array([c for c in model.clusterCenters()], dtype=np.float32)
    spark.stop()
    return {"mllib_s": round(seconds, 2), "mllib_mean_distance": round(mean_distance(x, centroids), 4)}


def sklearn(x: np.ndarray, k: int, niter: int) -> dict:
    """scikit-learn MiniBatchKMeans and full-batch Lloyd KMeans."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    started = time.perf_counter()
    sk = MiniBatchKMeans(n_clusters=k, max_iter=niter, batch_size=4096, n_init=1, random_state=1024,
                         max_no_improvement=None, tol=0.0).fit(x)
    sklearn_seconds = time.perf_counter() - started

    started = time.perf_counter()
    lloyd = KMeans(n_clusters=k, max_iter=niter, n_init=1, random_state=1024, tol=0.0,
                   algorithm="lloyd").fit(x)
    lloyd_seconds = time.perf_counter() - started

    return {"sklearn_minibatch_s": round(sklearn_seconds, 2), "sklearn_lloyd_s": round(lloyd_seconds, 2),
            "sklearn_mean_distance": round(mean_distance(x, sk.cluster_centers_.astype(np.float32)), 4),
            "sklearn_lloyd_mean_distance": round(mean_distance(x, lloyd.cluster_centers_.astype(np.float32)), 4)}


if __name__ == "__main__":
    main()
