"""Mixing: p(x), c(x) and counts against the numpy oracle; determinism; numeric extremes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.errors import InputError
from samplemix_spark.mixing import read_stats
from samplemix_spark.mixing.output import build_output, output_changes
from samplemix_spark.pipeline import run_pipeline, run_stage

from . import oracle
from .conftest import make_config, store_for, write_jsonl

N_DOCS = 3000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The generated corpus on disk plus the raw scores keyed by the hashed doc_id."""
    folder = tmp_path_factory.mktemp("corpus")
    paths = write_corpus(folder, N_DOCS, seed=11, n_files=3)
    records = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    raw = pd.DataFrame(records)
    raw["doc_id"] = [hashlib.sha256(t.encode()).hexdigest()[:32] for t in raw["text"]]
    return paths, raw.set_index("doc_id")


@pytest.fixture(scope="module")
def scored_warehouse(spark, corpus, tmp_path_factory):
    """A warehouse where ingest, quality and diversity have run once."""
    warehouse = tmp_path_factory.mktemp("wh")
    cfg = make_config(warehouse, corpus[0])
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity"))
    return warehouse


def _mix(spark, warehouse, corpus, **mixing):
    cfg = make_config(warehouse, corpus[0], mixing=mixing)
    run_stage(spark, cfg, "mix")
    return cfg, store_for(spark, cfg).read("weights").toPandas().set_index("doc_id").sort_index()


def _check_against_oracle(weights: pd.DataFrame, raw: pd.DataFrame, alpha, tau, target_tokens=None):
    raw = raw.loc[weights.index]
    n_tokens = weights["n_tokens"].to_numpy()
    budget = target_tokens if target_tokens is not None else float(n_tokens.sum())
    p = oracle.sampling_weights(raw["quality_score"].to_numpy(), raw["diversity_score"].to_numpy(), alpha)
    c = oracle.expected_counts(p, n_tokens, tau, budget)
    np.testing.assert_allclose(weights["p"].to_numpy(), p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights["c"].to_numpy(), c, rtol=1e-9, atol=0)
    counts = weights["count"].to_numpy()
    floor = np.floor(c)
    assert np.all((counts == floor) | (counts == floor + 1))
    assert abs(counts.sum() - c.sum()) <= 4 * oracle.bernoulli_sigma(c) + 1e-9
    assert np.isfinite(weights[["q_norm", "d_norm", "p", "c"]].to_numpy()).all()
    return c


@pytest.mark.parametrize("alpha, tau", [(0.8, 0.2), (0.8, 0.01), (0.0, 0.2), (1.0, 0.2), (0.5, 10.0)])
def test_weights_and_counts_match_numpy_oracle(spark, scored_warehouse, corpus, alpha, tau):
    _, weights = _mix(spark, scored_warehouse, corpus, alpha=alpha, tau=tau, seed=5)
    assert len(weights) == N_DOCS
    _check_against_oracle(weights, corpus[1], alpha, tau)


def test_token_budget_absolute_and_fraction(spark, scored_warehouse, corpus):
    _, by_fraction = _mix(spark, scored_warehouse, corpus, target_fraction=0.2)
    source_tokens = float(by_fraction["n_tokens"].sum())
    c = _check_against_oracle(by_fraction, corpus[1], 0.8, 0.2, target_tokens=0.2 * source_tokens)
    assert c.sum() == pytest.approx(0.2 * N_DOCS, rel=1e-9)
    _, absolute = _mix(spark, scored_warehouse, corpus, target_tokens=123456)
    _check_against_oracle(absolute, corpus[1], 0.8, 0.2, target_tokens=123456)


def test_output_repeats_each_document_count_times(spark, scored_warehouse, corpus):
    cfg, weights = _mix(spark, scored_warehouse, corpus, tau=0.05)
    output = store_for(spark, cfg).read("output").toPandas()
    assert len(output) == weights["count"].sum()
    replicas = output.groupby("doc_id")["replica"].apply(sorted)
    selected = weights[weights["count"] > 0]
    assert set(replicas.index) == set(selected.index)
    for doc_id, count in selected["count"].items():
        assert replicas[doc_id] == list(range(count))
    assert (weights["count"] > 1).any(), "tau=0.05 should repeat some documents"
    texts = output.drop_duplicates("doc_id").set_index("doc_id")["text"]
    assert (texts == corpus[1].loc[texts.index, "text"]).all()


