"""QuaDMix on Spark: eq. 3 against hand-computed values, mid-ranks against numpy, the budget, the mix stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from samplemix_spark.config import build_config
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.mixing import quadmix


def _scored(spark, rows: list[tuple]) -> object:
    frame = pd.DataFrame(rows, columns=["doc_id", "domain", "n_tokens", "q"]).assign(d=0.0)
    return spark.createDataFrame(frame)


def _numpy_mid_ranks(values: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Token share strictly better, plus half the share of equal values (ties included): the oracle."""
    tokens = tokens.astype(float)
    better = np.array([tokens[values > v].sum() for v in values])
    equal = np.array([tokens[values == v].sum() for v in values])
    return (better + equal / 2) / tokens.sum()


def test_sampling_function_matches_eq_3_by_hand(spark):
    frame = spark.createDataFrame(pd.DataFrame({"rank": [0.0, 0.25, 0.5, 0.7]}))
    s = quadmix.sampling_value(F.col("rank"), F.lit(10.0), F.lit(0.5), F.lit(1.0), F.lit(0.05))
    values = [row[0] for row in frame.select(s).collect()]
    # 2/(1 + e^-5) = 1.9866142981514305; 2/(1 + e^-2.5) = 1.8482836399575129; at omega 2/2 = 1.
    assert values == pytest.approx([1.9866142981514305 + 0.05, 1.8482836399575129 + 0.05, 1.05, 0.05], abs=1e-12)


def test_mid_ranks_are_token_weighted_with_ties_sharing_their_mid_rank(spark):
    rows = [("a1", "a", 10, 9.0), ("a2", "a", 30, 9.0), ("a3", "a", 20, 5.0), ("a4", "a", 40, 1.0),
            ("b1", "b", 5, 7.0), ("b2", "b", 5, 3.0), ("b3", "b", 90, 3.0)]
    scored = _scored(spark, rows)
    counts = quadmix.quadmix_counts(scored, build_config({"mixing": {"budget_mode": "tokens"}}).mixing, 1000.0)
    got = counts.frame.select("doc_id", "rank").toPandas().set_index("doc_id")["rank"]
    frame = pd.DataFrame(rows, columns=["doc_id", "domain", "n_tokens", "q"])
    for _, group in frame.groupby("domain"):
        expected = _numpy_mid_ranks(group["q"].to_numpy(), group["n_tokens"].to_numpy())
        np.testing.assert_allclose(got[group["doc_id"]].to_numpy(), expected, rtol=1e-12)
    # By hand: a's best two documents share (0 + 40/2)/100 = 0.2.
    assert got["a1"] == got["a2"] == pytest.approx(0.2)


def test_a_domain_with_many_values_is_ranked_by_fixed_width_bins(spark, monkeypatch):
    monkeypatch.setattr(quadmix, "EXACT_VALUES", 3)
    monkeypatch.setattr(quadmix, "BINS", 4)
    q = np.array([0.0, 1.0, 2.0, 2.4, 5.0, 7.6, 9.9, 10.0])
    tokens = np.array([10, 20, 30, 40, 50, 60, 70, 80])
    rows = [(f"d{i}", "a", int(t), float(v)) for i, (v, t) in enumerate(zip(q, tokens))]
    counts = quadmix.quadmix_counts(_scored(spark, rows), build_config({}).mixing, 100.0)
    got = counts.frame.orderBy("doc_id").select("rank").toPandas()["rank"].to_numpy()
    bins = np.minimum(np.floor(q / 10.0 * 4), 3)  # merged = q / 10 on [0, 1], four bins
    np.testing.assert_allclose(got, _numpy_mid_ranks(bins, tokens), rtol=1e-12)


