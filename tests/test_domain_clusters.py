"""domain.method: clusters: a corpus without a domain column gets domains from groups of its k-means clusters.

Answers known in advance: centroids drawn as blobs group into exactly those
blobs, the blob with the most documents first; on real text (BBC articles with
no domain field) every document's domain is the group of its cluster, and every
held-out document's the group of the centroid nearest its own embedding, both
recomputed in numpy from the stored tables and a direct encoder; a refresh that
re-clusters renames nothing and labels new documents through the stored groups.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from samplemix_spark.diversity.domains import fit_groups, group_names, nearest_group, stable_names
from samplemix_spark.errors import ConfigError
from samplemix_spark.pipeline import plan, run_pipeline
from samplemix_spark.refresh import run_incremental

from .conftest import make_config, store_for, write_jsonl
from .realtext import bbc_articles

ARTICLES = bbc_articles(160)
MAX_DOMAINS = 3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_centroid_blobs_group_into_the_blobs_the_one_with_most_documents_first():
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:3]
    blob = np.repeat(np.arange(3), [5, 7, 4])  # 16 cluster centroids in three blobs
    centroids = _unit(centers[blob] + 0.05 * rng.standard_normal((len(blob), 8))).astype(np.float32)
    sizes = np.where(blob == 2, 100.0, 10.0)  # blob 2 has the fewest clusters and the most documents
    groups = fit_groups(centroids, sizes, MAX_DOMAINS, niter=20, seed=1)
    assigned = nearest_group(centroids, groups)
    for b in range(3):  # each blob is one group, and no group spans two blobs
        assert len(set(assigned[blob == b])) == 1
    assert len(set(assigned)) == 3
    assert assigned[blob == 2][0] == 0 and assigned[blob == 1][0] == 1  # 400 documents, then 70, then 50


def test_fewer_clusters_than_max_domains_give_each_cluster_its_own_group():
    centroids = np.eye(4, dtype=np.float32)[:2]
    groups = fit_groups(centroids, np.array([3.0, 5.0]), 8, niter=10, seed=1)
    assert len(groups) == 2 and nearest_group(centroids, groups).tolist() == [1, 0]
    assert group_names(2) == ["cluster_group_0", "cluster_group_1"]


def test_groups_under_the_minimum_share_are_dissolved_into_the_nearest_others():
    rng = np.random.default_rng(3)
    blob = np.repeat(np.arange(3), [6, 6, 2])
    centroids = _unit(np.eye(8)[blob] + 0.05 * rng.standard_normal((len(blob), 8))).astype(np.float32)
    sizes = np.where(blob == 2, 5.0, 100.0)  # the third blob holds 10 of 1,210 documents
    assert len(fit_groups(centroids, sizes, 3, niter=20, seed=1)) == 3
    groups = fit_groups(centroids, sizes, 3, niter=20, seed=1, min_share=0.05)
    assigned = nearest_group(centroids, groups)
    assert len(groups) == 2 and len(set(assigned[blob == 0])) == len(set(assigned[blob == 1])) == 1


def test_refitted_groups_keep_the_names_of_the_stored_groups_they_match():
    rng = np.random.default_rng(4)
    stored = _unit(rng.standard_normal((4, 16)))
    stored_names = ["cluster_group_0", "cluster_group_1", "cluster_group_2", "cluster_group_5"]
    order = [2, 0, 3, 1]  # the refit ranks the groups by size differently, and moves each a little
    refit = _unit(stored[order] + 0.1 * rng.standard_normal((4, 16)))
    names, lines = stable_names(refit, stored, stored_names)
    assert names == [stored_names[i] for i in order] and len(lines) == 4
    more = np.vstack([refit, _unit(rng.standard_normal((1, 16)))])
    names, lines = stable_names(more, stored, stored_names)
    assert names[:4] == [stored_names[i] for i in order] and names[4] == "cluster_group_6"  # never reused
    names, lines = stable_names(refit[:3], stored, stored_names)
    assert names == [stored_names[i] for i in order[:3]] and "cluster_group_1 retired: no group matches it" in lines


def _config(root):
    held_out = [str(root / "held" / "*.jsonl")]
    return make_config(root / "wh", [root / "src" / "*.jsonl"], quality={"method": "heuristic"},
                       diversity={"method": "kmeans", "max_tokens": 32, "k": 8, "niter": 10},
                       ingest={"quality_column": None, "diversity_column": None, "holdout_sources": held_out},
                       domain={"method": "clusters", "max_domains": MAX_DOMAINS})


def _land(path, texts: list[str]) -> None:
    write_jsonl(path, [{"text": t} for t in texts])


def _tables(store) -> dict[str, pd.DataFrame]:
    names = ("documents", "holdout", "assignments", "centroids", "domain_groups", "rejects")
    return {t: store.read(t).toPandas() for t in names}


def _matrix(frame: pd.DataFrame, key: str) -> np.ndarray:
    return np.stack(frame.sort_values(key)["centroid"].to_numpy()).astype(np.float64)


def _expected_domains(tables) -> tuple[pd.Series, np.ndarray]:
    """doc_id -> domain from the stored centroids, groups and assignments; the cluster -> domain array."""
    groups = _matrix(tables["domain_groups"], "group_id")
    names = tables["domain_groups"].sort_values("group_id")["domain"].to_numpy()
    of_cluster = names[(_unit(_matrix(tables["centroids"], "cluster_id")) @ _unit(groups).T).argmax(1)]
    assignments = tables["assignments"].set_index("doc_id")["cluster_id"]
    return pd.Series(of_cluster[assignments.to_numpy()], index=assignments.index), of_cluster


@pytest.fixture(scope="module")
def clustered(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("clusters")
    _land(root / "src" / "a.jsonl", ARTICLES[:100])
    _land(root / "held" / "a.jsonl", ARTICLES[100:120])
    cfg = _config(root)
    results = run_pipeline(spark, cfg)
    return root, cfg, [r.stage for r in results], _tables(store_for(spark, cfg))


def _held_out_expected(cfg, tables, holdout: pd.DataFrame) -> list[str]:
    """The group of the stored centroid nearest each held-out text's embedding by a direct encoder."""
    from samplemix_spark.models.encoder import TextEncoder
    from samplemix_spark.models.paths import resolve_local_path

    encoder = TextEncoder(resolve_local_path(cfg.diversity.encoder, "test"), max_tokens=32)
    vectors = encoder.embed(holdout["text"].tolist(), normalize=True).astype(np.float64)
    nearest = (vectors @ _unit(_matrix(tables["centroids"], "cluster_id")).T).argmax(1)
    return _expected_domains(tables)[1][nearest].tolist()


