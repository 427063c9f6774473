"""Spherical k-means with faiss: the driver's clustering, importable where Spark is not installed.

Runs on the driver (``diversity.cluster``) and in the GPU suite
(``benchmarks/gpu_suite.py``), which measures it on a GPU host without Spark.
faiss is imported inside the function, so importing this module needs only numpy.
"""

from __future__ import annotations

import math

import numpy as np


def train_kmeans(vectors: np.ndarray, k: int, niter: int, seed: int) -> np.ndarray:
    """Spherical faiss k-means over every given vector; returns (k, dim) unit-norm centroids.

    faiss uses a GPU when one is visible (faiss-gpu) and the CPU otherwise.
    ``max_points_per_centroid`` is set above n / k so faiss trains on every vector
    instead of subsampling again.
    """
    import faiss

    n, dim = vectors.shape
    gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    kmeans = faiss.Kmeans(dim, k, niter=niter, seed=seed, spherical=True, gpu=gpu, verbose=False,
                          max_points_per_centroid=max(1, math.ceil(n / k)) + 1, min_points_per_centroid=1)
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    centroids = kmeans.centroids.astype(np.float32)
    return centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
