"""Driver reads arrive in chunks: the k-means sample, the centroids and the quality labels stay within
``spark.driver.maxResultSize`` on classic Spark however much they read in total."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.diversity.cluster import collect_sample
from samplemix_spark.pipeline import run_stage
from samplemix_spark.quality.train import CHARS_PER_TOKEN, load_labels
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.driver_reads import chunk_count, parse_size

from .conftest import REPO, make_config, store_for, write_jsonl
from .realtext import bbc_articles

N_DOCS, DIM, K = 3000, 384, 800
N_LABELS, LABEL_CHARS = 1900, 640
# Classic Spark refuses a job whose results pass 1 MiB; every read below is several times that.
RESULT_CAP = "1m"


def test_parse_size_reads_spark_sizes():
    assert [parse_size(v) for v in ("64m", "1g", "1024", "8M", "2gb", "0", "lots")] == \
        [64 * 2**20, 2**30, 1024, 8 * 2**20, 2 * 2**30, None, None]
    assert [chunk_count(b, 100) for b in (0, 100, 101, 1000)] == [1, 1, 2, 10]


def _embeddings(warehouse):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, DIM))
    vectors = centres[rng.integers(0, 40, N_DOCS)] + 0.3 * rng.normal(size=(N_DOCS, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    frame = pd.DataFrame({"doc_id": [f"{(i * 2654435761) % 2**32:08x}-{i}" for i in range(N_DOCS)],
                          "embedding": list(vectors.astype(np.float32))})
    (warehouse / "embeddings").mkdir(parents=True)
    frame.to_parquet(warehouse / "embeddings" / "part-0.parquet")
    return frame


def _labels(path):
    return write_jsonl(path, [{"text": f"{text[:700]} ({i})", "score": i % 11}
                              for i, text in enumerate(bbc_articles(N_LABELS))])


def _config(warehouse, labels, **tables):
    return make_config(warehouse, [], tables={"format": "parquet", **tables},
                       diversity={"method": "kmeans", "k": K, "niter": 5},
                       quality={"train": {"labels": [str(labels)], "max_tokens": LABEL_CHARS // CHARS_PER_TOKEN}})


def on_classic_spark(folder: str) -> None:
    """Child process: the stages and the label read on classic Spark with a 1 MiB result cap."""
    from samplemix_spark.config import EngineConfig
    from samplemix_spark.engine.session import build_session
    from samplemix_spark.quality.train import load_labels

    from .conftest import store_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    root = Path(folder)
    spark = build_session(EngineConfig(kind="jvm-local", master="local[2]", spark_conf={
        "spark.driver.maxResultSize": RESULT_CAP, "spark.sql.shuffle.partitions": 3}))
    cfg = _config(root / "jvm", root / "labels.jsonl")
    for stage in ("cluster", "assign", "diversity"):
        run_stage(spark, cfg, stage)
    load_labels(spark, store_for(spark, cfg), cfg.quality.train).to_parquet(root / "jvm_labels.parquet")


@pytest.mark.jvm
@pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")
def test_cluster_statistics_and_labels_within_a_small_max_result_size(spark, tmp_path):
    embeddings = _embeddings(tmp_path / "jvm")
    assert embeddings["embedding"].map(len).sum() * 4 > 4 * 2**20 and K * DIM * 4 > 2**20
    labels = _labels(tmp_path / "labels.jsonl")
    result = subprocess.run([sys.executable, "-c", f"from tests.test_driver_reads import on_classic_spark; "
                             f"on_classic_spark({str(tmp_path)!r})"], cwd=REPO, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for what in ("cluster: about", "centroids: 800 rows", "train-quality: about"):
        line = next(line for line in result.stderr.splitlines() if what in line)
        assert int(line.split(" chunks")[0].rsplit(" ", 1)[1]) > 1, line

    # The embedded engine reads each in one piece: the same sample order gives the same centroids.
    _embeddings(tmp_path / "sail")
    cfg = _config(tmp_path / "sail", labels)
    for stage in ("cluster", "assign", "diversity"):
        run_stage(spark, cfg, stage)
    for table, key in (("centroids", "cluster_id"), ("cluster_stats", "cluster_id"), ("diversity", "doc_id")):
        on_jvm = pd.read_parquet(tmp_path / "jvm" / table).sort_values(key).reset_index(drop=True)
        on_sail = pd.read_parquet(tmp_path / "sail" / table).sort_values(key).reset_index(drop=True)
        assert len(on_jvm) == (K if table != "diversity" else N_DOCS)
        if table == "centroids":
            np.testing.assert_allclose(np.stack(on_jvm["centroid"]), np.stack(on_sail["centroid"]), atol=1e-6)
        else:
            pd.testing.assert_frame_equal(on_jvm, on_sail, check_dtype=False, rtol=1e-9)

    in_one_piece = load_labels(spark, store_for(spark, cfg), cfg.quality.train)
    assert len(in_one_piece) == N_LABELS and in_one_piece["text"].str.len().max() == LABEL_CHARS
    assert in_one_piece["text"].str.len().sum() > 2**20
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "jvm_labels.parquet"), in_one_piece,
                                  check_dtype=False)


def test_sample_in_chunks_equals_the_sample_in_one_piece(spark, tmp_path):
    """On the embedded engine too: 1 MiB chunks, staged in a Delta table partitioned by chunk."""
    embeddings = _embeddings(tmp_path / "staging")
    cfg = make_config(tmp_path / "wh", [], diversity={"method": "kmeans", "sample_size": 2000})
    spark.createDataFrame(embeddings).write.format("delta").save(str(tmp_path / "wh" / "embeddings"))
    samples = []
    for chunk_mb in (64, 1):
        store = TableStore(spark, dataclasses.replace(cfg.tables, collect_chunk_mb=chunk_mb))
        samples.append(collect_sample(store, store.read("embeddings"), N_DOCS, cfg.diversity))
    (ids, vectors), (chunked_ids, chunked_vectors) = samples
    assert 1700 < len(ids) < 2300 and list(ids) == sorted(ids) and list(chunked_ids) == list(ids)
    expected = np.stack(embeddings.set_index("doc_id").loc[list(ids), "embedding"].to_numpy())
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_array_equal(chunked_vectors, expected)
    assert TableStore(spark, cfg.tables).read("kmeans_sample").select("chunk").distinct().count() > 1
