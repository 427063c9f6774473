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
from samplemix_spark.hashing import QUADMIX_TIES, uniform
from samplemix_spark.mixing import quadmix


def _scored(spark, rows: list[tuple]) -> object:
    frame = pd.DataFrame(rows, columns=["doc_id", "domain", "n_tokens", "q"]).assign(d=0.0)
    return spark.createDataFrame(frame)


def _tie_uniforms(spark, doc_ids, seed: int = 1024) -> pd.Series:
    """The hashed uniform that places each document inside its tie group (the mix seed's)."""
    frame = spark.createDataFrame(pd.DataFrame({"doc_id": list(doc_ids)}))
    u = uniform(F.col("doc_id"), seed, QUADMIX_TIES, "v2").alias("u")
    return frame.select("doc_id", u).toPandas().set_index("doc_id")["u"]


def _numpy_ranks(values: np.ndarray, tokens: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Token share strictly better, plus the document's hashed place in its tie group's share: the oracle."""
    tokens = tokens.astype(float)
    better = np.array([tokens[values > v].sum() for v in values])
    equal = np.array([tokens[values == v].sum() for v in values])
    return (better + u * equal) / tokens.sum()


@pytest.mark.parametrize("mode", ["exponent", "factor"])
def test_sampling_function_matches_eq_3_by_hand(spark, mode):
    frame = spark.createDataFrame(pd.DataFrame({"rank": [0.0, 0.25, 0.5, 0.7]}))
    s = quadmix.sampling_value(F.col("rank"), F.lit(10.0), F.lit(0.5), F.lit(2.0), F.lit(0.05), eta_mode=mode)
    values = [row[0] for row in frame.select(s).collect()]
    # 2/(1 + e^-5) = 1.9866142981514305; 2/(1 + e^-2.5) = 1.8482836399575129; at omega 2/2 = 1.
    top = np.array([1.9866142981514305, 1.8482836399575129, 1.0])
    expected = top ** 2 if mode == "exponent" else 2 * top
    assert values == pytest.approx([*(expected + 0.05), 0.05], abs=1e-12)


def test_ranks_are_token_weighted_and_ties_spread_by_hashed_doc_id(spark):
    rows = [("a1", "a", 10, 9.0), ("a2", "a", 30, 9.0), ("a3", "a", 20, 5.0), ("a4", "a", 40, 1.0),
            ("b1", "b", 5, 7.0), ("b2", "b", 5, 3.0), ("b3", "b", 90, 3.0)]
    scored = _scored(spark, rows)
    counts = quadmix.quadmix_counts(scored, build_config({"mixing": {"budget_mode": "tokens"}}).mixing, 1000.0)
    got = counts.frame.select("doc_id", "rank").toPandas().set_index("doc_id")["rank"]
    frame = pd.DataFrame(rows, columns=["doc_id", "domain", "n_tokens", "q"])
    u = _tie_uniforms(spark, frame["doc_id"])
    for _, group in frame.groupby("domain"):
        expected = _numpy_ranks(group["q"].to_numpy(), group["n_tokens"].to_numpy(), u[group["doc_id"]].to_numpy())
        np.testing.assert_allclose(got[group["doc_id"]].to_numpy(), expected, rtol=1e-12)
    # By hand: a's best two documents hold 40 of its 100 tokens, so each lies somewhere in [0, 0.4).
    assert got["a1"] == pytest.approx(0.4 * u["a1"]) and got["a3"] == pytest.approx(0.4 + 0.2 * u["a3"])


def test_a_cut_inside_one_large_tie_group_keeps_omega_of_its_tokens(spark):
    """Integer quality puts a domain's documents in a few tie groups; ω still means the share kept."""
    rng = np.random.default_rng(11)
    rows = [(f"d{i}", "a", int(rng.integers(50, 150)), 5.0) for i in range(2000)]
    mixing = build_config({"mixing": {"method": "quadmix", "quadmix": {"omega": 0.3}}}).mixing
    counts = quadmix.quadmix_counts(_scored(spark, rows), mixing, 2000.0)
    frame = counts.frame.select("n_tokens", "rank").toPandas()
    kept = frame.loc[frame["rank"] <= 0.3, "n_tokens"].sum() / frame["n_tokens"].sum()
    assert abs(kept - 0.3) < 0.03  # mid-ranks gave 0.5 to every document: none kept, or all of them


def test_a_domain_with_many_values_is_ranked_by_equal_token_mass_bins(spark):
    rng = np.random.default_rng(7)
    n = 100_000
    q = rng.lognormal(0.0, 1.5, n)  # skewed: most of the tokens sit in a narrow band near the minimum
    tokens = rng.integers(1, 400, n)
    rows = pd.DataFrame({"doc_id": [f"d{i:06d}" for i in range(n)], "domain": "a", "n_tokens": tokens, "q": q})
    counts = quadmix.quadmix_counts(spark.createDataFrame(rows.assign(d=0.0)), build_config({}).mixing, float(n))
    got = counts.frame.select("doc_id", "rank").toPandas().set_index("doc_id")["rank"][rows["doc_id"]].to_numpy()
    order = np.argsort(-q)  # no ties: the exact rank is the token share of better documents
    exact = np.empty(n)
    exact[order] = (np.cumsum(tokens[order]) - tokens[order]) / tokens.sum()
    assert np.abs(got - exact).max() < 0.01
    fixed_width = np.minimum(np.floor((q - q.min()) / (q.max() - q.min()) * quadmix.BINS), quadmix.BINS - 1)
    heaviest = np.bincount(fixed_width.astype(int), weights=tokens).max() / tokens.sum()
    assert heaviest > 0.05  # fixed-width bins would lump more than 5% of the tokens into one rank


def test_weighted_edges_cut_equal_mass():
    values = np.arange(10.0)
    edges = quadmix.weighted_edges(values, np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 11.0]), 2)
    assert list(edges) == [9.0]  # half the mass is the last value: everything below it is the lower bin
    assert list(quadmix.weighted_edges(values, np.ones(10), 5)) == [2.0, 4.0, 6.0, 8.0]


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
    bracket = 2 / (1 + np.exp(-10 * (0.5 - frame["rank"])))
    expected_s = np.where(frame["rank"] <= 0.5, bracket ** np.where(frame["domain"] == "y", 3.0, 1.0) + 0.05, 0.05)
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
    assert build_config({"mixing": {"method": "quadmix", "max_repeats": 3}}).mixing.repeat_cap == 3
    assert build_config({}).mixing.repeat_cap is None  # SampleMix is uncapped unless asked
    with pytest.raises(ConfigError, match="mixing.quadmix.eta_mode"):
        build_config({"mixing": {"quadmix": {"eta_mode": "power"}}})
    with pytest.raises(ConfigError, match="mixing.budget_mode.*needs mixing.method 'quadmix'"):
        build_config({"mixing": {"budget_mode": "implicit"}})
    with pytest.raises(ConfigError, match="mixing.budget_mode.*leave target_tokens"):
        build_config({"mixing": {"method": "quadmix", "budget_mode": "implicit", "target_fraction": 0.5}})
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
        "method": "quadmix", "budget_mode": "tokens", "max_repeats": 4,
        "quadmix": {"eta_mode": "factor", "domains": {"mail": {"eta": 0}}}})
    write_scored_tables(spark, cfg, frame)
    store = store_for(spark, cfg)
    MixStep(cfg).run(spark, store)
    weights = store.read("weights").toPandas().set_index("doc_id").loc[frame["doc_id"]]
    stats = read_stats(store)
    assert stats.method == "quadmix" and json.loads(stats.parameters)["mail"]["eta"] == 0
    assert weights["d_norm"].isna().all() and weights["c"].max() <= 4 + 1e-12
    # p is the merged score (the normalised quality), q_norm the rank inside the domain.
    q = frame.set_index("doc_id")["quality"]
    np.testing.assert_allclose(weights["p"], (q - q.min()) / (q.max() - q.min()), rtol=1e-12)
    u = _tie_uniforms(spark, weights.index, cfg.mixing.seed)
    for domain, group in weights.groupby("domain"):
        expected = _numpy_ranks(group["p"].to_numpy(), group["n_tokens"].to_numpy(), u[group.index].to_numpy())
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
    scored = _scored(spark, [("a", "empty", 0, 3.0), ("b", "empty", 0, 7.0), ("c", "text", 50, 5.0)])
    mixing = build_config({"mixing": {"method": "quadmix", "budget_mode": "documents"}}).mixing
    counts = quadmix.quadmix_counts(scored, mixing, target=3.0)
    got = counts.frame.select("doc_id", "rank", counts.c.alias("c")).toPandas().set_index("doc_id")
    # Documents stand in for tokens: b is the better half of its domain, a the worse.
    assert 0 <= got.loc["b", "rank"] < 0.5 <= got.loc["a", "rank"] < 1
    assert np.isfinite(got["c"]).all() and got.loc["b", "c"] > got.loc["a", "c"]


def test_the_implicit_budget_takes_s_as_the_expected_count_under_the_cap(spark):
    from samplemix_spark.mixing.weights import compute_stats, quadmix_inputs

    rng = np.random.default_rng(6)
    rows = [(f"d{i}", ["x", "y"][i % 2], int(rng.integers(10, 500)), float(rng.integers(0, 11))) for i in range(60)]
    scored = _scored(spark, rows)
    mixing = build_config({"mixing": {"method": "quadmix", "budget_mode": "implicit", "quadmix": {"eta": 3.0}}}).mixing
    assert mixing.repeat_cap == 4.0  # QuaDMix's default cap: S reaches 2^3 + 0.05 here
    frame, c, stats, _ = quadmix_inputs(scored, mixing, compute_stats(scored, mixing))
    got = frame.select("n_tokens", "_s", c.alias("c")).toPandas()
    np.testing.assert_allclose(got["c"], np.minimum(got["_s"], 4.0), rtol=1e-12)
    assert stats.scale == 1.0 and stats.n_capped == (got["_s"] > 4.0).sum() > 0
    assert stats.target_tokens == pytest.approx((got["_s"] * got["n_tokens"]).sum(), rel=1e-12)


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
