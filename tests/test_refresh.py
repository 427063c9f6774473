"""``samplemix run --incremental``: a refresh gives the tables of a full run over the union.

Real BBC articles and degraded copies of them, the heuristic quality scorer and
MiniLM + faiss k-means diversity. The reference is an independent full run over
old and new sources together; where the refresh keeps the stored centroids, the
reference is given the same centroids before it assigns.
"""

from __future__ import annotations

import logging
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from samplemix_spark.diversity.embed import embedding_matrix
from samplemix_spark.pipeline import plan, run_pipeline
from samplemix_spark.refresh import run_incremental
from samplemix_spark.tables.per_document import run_per_document

from .conftest import REPO, make_config, store_for, write_jsonl
from .realtext import bbc_articles, degrade

CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")
ARTICLES = bbc_articles(330)
# Tables a refresh must reproduce, with the columns that identify a row.
KEYED = {"documents": ["doc_id"], "rejects": ["reason", "doc_id", "text"], "quality": ["doc_id"],
         "assignments": ["doc_id"], "diversity": ["doc_id"], "weights": ["doc_id"], "cluster_stats": ["cluster_id"],
         "report_domains": ["domain"], "output": ["doc_id", "replica"], "centroids": ["cluster_id"]}
PER_DOCUMENT = ("quality", "embeddings", "assignments")


def _files(store, table: str) -> set[str]:
    from deltalake import DeltaTable

    return set(DeltaTable(store.location(table)).file_uris())


def _records(first: int, last: int) -> list[dict]:
    """News articles first..last-1 by category, and every fifth one degraded into spam."""
    rows = [{"text": ARTICLES[i], "domain": CATEGORIES[i % 5]} for i in range(first, last)]
    return rows + [{"text": degrade(ARTICLES[i], i), "domain": "spam"} for i in range(first, last, 5)]


def _config(warehouse, sources, **ingest):
    # Small output files, so that a refresh's MERGE can keep the files that hold no removed copy.
    return make_config(warehouse, sources, quality={"method": "heuristic"}, mixing={"output_file_mb": 0.05},
                       diversity={"method": "kmeans", "max_tokens": 32, "k": 6, "niter": 10},
                       ingest={"quality_column": None, "diversity_column": None, **ingest})


def _frame(store, table: str) -> pd.DataFrame:
    # The reference reads the same rows from other files, so a reject's file and line may differ.
    frame = store.read(table).toPandas().drop(columns=["source_file", "source_line"], errors="ignore")
    return frame.sort_values(KEYED.get(table, ["doc_id"])).reset_index(drop=True)


def _assert_same_tables(refreshed, reference, more: tuple = ()) -> None:
    for table, key in [*KEYED.items(), *((t, ["doc_id"]) for t in more)]:
        a, b = _frame(refreshed, table), _frame(reference, table)
        assert list(a[key].itertuples(index=False)) == list(b[key].itertuples(index=False)), table
        pd.testing.assert_frame_equal(a, b[a.columns], check_exact=False, rtol=1e-5, obj=table)
    a, b = _frame(refreshed, "embeddings"), _frame(reference, "embeddings")
    assert list(a["doc_id"]) == list(b["doc_id"])
    np.testing.assert_allclose(embedding_matrix(a), embedding_matrix(b), atol=1e-5)


@pytest.fixture()
def first_run(spark, tmp_path):
    """A full run over the old source; the new source lands beside it afterwards."""
    old = write_jsonl(tmp_path / "src" / "a.jsonl", _records(0, 250))
    cfg = _config(tmp_path / "refresh", [tmp_path / "src" / "*.jsonl"])
    run_pipeline(spark, cfg)
    return cfg, old


def _land(tmp_path, name: str, records: list[dict]) -> None:
    write_jsonl(tmp_path / "src" / name, records)


def _reference(spark, tmp_path, centroids_from=None, **ingest):
    """A full run over every source; with ``centroids_from``, those centroids instead of fitting."""
    cfg = _config(tmp_path / "reference", [tmp_path / "src" / "*.jsonl"], **ingest)
    if centroids_from is None:
        run_pipeline(spark, cfg)
        return store_for(spark, cfg)
    run_pipeline(spark, cfg, ("ingest", "quality", "embed"))
    store_for(spark, cfg).write(centroids_from.read("centroids"), "centroids")
    run_pipeline(spark, cfg, ("assign", "diversity", "mix", "report"))
    return store_for(spark, cfg)