def test_the_mix_joins_the_scores_once_into_mix_scores(spark, scored_warehouse, corpus):
    cfg, weights = _mix(spark, scored_warehouse, corpus, seed=3)
    scores = store_for(spark, cfg).read("mix_scores").toPandas().set_index("doc_id").sort_index()
    assert list(scores.index) == list(weights.index)  # a row per document, each once
    raw = corpus[1].loc[scores.index]
    np.testing.assert_array_equal(scores["q"], raw["quality_score"])
    np.testing.assert_array_equal(scores["d"], raw["diversity_score"])
    assert (scores["domain"] == raw["domain"]).all() and (scores["n_tokens"] == weights["n_tokens"]).all()
    assert "text" not in scores.columns


def test_same_seed_same_counts_and_different_seed_different_counts(spark, scored_warehouse, corpus):
    _, first = _mix(spark, scored_warehouse, corpus, seed=1)
    _, again = _mix(spark, scored_warehouse, corpus, seed=1)
    _, other = _mix(spark, scored_warehouse, corpus, seed=2)
    pd.testing.assert_series_equal(first["count"], again["count"])
    assert (first["count"] != other["count"]).sum() > 0
    np.testing.assert_array_equal(first["c"].to_numpy(), other["c"].to_numpy())


@pytest.mark.parametrize("seed,scheme", [(1024, "v2"), (7, "v2"), (1024, "v1")])
def test_every_count_is_floor_plus_the_hashed_bernoulli_draw(spark, scored_warehouse, corpus, seed, scheme):
    cfg = make_config(scored_warehouse, corpus[0], mixing={"seed": seed, "tau": 0.05},
                      tables={"hash_scheme": scheme})
    run_stage(spark, cfg, "mix")
    weights = store_for(spark, cfg).read("weights").toPandas().set_index("doc_id").sort_index()
    assert store_for(spark, cfg).read("mix_run").collect()[0]["hash_scheme"] == scheme
    c = weights["c"].to_numpy()
    purpose = oracle.COUNT_DRAW if scheme == "v2" else None
    uniform = np.array([oracle.spark_xxhash64_uniform(doc_id, seed, purpose) for doc_id in weights.index])
    expected = np.floor(c) + (uniform < c - np.floor(c))
    assert 0.1 < np.mean(c - np.floor(c) > 0) and ((expected - np.floor(c)) == 1).sum() > 10  # draws matter
    np.testing.assert_array_equal(weights["count"].to_numpy(), expected.astype(int))


def test_shuffle_is_deterministic_and_scatters_copies(spark, scored_warehouse, corpus):
    cfg, weights = _mix(spark, scored_warehouse, corpus, tau=0.05, shuffle=True)
    store = store_for(spark, cfg)

    def ordered_ids():
        frame = build_output(store.read("weights"), store.read("documents"), cfg.mixing)
        return [(r.doc_id, r.replica) for r in frame.select("doc_id", "replica").collect()]

    order = ordered_ids()
    assert order == ordered_ids()
    adjacent = sum(a[0] == b[0] for a, b in zip(order, order[1:]))
    k = weights["count"].to_numpy()
    unshuffled = int(np.sum(np.maximum(k - 1, 0)))  # copies written next to each other
    random_order = float(np.sum(k * (k - 1)) / len(order))  # expected under a random permutation
    assert unshuffled > 100
    assert adjacent <= 3 * random_order + 10


def _single_domain_corpus(tmp_path, texts, quality, diversity):
    records = [{"text": t, "domain": "only", "quality_score": q, "diversity_score": d}
               for t, q, d in zip(texts, quality, diversity)]
    return write_jsonl(tmp_path / "src.jsonl", records)


@pytest.mark.parametrize("tau", [0.01, 0.2])
def test_all_equal_p_gives_uniform_counts(spark, tmp_path, tau):
    texts = [f"document number {i} about topic {i % 7}" for i in range(200)]
    source = _single_domain_corpus(tmp_path, texts, [3] * 200, [0.5] * 200)
    cfg = make_config(tmp_path / "wh", [source], mixing={"tau": tau, "target_fraction": 0.5})
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix"))
    weights = store_for(spark, cfg).read("weights").toPandas()
    np.testing.assert_allclose(weights["c"], 100 / 200 * np.ones(200), rtol=1e-12)
    assert (weights["p"] == 0).all()