@pytest.mark.parametrize("mode", ["tokens", "documents"])
def test_the_budget_scales_every_sampling_value_by_one_factor(spark, mode):
    rng = np.random.default_rng(4)
    rows = [(f"d{i}", ["x", "y"][i % 2], int(rng.integers(10, 500)), float(rng.integers(0, 11))) for i in range(60)]
    mixing = build_config({"mixing": {"budget_mode": mode, "quadmix": {"domains": {"y": {"eta": 3.0}}}}}).mixing
    target = 5000.0 if mode == "tokens" else 80.0
    counts = quadmix.quadmix_counts(_scored(spark, rows), mixing, target)
    frame = counts.frame.select("doc_id", "domain", "n_tokens", "rank", "_s", counts.c.alias("c")).toPandas()
    unit = frame["n_tokens"] if mode == "tokens" else 1.0
    assert (frame["c"] * unit).sum() == pytest.approx(target, rel=1e-9)
    expected_s = np.where(frame["rank"] <= 0.5, np.where(frame["domain"] == "y", 3.0, 1.0)
                          * 2 / (1 + np.exp(-10 * (0.5 - frame["rank"]))) + 0.05, 0.05)
    np.testing.assert_allclose(frame["_s"], expected_s, rtol=1e-12)
    np.testing.assert_allclose(frame["c"] / frame["_s"], counts.scale.scale, rtol=1e-12)
    assert json.loads(counts.parameters)["y"]["eta"] == 3.0


def test_settings_and_domains_are_checked_by_name(spark):
    with pytest.raises(ConfigError, match="mixing.quadmix.omega"):
        build_config({"mixing": {"quadmix": {"omega": 1.5}}})
    with pytest.raises(ConfigError, match="mixing.quadmix.domains.news.lam"):
        build_config({"mixing": {"quadmix": {"domains": {"news": {"lam": -1}}}}})
    with pytest.raises(ConfigError, match="mixing.quadmix.weights.dclm': unknown quality criterion; the criteria "
                                          "available are: quality, edu"):
        build_config({"ingest": {"score_columns": ["edu"]}, "mixing": {"quadmix": {"weights": {"dclm": 1}}}})
    assert build_config({"ingest": {"score_columns": ["meta.dclm"]},
                         "mixing": {"quadmix": {"domains": {"news": {"weights": {"meta_dclm": 1}}}}}})
    mixing = build_config({"mixing": {"quadmix": {"domains": {"legal": {"eta": 2}}}}}).mixing
    with pytest.raises(InputError, match="legal"):
        quadmix.quadmix_counts(_scored(spark, [("a", "news", 10, 1.0)]), mixing, 10.0)
    assert build_config({"mixing": {"method": "quadmix", "max_repeats": 3}}).mixing.max_repeats == 3
    assert math.isfinite(build_config({}).mixing.quadmix.lam)


def test_the_mix_stage_writes_quadmix_weights_and_output(spark, tmp_path):
    from samplemix_spark.mixing import MixStep, read_stats

    from .conftest import make_config, store_for, write_scored_tables

    rng = np.random.default_rng(2)
    n = 200
    frame = pd.DataFrame({"doc_id": [f"d{i:03d}" for i in range(n)], "domain": rng.choice(["news", "mail"], n),
                          "text": [f"text {i}" for i in range(n)], "n_tokens": rng.integers(5, 400, n),
                          "quality": rng.integers(0, 11, n).astype(float), "diversity": rng.random(n)})
    cfg = make_config(tmp_path / "wh", [tmp_path / "none"], mixing={
        "method": "quadmix", "budget_mode": "tokens", "max_repeats": 4, "quadmix": {"domains": {"mail": {"eta": 0}}}})
    write_scored_tables(spark, cfg, frame)
    store = store_for(spark, cfg)
    MixStep(cfg).run(spark, store)
    weights = store.read("weights").toPandas().set_index("doc_id").loc[frame["doc_id"]]
    stats = read_stats(store)
    assert stats.method == "quadmix" and json.loads(stats.parameters)["mail"]["eta"] == 0
    assert weights["d_norm"].isna().all() and weights["c"].max() <= 4 + 1e-12
    # p is the merged score (the normalised quality), q_norm the mid-rank inside the domain.
    q = frame.set_index("doc_id")["quality"]
    np.testing.assert_allclose(weights["p"], (q - q.min()) / (q.max() - q.min()), rtol=1e-12)
    for domain, group in weights.groupby("domain"):
        expected = _numpy_mid_ranks(group["p"].to_numpy(), group["n_tokens"].to_numpy())
        np.testing.assert_allclose(group["q_norm"], expected, rtol=1e-12)
    # With eta 0, every mail document has the floor epsilon: one expected count for all of them.
    assert weights.loc[weights["domain"] == "mail", "c"].nunique() == 1
    assert (weights["c"] * weights["n_tokens"]).sum() == pytest.approx(stats.target_tokens, rel=1e-9)
    assert len(store.read("output").toPandas()) == weights["count"].sum()


