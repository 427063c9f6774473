"""Diversity: k-means on blobs of known shape, assignment vs direct faiss, edge cases, real text."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.errors import InputError
from samplemix_spark.pipeline import run_pipeline, run_stage

from .conftest import make_config, store_for, write_jsonl
from .realtext import bbc_articles

DIM = 16


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _blobs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five blobs: tight, loose, two neighbours, one isolated (label 0..4)."""
    eye = np.eye(DIM)
    centers = [eye[0], eye[1], eye[2], _unit(eye[2] + 0.35 * eye[3]), -_unit(eye[0] + eye[1] + eye[2])]
    spreads = [0.02, 0.12, 0.03, 0.03, 0.03]
    vectors, labels = [], []
    for label, (center, spread) in enumerate(zip(centers, spreads)):
        vectors.append(_unit(center + spread * rng.standard_normal((60, DIM))))
        labels += [label] * 60
    return np.concatenate(vectors).astype(np.float32), np.array(labels)


def _write_embeddings(spark, cfg, vectors: np.ndarray, partitions: int = 3) -> list[str]:
    doc_ids = [f"doc{i:05d}" for i in range(len(vectors))]
    frame = spark.createDataFrame(pd.DataFrame({"doc_id": doc_ids, "embedding": list(vectors)}),
                                  "doc_id string, embedding array<float>")
    store_for(spark, cfg).write(frame.repartition(partitions), "embeddings")
    return doc_ids


def _cluster(spark, tmp_path, vectors, partitions=3, **diversity):
    cfg = make_config(tmp_path / "wh", ["unused"], diversity={"method": "kmeans", **diversity})
    _write_embeddings(spark, cfg, vectors, partitions)
    for stage in ("cluster", "assign", "diversity"):
        run_stage(spark, cfg, stage)
    store = store_for(spark, cfg)
    return cfg, store


def test_blob_shapes_order_compactness_and_separation(spark, tmp_path):
    vectors, labels = _blobs(np.random.default_rng(0))
    _, store = _cluster(spark, tmp_path, vectors, k=5, neighbors=1)
    assignments = store.read("assignments").toPandas().sort_values("doc_id")
    stats = store.read("cluster_stats").toPandas().set_index("cluster_id")
    cluster_of_blob = {b: assignments["cluster_id"].to_numpy()[labels == b][0] for b in range(5)}
    for blob in range(5):  # every blob is exactly one cluster
        assert (assignments["cluster_id"].to_numpy()[labels == blob] == cluster_of_blob[blob]).all()
    compact = stats["compactness"]
    assert compact[cluster_of_blob[0]] < compact[cluster_of_blob[1]]  # tight < loose
    separated = stats["separation"]
    assert separated[cluster_of_blob[4]] > separated[cluster_of_blob[2]]  # isolated > neighbours
    assert separated[cluster_of_blob[4]] > separated[cluster_of_blob[3]]
    np.testing.assert_allclose(stats["diversity"], stats["compactness"] * stats["separation"])
    diversity = store.read("diversity").toPandas()
    assert len(diversity) == len(vectors) and np.isfinite(diversity["diversity"]).all()


def test_default_k_seed_determinism_and_direct_faiss_agreement(spark, tmp_path):
    import faiss

    vectors, _ = _blobs(np.random.default_rng(1))
    cfg, store = _cluster(spark, tmp_path / "a", vectors, partitions=3)
    centroids = np.load(store.location("centroids") + ".npy")
    assert len(centroids) == round(np.sqrt(len(vectors)))  # k = round(sqrt(300)) = 17
    first = store.read("assignments").toPandas().sort_values("doc_id").reset_index(drop=True)

    _, again = _cluster(spark, tmp_path / "b", vectors, partitions=5)
    np.testing.assert_array_equal(np.load(again.location("centroids") + ".npy"), centroids)
    second = again.read("assignments").toPandas().sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second)

    index = faiss.IndexFlatIP(DIM)
    index.add(centroids)
    similarity, ids = index.search(vectors, 1)
    assert first["cluster_id"].tolist() == ids[:, 0].tolist()
    np.testing.assert_allclose(first["distance"], 1 - similarity[:, 0], atol=1e-6)


def test_singleton_and_empty_clusters_are_defined():
    from samplemix_spark.config import DiversityConfig
    from samplemix_spark.diversity.stats import cluster_statistics

    centroids = _unit(np.eye(DIM)[:4] + 0.1).astype(np.float32)
    sizes = pd.DataFrame({"cluster_id": [0, 1, 3], "size": [10, 1, 5], "compactness": [0.2, 0.07, 0.1]})
    stats = cluster_statistics(sizes, centroids, DiversityConfig(neighbors=2)).set_index("cluster_id")
    assert stats.loc[1, "compactness"] == pytest.approx(0.07)  # the singleton's own distance
    assert stats.loc[2, "size"] == 0 and stats.loc[2, "compactness"] == 0.0  # empty cluster
    assert np.isfinite(stats[["compactness", "separation", "diversity"]].to_numpy()).all()
    unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    distances = 1 - unit @ unit.T
    expected = np.sort(np.delete(distances[0], 0))[:2].mean()  # two nearest other centroids
    assert stats.loc[0, "separation"] == pytest.approx(expected, rel=1e-6)