def test_single_document_corpus(spark, tmp_path):
    source = _single_domain_corpus(tmp_path, ["The only document in the corpus."], [7], [0.2])
    cfg = make_config(tmp_path / "wh", [source], mixing={"tau": 0.01, "target_fraction": 2.5})
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix"))
    weights = store_for(spark, cfg).read("weights").toPandas()
    assert weights["c"].tolist() == pytest.approx([2.5], rel=1e-12)
    assert weights["count"].iloc[0] in (2, 3)


def test_missing_scores_are_refused(spark, tmp_path, corpus):
    cfg = make_config(tmp_path / "wh", corpus[0])
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity"))
    store = store_for(spark, cfg)
    partial = store.read("quality").filter(F.col("doc_id") > "8")
    store.write(partial.toPandas().pipe(spark.createDataFrame), "quality")
    with pytest.raises(InputError, match="have no quality score"):
        run_stage(spark, cfg, "mix")


def _exported_files(export, export_format) -> list[pd.DataFrame]:
    if export_format == "jsonl":
        return [pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()],
                             columns=["doc_id", "domain", "text", "n_tokens", "replica"])
                for path in sorted(export.glob("*.json"))]
    return [pd.read_parquet(path) for path in sorted(export.glob("*.parquet"))]


@pytest.mark.parametrize("export_format", ["jsonl", "parquet"])
def test_export_writes_every_output_row_in_the_outputs_order(spark, scored_warehouse, corpus, tmp_path,
                                                              export_format):
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    export = tmp_path / "export"
    cfg, weights = _mix(spark, scored_warehouse, corpus, export_format=export_format, export_path=str(export),
                        shuffle=True, output_file_mb=0.5)
    files = _exported_files(export, export_format)
    exported = pd.concat(files, ignore_index=True)
    assert list(exported.columns) == ["doc_id", "domain", "text", "n_tokens", "replica"]
    assert len(exported) == weights["count"].sum()
    assert exported.groupby("doc_id").size().to_dict() == weights.loc[weights["count"] > 0, "count"].to_dict()
    # Every export file holds runs of output files' rows, each file's rows in their order there.
    output_files = DeltaTable(store_for(spark, cfg).location("output")).file_uris()
    assert len(output_files) >= 3
    where = {}
    for number, uri in enumerate(output_files):
        rows = pq.read_table(uri.removeprefix("file://"), columns=["doc_id", "replica"]).to_pylist()
        where.update({(r["doc_id"], r["replica"]): (number, position) for position, r in enumerate(rows)})
    for frame in files:
        places = pd.DataFrame([where[key] for key in zip(frame["doc_id"], frame["replica"])], columns=["file", "at"])
        assert places.groupby("file")["at"].apply(lambda at: at.is_monotonic_increasing).all()


def test_output_file_count_follows_output_size(spark, scored_warehouse, corpus):
    from deltalake import DeltaTable

    from samplemix_spark.mixing.output import output_file_count

    assert output_file_count(1000, 300_000, 256) == 1
    assert output_file_count(10_000_000, 10e9, 256) == 171  # (45 GB text + 0.64 GB rows) / 256 MiB
    assert output_file_count(1e12, 1e15, 1) == 10_000
    cfg, weights = _mix(spark, scored_warehouse, corpus)
    files = DeltaTable(store_for(spark, cfg).location("output")).file_uris()
    assert len(files) == 1
    cfg, _ = _mix(spark, scored_warehouse, corpus, output_file_mb=0.5)
    stats = read_stats(store_for(spark, cfg))
    planned = output_file_count(stats.expected_rows(), stats.expected_tokens(), 0.5)
    files = DeltaTable(store_for(spark, cfg).location("output")).file_uris()
    assert planned >= 5 and planned <= len(files) <= 2 * planned