def test_refresh_equals_a_full_run_over_the_union_with_the_same_centroids(spark, tmp_path, first_run, caplog):
    cfg, old = first_run
    store = store_for(spark, cfg)
    centroids_before = _frame(store, "centroids")
    # 40 new articles and 8 spam pages (14% of the corpus), an old article delivered again and an empty row.
    _land(tmp_path, "b.jsonl", _records(250, 290) + [{"text": ARTICLES[3], "domain": CATEGORIES[3]},
                                                      {"text": "  ", "domain": "tech"}])
    n_before, n_rejects_before = store.read("documents").count(), store.read("rejects").count()
    files_before = {t: _files(store, t) for t in (*PER_DOCUMENT, "documents", "rejects", "output")}
    counts_before = _counts(store)
    caplog.set_level(logging.INFO)
    results = run_incremental(spark, cfg)
    _assert_output_merged(store, counts_before, files_before.pop("output"))
    assert "assigning them to the stored centroids" in caplog.text
    assert "ingest: source files: 1 new, 0 changed, 1 unchanged" in caplog.text  # a.jsonl is not opened
    counted = re.search(r"ingest: (\d+) input rows = (\d+) new documents \+ (\d+) already stored \+ (\d+) rejects",
                        caplog.text)
    n_input, n_new, n_seen, n_rejects = map(int, counted.groups())
    assert (n_input, n_new, n_seen, n_rejects) == (48 + 2, 48, 0, 2)  # the old article again is a duplicate
    assert store.read("documents").count() - n_before == n_new
    assert store.read("rejects").count() - n_rejects_before == n_rejects
    assert "cluster" not in {r.stage for r in results}
    pd.testing.assert_frame_equal(_frame(store, "centroids"), centroids_before)
    assert store.read("increment").count() == 0
    added = {"documents": n_new, "rejects": n_rejects, **{t: n_new for t in PER_DOCUMENT}}
    for table, before in files_before.items():  # the stored rows' files stay; one append adds the new rows
        after = _files(store, table)
        assert before <= after, table
        assert sum(pq.ParquetFile(path).metadata.num_rows for path in after - before) == added[table], table
    files = store.read("source_files").toPandas().set_index("path")
    assert files["rows"].to_dict() == {str(old): 300, str(tmp_path / "src" / "b.jsonl"): 50}
    _assert_same_tables(store, _reference(spark, tmp_path, centroids_from=store))
    # A plain run afterwards finds every stage current for these sources.
    assert run_pipeline(spark, cfg, resume=True) == []


def _counts(store) -> pd.Series:
    return store.read("weights").select("doc_id", "count").toPandas().set_index("doc_id")["count"]


def _assert_output_merged(store, counts_before: pd.Series, files_before: set) -> None:
    """The refresh's one commit to ``output`` is a MERGE that inserts and deletes exactly the copies whose count
    changed, and rewrites only the files that held a deleted copy."""
    from deltalake import DeltaTable

    change = _counts(store).sub(counts_before.reindex(_counts(store).index).fillna(0))
    [commit] = [c for c in DeltaTable(store.location("output")).history(2) if c["operation"] == "MERGE"]
    metrics = commit["operationMetrics"]
    assert metrics["numTargetRowsInserted"] == change.clip(lower=0).sum() > 0
    assert metrics["numTargetRowsDeleted"] == (-change).clip(lower=0).sum() > 0
    deleted = {(doc, replica) for doc, n in change[change < 0].items()
               for replica in range(int(counts_before[doc]) + int(n), int(counts_before[doc]))}
    holding = {path for path in files_before
               if deleted & set(pq.read_table(path, columns=["doc_id", "replica"]).to_pandas().itertuples(index=False))}
    assert 0 < len(holding) < len(files_before)
    assert files_before - _files(store, "output") == holding


def test_large_refresh_reclusters_and_equals_a_plain_full_run(spark, tmp_path, first_run, caplog):
    cfg, _ = first_run
    _land(tmp_path, "b.jsonl", _records(250, 330))  # 96 new of 396: above the 20% threshold
    caplog.set_level(logging.INFO)
    run_incremental(spark, cfg)
    assert "re-clustering (new documents are 24.2% of the corpus" in caplog.text
    _assert_same_tables(store_for(spark, cfg), _reference(spark, tmp_path))