def test_every_document_gets_its_cluster_group_training_and_held_out(clustered):
    _, cfg, stages, tables = clustered
    assert stages.index("domains") == stages.index("assign") + 1 < stages.index("quality")
    documents, holdout = tables["documents"].set_index("doc_id"), tables["holdout"]
    assert (tables["rejects"]["reason"] != "null_domain").all() and len(holdout) > 0
    assert len(documents) + len(holdout) + len(tables["rejects"]) == 120
    expected, _ = _expected_domains(tables)
    assert documents["domain"].sort_index().tolist() == expected.sort_index().tolist()
    counts = documents["domain"].value_counts()
    assert len(tables["domain_groups"]) == MAX_DOMAINS and set(counts.index) <= set(group_names(MAX_DOMAINS))
    assert counts.idxmax() == "cluster_group_0" and counts.get("cluster_group_0") >= counts.max()
    assert holdout["domain"].tolist() == _held_out_expected(cfg, tables, holdout)


def test_a_refresh_that_reclusters_keeps_every_label_and_labels_new_documents_by_the_stored_groups(spark, clustered):
    from deltalake import DeltaTable

    root, cfg, _, before = clustered
    store = store_for(spark, cfg)
    files_before = {t: set(DeltaTable(store.location(t)).file_uris()) for t in ("documents", "holdout")}
    _land(root / "src" / "b.jsonl", ARTICLES[120:140])
    _land(root / "held" / "b.jsonl", ARTICLES[140:150])
    run_incremental(spark, cfg, recluster=True)
    after = _tables(store)
    for table, files in files_before.items():  # the new rows' labels are merged into their own files alone
        now = set(DeltaTable(store.location(table)).file_uris())
        added = sum(pq.ParquetFile(path).metadata.num_rows for path in now - files)
        assert files <= now and added == len(after[table]) - len(before[table]), table
    pd.testing.assert_frame_equal(after["domain_groups"].sort_values("group_id").reset_index(drop=True),
                                  before["domain_groups"].sort_values("group_id").reset_index(drop=True))
    for table in ("documents", "holdout"):
        old = before[table].set_index("doc_id")["domain"]
        new = after[table].set_index("doc_id")["domain"]
        assert new.loc[old.index].tolist() == old.tolist(), table
        assert new.notna().all() and len(new) > len(old), table
    documents = after["documents"].set_index("doc_id")["domain"]
    expected, _ = _expected_domains(after)  # the new centroids, mapped to the stored groups
    added = documents.index.difference(before["documents"]["doc_id"])
    assert documents.loc[added].tolist() == expected.loc[added].tolist()


