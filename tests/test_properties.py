"""Property tests: the Spark mixing math against the numpy oracle over random inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samplemix_spark.config import MixingConfig
from samplemix_spark.mixing.weights import compute_stats, weights_frame

from . import oracle

documents = st.lists(
    st.tuples(st.integers(0, 10), st.floats(0, 5, allow_nan=False), st.integers(1, 5000)),
    min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=documents, alpha=st.floats(0, 1), tau=st.floats(0.01, 10), fraction=st.floats(0.01, 20),
       budget_mode=st.sampled_from(["documents", "tokens"]), seed=st.integers(0, 2**31))
def test_weights_and_counts_match_the_oracle(spark, rows, alpha, tau, fraction, budget_mode, seed):
    frame = pd.DataFrame(rows, columns=["q", "d", "n_tokens"]).astype({"q": float, "n_tokens": "int64"})
    frame.insert(0, "doc_id", [f"doc-{i}" for i in range(len(frame))])
    frame.insert(1, "domain", "x")
    scored = spark.createDataFrame(frame)
    cfg = MixingConfig(alpha=alpha, tau=tau, target_fraction=fraction, budget_mode=budget_mode, seed=seed)
    weights = weights_frame(scored, compute_stats(scored, cfg)).toPandas().set_index("doc_id").loc[frame["doc_id"]]

    p = oracle.sampling_weights(frame["q"].to_numpy(), frame["d"].to_numpy(), alpha)
    c = oracle.expected_counts(p, frame["n_tokens"].to_numpy(), tau, fraction * frame["n_tokens"].sum(),
                               budget_mode=budget_mode)
    np.testing.assert_allclose(weights["p"], p, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights["c"], c, rtol=1e-9, atol=1e-300)
    counts = weights["count"].to_numpy()
    assert np.all((counts == np.floor(c)) | (counts == np.floor(c) + 1))
    # 4 sigma, plus one copy: with a handful of documents the integer total moves in steps of one.
    assert abs(counts.sum() - c.sum()) <= 4 * oracle.bernoulli_sigma(c) + 1 + 1e-9