def test_refresh_without_new_documents_writes_nothing(spark, tmp_path, first_run, caplog):
    from deltalake import DeltaTable

    cfg, _ = first_run
    store = store_for(spark, cfg)
    versions = {t: DeltaTable(store.location(t)).version() for t in ("quality", "embeddings", "weights", "output")}
    caplog.set_level(logging.INFO)
    results = run_incremental(spark, cfg)
    assert "no new documents" in caplog.text and [r.stage for r in results] == ["ingest"]
    assert versions == {t: DeltaTable(store.location(t)).version() for t in versions}


def test_refresh_killed_after_ingest_scores_the_pending_documents_next_time(spark, tmp_path, first_run):
    from samplemix_spark.ingest import IngestStep

    cfg, _ = first_run
    store = store_for(spark, cfg)
    _land(tmp_path, "b.jsonl", _records(250, 290))
    IngestStep(cfg).run_increment(spark, store)  # a refresh that stopped after its ingest ...
    assert store.read("increment").count() == 48
    quality = dict(plan(cfg))["quality"]  # ... and after appending the new documents' quality rows
    run_per_document(spark, store, quality, store.read("increment"), append=True)
    run_incremental(spark, cfg)  # finds no new doc_id in the sources, but the pending increment
    _assert_same_tables(store, _reference(spark, tmp_path, centroids_from=store))


def test_a_refresh_stopped_midway_reads_its_files_again_and_adds_nothing_twice(spark, tmp_path, first_run,
                                                                               monkeypatch, caplog):
    from samplemix_spark.tables import TableStore

    cfg, _ = first_run
    store = store_for(spark, cfg)
    _land(tmp_path, "b.jsonl", _records(250, 290) + [{"text": "  ", "domain": "tech"}])
    append = TableStore.append

    def stopped(self, df, table):
        if table == "rejects":  # after the new documents are stored
            raise RuntimeError("killed")
        return append(self, df, table)

    monkeypatch.setattr(TableStore, "append", stopped)
    with pytest.raises(RuntimeError, match="killed"):
        run_incremental(spark, cfg)
    monkeypatch.setattr(TableStore, "append", append)
    caplog.set_level(logging.INFO)
    run_incremental(spark, cfg)
    assert "b.jsonl: its last ingest did not finish: reading it again" in caplog.text
    assert "49 input rows = 0 new documents + 48 already stored + 1 rejects" in caplog.text
    _assert_same_tables(store, _reference(spark, tmp_path, centroids_from=store))


def test_incremental_on_an_empty_warehouse_is_a_full_run(spark, tmp_path):
    write_jsonl(tmp_path / "src" / "a.jsonl", _records(0, 60))
    cfg = _config(tmp_path / "refresh", [tmp_path / "src" / "*.jsonl"])
    results = run_incremental(spark, cfg)
    assert [r.stage for r in results] == ["ingest", "quality", "embed", "cluster", "assign", "diversity", "mix",
                                          "report"]
    assert store_for(spark, cfg).read("weights").count() == 72


def test_a_document_changed_in_the_source_keeps_its_stored_version_with_a_warning(spark, tmp_path, first_run,
                                                                                  caplog):
    cfg, _ = first_run
    store = store_for(spark, cfg)
    _land(tmp_path, "b.jsonl", [{"text": ARTICLES[3], "domain": "politics"}])  # same text, another domain
    caplog.set_level(logging.INFO)
    run_incremental(spark, cfg)
    assert "1 stored documents have a different text or domain" in caplog.text
    assert "no new documents" in caplog.text
    domains = store.read("documents").toPandas().set_index("text")["domain"]
    assert domains[ARTICLES[3]] == CATEGORIES[3]


def test_a_changed_source_file_is_read_again_whole_and_its_rejects_replaced(spark, tmp_path, first_run, caplog):
    cfg, old = first_run
    store = store_for(spark, cfg)
    n_before, n_rejects_before = store.read("documents").count(), store.read("rejects").count()
    write_jsonl(old, _records(0, 270) + [{"text": "", "domain": "tech"}])  # the same file, grown
    caplog.set_level(logging.INFO)
    run_incremental(spark, cfg)
    assert "ingest: source files: 0 new, 1 changed, 0 unchanged" in caplog.text
    assert re.search(rf"source file {re.escape(str(old))} changed \(size [\d,]+ -> [\d,]+\)", caplog.text)
    assert (f"325 input rows = 24 new documents + {n_before} already stored + {n_rejects_before + 1} rejects"
            in caplog.text)
    assert store.read("rejects").count() == n_rejects_before + 1  # the file's earlier rejects are not repeated
    _assert_same_tables(store, _reference(spark, tmp_path, centroids_from=store))