def test_a_refresh_that_adds_only_held_out_documents_labels_them_and_nothing_else(spark, clustered):
    root, cfg, _, _ = clustered
    store = store_for(spark, cfg)
    before = _tables(store)
    _land(root / "held" / "c.jsonl", ARTICLES[150:])
    assert [r.stage for r in run_incremental(spark, cfg)] == ["ingest", "domains"]
    after = _tables(store)
    pd.testing.assert_frame_equal(after["documents"].sort_values("doc_id").reset_index(drop=True),
                                  before["documents"].sort_values("doc_id").reset_index(drop=True))
    old, holdout = before["holdout"].set_index("doc_id")["domain"], after["holdout"].set_index("doc_id")
    assert len(holdout) == len(old) + 10 and holdout.loc[old.index, "domain"].tolist() == old.tolist()
    added = holdout.drop(index=old.index)
    assert added["domain"].tolist() == _held_out_expected(cfg, after, added)


def test_clusters_without_kmeans_diversity_or_a_domains_stage_without_clusters_fail_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as failure:
        make_config(tmp_path / "wh", ["unused"], domain={"method": "clusters"})
    assert "'domain.method'" in str(failure.value) and "diversity.method 'kmeans'" in str(failure.value)
    with pytest.raises(ConfigError) as failure:
        plan(make_config(tmp_path / "wh", ["unused"]), ("domains",))
    assert "the domains stage labels documents for 'clusters'" in str(failure.value)
    assert "\n" not in str(failure.value) and not (tmp_path / "wh").exists()


def test_a_full_relabel_keeps_the_stored_group_names(spark, clustered):
    """A full rerun refits the groups; each keeps the name of the stored group its centroid matches."""
    from pyspark.sql import functions as F

    from samplemix_spark.diversity.domains import DomainGroupsStep

    _, cfg, _, _ = clustered
    store = store_for(spark, cfg)
    stored = store.read("domain_groups").toPandas().sort_values("group_id")
    renamed = dict(zip(stored["domain"], ["cluster_group_7", "cluster_group_3", "cluster_group_9"]))
    new_name = F.coalesce(*[F.when(F.col("domain") == old, F.lit(new)) for old, new in renamed.items()])
    store.write(store.read("domain_groups").withColumn("domain", new_name), "domain_groups")
    store.write(store.read("documents").withColumn("domain", F.lit(None).cast("string")), "documents")
    DomainGroupsStep(cfg).run(spark, store)
    tables = _tables(store)
    refit = _matrix(tables["domain_groups"], "group_id")
    cosine = _unit(refit) @ _unit(_matrix(stored, "group_id")).T
    # Independently: of the 3! one-to-one matchings, the one with the largest summed cosine.
    best = max(itertools.permutations(range(3)), key=lambda match: sum(cosine[i, j] for i, j in enumerate(match)))
    names = tables["domain_groups"].sort_values("group_id")["domain"].tolist()
    assert names == [renamed[n] for n in stored["domain"].to_numpy()[list(best)]]
    expected, _ = _expected_domains(tables)
    documents = tables["documents"].set_index("doc_id")["domain"]
    assert documents.loc[expected.index].tolist() == expected.tolist()
