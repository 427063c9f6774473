"""Token-exact budgets and the repetition cap, against the numpy oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from samplemix_spark.errors import ConfigError
from samplemix_spark.pipeline import run_stage

from . import oracle
from .conftest import make_config, store_for, write_scored_tables

N_DOCS = 200_000


def _length_correlated_tables(spark, cfg, n_docs: int, seed: int = 0) -> pd.DataFrame:
    """documents, quality and diversity tables where long documents score high (no text needed)."""
    rng = np.random.default_rng(seed)
    n_tokens = rng.integers(20, 2000, n_docs)
    quality = np.clip(np.round(10 * n_tokens / 2000 + rng.normal(0, 1.5, n_docs)), 0, 10)
    diversity = rng.uniform(0.1, 0.6, n_docs) + 0.3 * n_tokens / 2000
    frame = pd.DataFrame({"doc_id": [f"d{i:07d}" for i in range(n_docs)],
                          "domain": np.where(n_tokens > 1000, "long", "short"), "text": "",
                          "n_tokens": n_tokens.astype(np.int64), "quality": quality, "diversity": diversity})
    write_scored_tables(spark, cfg, frame)
    return frame.set_index("doc_id")


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    cfg = make_config(root / "wh", ["unused"])
    frame = _length_correlated_tables(spark, cfg, N_DOCS)
    return root / "wh", frame


def _mix(spark, warehouse, **mixing):
    cfg = make_config(warehouse[0], ["unused"], mixing=mixing)
    run_stage(spark, cfg, "mix")
    run_stage(spark, cfg, "report")
    store = store_for(spark, cfg)
    weights = store.read("weights").toPandas().set_index("doc_id").sort_index()
    return store, weights, store.read("report_summary").collect()[0]


def _oracle(frame: pd.DataFrame, weights: pd.DataFrame, **kwargs) -> np.ndarray:
    frame = frame.loc[weights.index]
    p = oracle.sampling_weights(frame["quality"].to_numpy(), frame["diversity"].to_numpy(), 0.8)
    return oracle.expected_counts(p, frame["n_tokens"].to_numpy(), 0.2, float(frame["n_tokens"].sum()), **kwargs)


def test_tokens_mode_meets_the_token_budget_where_documents_mode_drifts(spark, warehouse):
    _, weights, summary = _mix(spark, warehouse, budget_mode="tokens")
    c = _oracle(warehouse[1], weights, budget_mode="tokens")
    np.testing.assert_allclose(weights["c"], c, rtol=1e-9)
    n = weights["n_tokens"].to_numpy()
    assert np.sum(weights["c"] * n) == pytest.approx(summary.target_tokens, rel=1e-9)
    assert abs(summary.relative_error) < 0.005
    assert abs(summary.expected_error_tokens_mode) < 1e-9
    # The paper's document budget overshoots: selected documents are longer than average here.
    assert summary.expected_error_documents_mode > 0.10

    _, by_documents, documents_summary = _mix(spark, warehouse, budget_mode="documents")
    np.testing.assert_allclose(by_documents["c"], _oracle(warehouse[1], by_documents), rtol=1e-9)
    assert documents_summary.relative_error > 10 * abs(summary.relative_error)
    assert documents_summary.expected_error_documents_mode == pytest.approx(summary.expected_error_documents_mode)


@pytest.mark.parametrize("budget_mode", ["documents", "tokens"])
def test_repetition_cap_redistributes_to_uncapped_documents(spark, warehouse, budget_mode):
    cap = 1.5
    store, weights, summary = _mix(spark, warehouse, budget_mode=budget_mode, tau=0.05, max_repeats=cap)
    c = weights["c"].to_numpy()
    frame = warehouse[1].loc[weights.index]
    p = oracle.sampling_weights(frame["quality"].to_numpy(), frame["diversity"].to_numpy(), 0.8)
    expected = oracle.expected_counts(p, frame["n_tokens"].to_numpy(), 0.05, float(frame["n_tokens"].sum()),
                                      budget_mode=budget_mode, cap=cap)
    np.testing.assert_allclose(c, expected, rtol=1e-9, atol=1e-12)
    units = np.ones_like(c) if budget_mode == "documents" else weights["n_tokens"].to_numpy()
    target = N_DOCS if budget_mode == "documents" else summary.target_tokens
    assert np.sum(c * units) == pytest.approx(target, rel=1e-9)
    assert weights["count"].max() <= np.ceil(cap)
    assert summary.capped_docs == int(np.sum(c == cap)) > 0
    assert 1 <= summary.cap_rounds <= 100
    counts = weights["count"].to_numpy()
    assert abs(np.sum(counts * units) - np.sum(c * units)) <= 4 * np.sqrt(
        np.sum((c - np.floor(c)) * (1 - c + np.floor(c)) * units ** 2)) + 1e-9
    uncapped = weights["c_uncapped"].to_numpy()
    assert uncapped.max() > cap  # without the cap some documents would repeat more
    report = store.read("report_domains").toPandas()
    moved_out, moved_in = report["cap_mass_out"].sum(), report["cap_mass_in"].sum()
    assert moved_out > 0 and moved_in > 0
    if budget_mode == "documents":
        assert moved_out == pytest.approx(moved_in, rel=1e-9)  # mass moves, the total stays


def test_unreachable_cap_is_refused(spark, warehouse):
    with pytest.raises(ConfigError, match="mixing.max_repeats"):
        _mix(spark, warehouse, max_repeats=0.5, target_fraction=0.9)


def test_report_repeat_share_and_unique_tokens_match_the_output(spark, warehouse):
    store, weights, _ = _mix(spark, warehouse, tau=0.05, target_fraction=0.5)
    report = store.read("report_domains").toPandas().set_index("domain").sort_index()
    selected = weights[weights["count"] > 0]
    unique = selected.groupby("domain")["n_tokens"].sum().sort_index()
    output_tokens = (weights["count"] * weights["n_tokens"]).groupby(weights["domain"]).sum().sort_index()
    assert report["unique_output_tokens"].tolist() == unique.tolist()
    np.testing.assert_allclose(report["repeated_token_share"], 1 - unique / output_tokens, rtol=1e-12)


def test_demo_corpus_token_budget(spark, tmp_path):
    from samplemix_spark.demo.synthetic import write_corpus
    from samplemix_spark.pipeline import run_pipeline

    paths = write_corpus(tmp_path / "data", 20000)  # the quick start's corpus
    cfg = make_config(tmp_path / "wh", paths, mixing={"budget_mode": "tokens"})
    run_pipeline(spark, cfg)
    summary = store_for(spark, cfg).read("report_summary").collect()[0]
    assert abs(summary.relative_error) < 0.005
    assert summary.expected_error_documents_mode > 0.05  # what the paper's document budget would give