def _near_copy(text: str) -> str:
    return text + " The figures were published on Tuesday."


def test_a_refresh_keeps_held_out_text_out_of_training_as_a_full_run_does(spark, tmp_path, caplog):
    """New training text that copies a stored held-out document, exactly or nearly, makes it a reject; a new
    held-out document that copies stored training text is one. The tables equal a full run's."""
    held = {"holdout_sources": [str(tmp_path / "held" / "*.jsonl")]}
    write_jsonl(tmp_path / "src" / "a.jsonl", _records(0, 120))
    write_jsonl(tmp_path / "held" / "h1.jsonl", [{"text": ARTICLES[i], "domain": "news"} for i in range(300, 306)])
    cfg = _config(tmp_path / "refresh", [tmp_path / "src" / "*.jsonl"], **held)
    run_pipeline(spark, cfg)
    store = store_for(spark, cfg)
    assert store.read("holdout").count() == 6
    _land(tmp_path, "b.jsonl", _records(120, 140) + [{"text": ARTICLES[300], "domain": "tech"},
                                                      {"text": _near_copy(ARTICLES[301]), "domain": "tech"}])
    write_jsonl(tmp_path / "held" / "h2.jsonl", [{"text": t, "domain": "news"} for t in
                                                 (ARTICLES[5], _near_copy(ARTICLES[6]), ARTICLES[310])])
    caplog.set_level(logging.INFO)
    run_incremental(spark, cfg)
    assert "ingest: source files: 2 new, 0 changed, 2 unchanged" in caplog.text
    reasons = store.read("rejects").toPandas().set_index("text")["reason"].to_dict()
    assert reasons[ARTICLES[300]] == reasons[ARTICLES[5]] == "holdout_duplicate"
    assert reasons[ARTICLES[301]] == reasons[_near_copy(ARTICLES[6])] == "holdout_near_duplicate"
    assert set(store.read("holdout").toPandas()["text"]) == {ARTICLES[i] for i in (302, 303, 304, 305, 310)}
    _assert_same_tables(store, _reference(spark, tmp_path, centroids_from=store, **held),
                        more=("holdout", "holdout_overlap"))


@pytest.mark.jvm
@pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")
def test_a_refresh_on_jvm_spark_equals_a_full_run_over_the_union(tmp_path):
    """Classic JVM Spark with Parquet tables (which a refresh ingests again whole): the refreshed tables equal
    the embedded engine's full run over old and new files, held-out set included."""
    from deltalake import DeltaTable

    from samplemix_spark.demo.synthetic import write_corpus

    from .test_cli import run_pipeline_cli, samplemix
    from .test_jvm_parity import JVM

    held = ("ingest.holdout_fraction=0.1",)
    for name in ("jvm", "embedded"):
        write_corpus(tmp_path / name / "data", 1200, seed=5, n_files=2)
    first = run_pipeline_cli(tmp_path / "jvm", *held, *JVM)
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("jvm", "embedded"):
        [new] = write_corpus(tmp_path / name / "new", 120, seed=6, n_files=1)
        new.rename(tmp_path / name / "data" / "new.jsonl")
    sets = [f"--set={o}" for o in (f"ingest.sources=[{tmp_path}/jvm/data/*.jsonl]",
                                   f"tables.warehouse={tmp_path}/jvm/wh", *held, *JVM)]
    refreshed = samplemix("run", "--incremental", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets,
                          cwd=tmp_path / "jvm")
    assert refreshed.returncode == 0, refreshed.stderr[-3000:]
    assert "the refresh ingests every source again" in refreshed.stderr
    full = run_pipeline_cli(tmp_path / "embedded", *held)
    assert full.returncode == 0, full.stderr[-3000:]
    for table, key in (("documents", ["doc_id"]), ("holdout", ["doc_id"]), ("weights", ["doc_id"]),
                       ("output", ["doc_id", "replica"])):
        jvm = pd.read_parquet(tmp_path / "jvm" / "wh" / table).sort_values(key).reset_index(drop=True)
        embedded = DeltaTable(str(tmp_path / "embedded" / "wh" / table)).to_pandas()
        embedded = embedded.sort_values(key).reset_index(drop=True)[jvm.columns]
        pd.testing.assert_frame_equal(jvm, embedded, check_dtype=False, rtol=1e-9, obj=table)