def test_score_columns_are_merged_with_q_by_their_weights(spark, tmp_path):
    from samplemix_spark.mixing import MixStep

    from .conftest import make_config, store_for, write_scored_tables

    rng = np.random.default_rng(5)
    n = 120
    frame = pd.DataFrame({"doc_id": [f"d{i:03d}" for i in range(n)], "domain": rng.choice(["news", "mail"], n),
                          "text": [f"text {i}" for i in range(n)], "n_tokens": rng.integers(5, 400, n),
                          "quality": rng.integers(0, 11, n).astype(float), "diversity": rng.random(n),
                          "edu": rng.normal(2.5, 1.0, n)})
    cfg = make_config(tmp_path / "wh", [tmp_path / "none"], ingest={"score_columns": ["edu"]}, mixing={
        "method": "quadmix", "quadmix": {"weights": {"quality": 1, "edu": 3}}})
    write_scored_tables(spark, cfg, frame)
    store = store_for(spark, cfg)
    MixStep(cfg).run(spark, store)
    weights = store.read("weights").toPandas().set_index("doc_id").loc[frame["doc_id"]]
    q, edu = frame["quality"].to_numpy(), frame["edu"].to_numpy()
    merged = 0.25 * (q - q.min()) / (q.max() - q.min()) + 0.75 * (edu - edu.min()) / (edu.max() - edu.min())
    np.testing.assert_allclose(weights["p"], merged, rtol=1e-12)
    for _, group in weights.groupby("domain"):  # a better merged score never gets a smaller expected count
        ordered = group.sort_values("p")
        assert (np.diff(ordered["c"].to_numpy()) >= -1e-12).all()
    with pytest.raises(InputError, match="the documents table has no column edu"):
        store.write(store.read("documents").drop("edu"), "documents")
        MixStep(cfg).run(spark, store)


def test_a_domain_whose_documents_hold_no_tokens_is_ranked_by_documents(spark):
    histogram = pd.DataFrame({"domain": ["empty"] * 3 + ["text"] * 2, "_bucket": [0.1, 0.5, 0.9, 0.2, 0.7],
                              "tokens": [0, 0, 0, 10, 30], "docs": [2, 1, 1, 1, 1]})
    ranks = quadmix.mid_ranks(histogram).set_index(["domain", "_bucket"])["rank"]
    # Documents stand in for tokens: the best bucket (0.9) holds 1 of 4 documents, the worst 2 of 4.
    np.testing.assert_allclose(ranks.loc["empty"].sort_index(), [0.75, 0.375, 0.125], rtol=1e-12)
    np.testing.assert_allclose(ranks.loc["text"].sort_index(), [0.875, 0.375], rtol=1e-12)
    scored = _scored(spark, [("a", "empty", 0, 3.0), ("b", "empty", 0, 7.0), ("c", "text", 50, 5.0)])
    mixing = build_config({"mixing": {"method": "quadmix", "budget_mode": "documents"}}).mixing
    counts = quadmix.quadmix_counts(scored, mixing, target=3.0)
    c = counts.frame.select("doc_id", counts.c.alias("c")).toPandas().set_index("doc_id")["c"]
    assert np.isfinite(c).all() and c["b"] > c["a"]


def test_quadmix_runs_without_the_diversity_stages(spark, tmp_path):
    """QuaDMix reads merged quality criteria only: no embeddings, clusters or diversity are computed."""
    from samplemix_spark.demo.synthetic import write_corpus
    from samplemix_spark.pipeline import pipeline_stages, run_pipeline

    from .conftest import make_config, store_for

    paths = write_corpus(tmp_path / "corpus", 300, seed=8, n_files=1)
    cfg = make_config(tmp_path / "wh", paths, diversity={"method": "kmeans"},
                      mixing={"method": "quadmix", "budget_mode": "tokens"})
    assert not {"embed", "cluster", "assign", "diversity"} & set(pipeline_stages(cfg))
    run_pipeline(spark, cfg)
    store = store_for(spark, cfg)
    assert not any(store.exists(t) for t in ("embeddings", "centroids", "assignments", "diversity"))
    weights = store.read("weights").toPandas()
    assert len(weights) == 300 and weights["d"].isna().all() and np.isfinite(weights["c"]).all()
    assert (weights["c"] * weights["n_tokens"]).sum() == pytest.approx(
        weights["n_tokens"].sum(), rel=1e-9)  # the default budget: the source's tokens
    assert len(store.read("output").toPandas()) == weights["count"].sum()