def test_k_equal_one_is_finite(spark, tmp_path):
    vectors, _ = _blobs(np.random.default_rng(2))
    _, single = _cluster(spark, tmp_path / "one", vectors, k=1)
    stats = single.read("cluster_stats").toPandas()
    assert len(stats) == 1 and stats["separation"].iloc[0] == 1.0
    assert stats["diversity"].iloc[0] == pytest.approx(stats["compactness"].iloc[0])
    assert np.isfinite(single.read("diversity").toPandas()["diversity"]).all()


def test_dimension_mismatch_is_refused(spark, tmp_path):
    vectors, _ = _blobs(np.random.default_rng(3))
    cfg, _ = _cluster(spark, tmp_path, vectors, k=5)
    _write_embeddings(spark, cfg, _unit(np.ones((10, 8))).astype(np.float32))
    with pytest.raises(InputError, match="dimension 8 does not match .* 16"):
        run_stage(spark, cfg, "assign")


@pytest.fixture(scope="module")
def bbc_run(spark, tmp_path_factory):
    """The k-means pipeline on 300 real BBC News articles from five categories (the domain)."""
    root = tmp_path_factory.mktemp("bbc")
    categories = ["business", "entertainment", "politics", "sports", "tech"]
    records = [{"text": text, "domain": category} for category in categories for text in bbc_articles(60, category)]
    source = write_jsonl(root / "bbc.jsonl", records)
    cfg = make_config(root / "wh", [source], quality={"method": "heuristic"},
                      ingest={"quality_column": None, "diversity_column": None},
                      diversity={"method": "kmeans", "max_tokens": 128, "storage": "float16"})
    run_pipeline(spark, cfg)
    return cfg, store_for(spark, cfg), records


def test_real_text_clusters_follow_the_domains(bbc_run, caplog):
    from sklearn.metrics import adjusted_rand_score

    cfg, store, records = bbc_run
    joined = store.read("assignments").join(store.read("documents"), "doc_id").toPandas()
    ari = adjusted_rand_score(joined["domain"], joined["cluster_id"])
    assert ari > 0.15, ari
    n_docs = store.read("documents").count()  # the corpus repeats a few articles: ingest rejects them
    assert n_docs + store.read("rejects").count() == len(records)
    assert len(store.read("centroids").toPandas()) == round(np.sqrt(n_docs))
    weights = store.read("weights").toPandas()
    assert len(weights) == n_docs and np.isfinite(weights["c"]).all()


def test_spark_embeddings_equal_direct_encoder(bbc_run):
    from samplemix_spark.diversity.embed import embedding_matrix
    from samplemix_spark.models.encoder import TextEncoder
    from samplemix_spark.models.paths import resolve_local_path

    cfg, store, _ = bbc_run
    frame = store.read("embeddings").join(store.read("documents"), "doc_id").toPandas().head(40)
    assert "embedding_f16" in frame.columns  # float16 storage mode
    encoder = TextEncoder(resolve_local_path(cfg.diversity.encoder, "test"), max_tokens=128)
    direct = encoder.embed(frame["text"].tolist(), normalize=True)
    np.testing.assert_allclose(embedding_matrix(frame), direct, atol=2e-3)  # float16 rounding


def test_cluster_size_distribution_is_printed(spark, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    vectors, _ = _blobs(np.random.default_rng(4))
    _cluster(spark, tmp_path, vectors, k=5)
    assert "5 clusters; size min" in caplog.text


def test_documents_outside_the_kmeans_sample_are_assigned_too(spark, tmp_path, caplog):
    import faiss

    caplog.set_level(logging.INFO)
    vectors, _ = _blobs(np.random.default_rng(5))
    _, store = _cluster(spark, tmp_path, vectors, sample_size=100, k=5)
    assert "collecting about 100 of 300 embeddings" in caplog.text
    centroids = np.load(store.location("centroids") + ".npy")
    assignments = store.read("assignments").toPandas().sort_values("doc_id")
    assert len(assignments) == 300
    index = faiss.IndexFlatIP(DIM)
    index.add(centroids)
    assert assignments["cluster_id"].tolist() == index.search(vectors, 1)[1][:, 0].tolist()


def test_separation_in_row_blocks_equals_the_whole_matrix(monkeypatch):
    from samplemix_spark.diversity import stats as stats_module

    centroids = np.random.default_rng(5).normal(size=(300, 16)).astype(np.float32)
    whole = stats_module.separation(centroids, 3)  # 300 x 300 fits in one block
    monkeypatch.setattr(stats_module, "_SEPARATION_BLOCK_VALUES", 300 * 7)  # blocks of 7 rows, the last short
    blocked = stats_module.separation(centroids, 3)
    unit = centroids.astype(np.float64) / np.linalg.norm(centroids.astype(np.float64), axis=1, keepdims=True)
    distances = 1.0 - unit @ unit.T
    np.fill_diagonal(distances, np.inf)
    np.testing.assert_allclose(blocked, np.sort(distances, axis=1)[:, :3].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6)
