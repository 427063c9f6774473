"""samplemix sweep: grid of alpha, tau and budgets from stored scores, consistent with real mix runs."""

from __future__ import annotations

import numpy as np
import pytest

from samplemix_spark.pipeline import run_stage
from samplemix_spark.report.sweep import run_sweep

from .conftest import make_config, store_for, write_scored_tables
from .test_baselines import _corpus


def test_sweep_matches_mix_runs_and_the_papers_budget_effect(spark, tmp_path):
    cfg = make_config(tmp_path / "wh", ["unused"])
    write_scored_tables(spark, cfg, _corpus(4000))
    store = store_for(spark, cfg)
    table = run_sweep(spark, store, cfg.mixing, alphas=[0.0, 0.8], taus=[0.2], fractions=[0.2, 1.0],
                      out=tmp_path / "out")
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 0
    assert len(table) == 2 * 1 * 2 * 4 and store.read("sweep").count() == len(table)
    shares = table.groupby(["alpha", "tau", "target_fraction"])["output_token_share"].sum()
    np.testing.assert_allclose(shares, 1.0, rtol=1e-12)
    point = table.groupby(["alpha", "target_fraction"])[["zero_count_share", "repeated_token_share"]].first()
    for alpha in (0.0, 0.8):
        # A fifth of the source budget: more documents dropped, far fewer repeated (paper App. P).
        assert point.loc[(alpha, 0.2), "zero_count_share"] > point.loc[(alpha, 1.0), "zero_count_share"]
        assert point.loc[(alpha, 0.2), "repeated_token_share"] < point.loc[(alpha, 1.0), "repeated_token_share"]

    mixed = make_config(tmp_path / "wh", ["unused"], mixing={"alpha": 0.8, "target_fraction": 1.0})
    run_stage(spark, mixed, "mix")
    weights = store.read("weights").toPandas()
    direct = (weights["count"] * weights["n_tokens"]).groupby(weights["domain"]).sum()
    swept = table[(table["alpha"] == 0.8) & (table["target_fraction"] == 1.0)].set_index("domain").sort_index()
    assert swept["output_tokens"].tolist() == pytest.approx(direct.sort_index().tolist())
    repeated = (weights["count"] > 1).groupby(weights["domain"]).sum().sort_index()
    assert swept["repeated_docs"].tolist() == repeated.tolist()
    assert swept["repeated_doc_share"].iloc[0] == pytest.approx((weights["count"] > 1).mean())