def test_shuffled_output_files_are_written_in_shuffle_key_order(spark, scored_warehouse, corpus):
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    cfg, weights = _mix(spark, scored_warehouse, corpus, tau=0.05, output_file_mb=0.5, shuffle=True)
    store = store_for(spark, cfg)
    keyed = store.read("output").select(
        "doc_id", "replica", F.xxhash64("doc_id", "replica", F.lit(cfg.mixing.seed)).alias("key")).toPandas()
    key_of = dict(zip(zip(keyed["doc_id"], keyed["replica"]), keyed["key"]))
    files = DeltaTable(store.location("output")).file_uris()
    assert len(files) > 1
    for path in files:
        rows = pq.read_table(path, columns=["doc_id", "replica"]).to_pandas()
        keys = [key_of[pair] for pair in zip(rows["doc_id"], rows["replica"])]
        assert keys == sorted(keys), path


@pytest.mark.parametrize("slice_bytes", [None, 5_000], ids=["rows-bound", "bytes-bound"])
def test_partition_sort_matches_a_code_point_sort_across_batches_and_keeps_the_schema(monkeypatch, slice_bytes):
    import pyarrow as pa

    from samplemix_spark.mixing import output
    from samplemix_spark.mixing.output import _SORTED_BATCH_ROWS, _sort_partition

    if slice_bytes:  # slices cut by their text's bytes: many more of them, the same order
        monkeypatch.setattr(output, "_SORTED_BATCH_BYTES", slice_bytes)

    rng = np.random.default_rng(3)
    n = _SORTED_BATCH_ROWS + 5000
    # Few keys, so ties fall through to doc_id (non-ASCII, where byte and code point order
    # could disagree) and then to replica.
    doc_ids = rng.choice(["d\u00e9", "d\U0001f600", "dz", "d\uffff", "D"], n)
    table = pa.table({"doc_id": doc_ids, "text": [f"t{i}" for i in range(n)],
                      "replica": pa.array(rng.integers(0, 50, n), pa.int32()),
                      "_key": pa.array(rng.integers(-3, 3, n), pa.int64())})
    batches = list(_sort_partition(table.to_batches(max_chunksize=999)))
    assert all(batch.schema == table.schema for batch in batches) and len(batches) > 1
    if slice_bytes:
        text_bytes = [sum(len(v.encode()) for name in ("doc_id", "text") for v in batch.column(name).to_pylist())
                      for batch in batches]
        assert max(text_bytes) <= slice_bytes
    got = pa.Table.from_batches(batches).to_pandas()
    expected = table.to_pandas().sort_values(["_key", "doc_id", "replica", "text"], kind="stable")
    pd.testing.assert_frame_equal(got[["_key", "doc_id", "replica"]].reset_index(drop=True),
                                  expected[["_key", "doc_id", "replica"]].reset_index(drop=True))
    # Every row leaves whole: its text still names the row it came with.
    source = table.to_pandas().set_index("text")
    assert sorted(got["text"]) == sorted(source.index)
    pd.testing.assert_frame_equal(got.set_index("text")[["_key", "doc_id", "replica"]],
                                  source.loc[got["text"], ["_key", "doc_id", "replica"]])


def test_output_changes_add_and_remove_exactly_the_copies_whose_count_changed(spark):
    held = {"a": 3, "b": 1, "gone": 2, "same": 2}  # copies in the output now
    wanted = {"a": 1, "b": 3, "new": 2, "same": 2, "zero": 0}  # counts of the new weights
    texts = spark.createDataFrame([(d, "web", f"text of {d}", 7) for d in wanted],
                                  "doc_id string, domain string, text string, n_tokens int")
    output = spark.createDataFrame([(d, "web", f"text of {d}", 7, r) for d, n in held.items() for r in range(n)],
                                   "doc_id string, domain string, text string, n_tokens int, replica int")
    weights = spark.createDataFrame(list(wanted.items()), "doc_id string, count int")
    rows = output_changes(output, weights, texts).toPandas()
    changes = dict(zip(zip(rows.doc_id, rows.replica), rows["_action"]))
    expected = {}
    for doc in held.keys() | wanted.keys():
        before, after = held.get(doc, 0), wanted.get(doc, 0)
        expected.update({(doc, r): "insert" for r in range(before, after)})
        expected.update({(doc, r): "delete" for r in range(after, before)})
    assert changes == expected and len(rows) == len(expected)
    inserted = rows[rows["_action"] == "insert"]
    assert (inserted.text == "text of " + inserted.doc_id).all() and (inserted.n_tokens == 7).all()
