"""Rank agreement between two proxy presets, against numpy and scipy computed independently."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from samplemix_spark.evaluation import fidelity, intervals

DOMAINS = ("a", "b", "c")


def _docs(offsets: dict, noise: float, seed: int, n_seeds: int = 1) -> pd.DataFrame:
    """Per-document bits of runs whose true bpb differ by ``offsets``; documents shared across runs."""
    rng = np.random.default_rng(seed)
    doc_rng = np.random.default_rng(99)
    domains = np.repeat(DOMAINS, 40)
    sizes = doc_rng.integers(200, 4000, len(domains)).astype(float)
    hardness = doc_rng.uniform(1.5, 3.5, len(domains))
    rows = []
    for run, offset in offsets.items():
        for s in range(n_seeds):
            bpb = hardness + offset + rng.normal(0, noise, len(domains))
            rows.append(pd.DataFrame({"run": run, "seed": s, "doc_id": [f"d{i}" for i in range(len(domains))],
                                      "domain": domains, "bytes": sizes, "bits": bpb * sizes}))
    return pd.concat(rows, ignore_index=True)


def _macro(docs: pd.DataFrame, run: str) -> float:
    rows = docs[docs["run"] == run].groupby(["domain", "doc_id"]).agg(bits=("bits", "mean"), bytes=("bytes", "first"))
    sums = rows.groupby("domain").sum()
    return float((sums["bits"] / sums["bytes"]).mean())


def test_row_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, (50, 7)).astype(float), rng.normal(size=(50, 7))
    ours = fidelity.row_spearman(a, b)
    expected = [stats.spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_agreement_with_a_reference_counts_pairs_it_separates():
    runs = ["r0", "r1", "r2", "r3"]
    # The reference tells r0 < r1 < r2 apart clearly and r2 from r3 not at all; the small preset swaps r0 and r1.
    reference = _docs({"r0": 0.0, "r1": 0.2, "r2": 0.4, "r3": 0.4}, noise=0.05, seed=1, n_seeds=2)
    small = _docs({"r0": 0.25, "r1": 0.2, "r2": 0.6, "r3": 0.9}, noise=0.05, seed=2, n_seeds=2)
    big, sml = intervals.Scores.from_frame(reference), intervals.Scores.from_frame(small)
    strata = intervals.strata(big.domains, list(DOMAINS), samples=400, seed=0)
    result = fidelity.compare(sml, big, runs, strata)

    ref_macro = [_macro(reference, r) for r in runs]
    small_macro = [_macro(small, r) for r in runs]
    assert result.rho == pytest.approx(stats.spearmanr(small_macro, ref_macro).statistic, abs=1e-12)
    assert result.rho_lo <= result.rho <= result.rho_hi
    np.testing.assert_allclose(result.runs["reference"], ref_macro, rtol=1e-12)
    assert list(result.runs["small_rank"]) == list(stats.rankdata(small_macro, method="min").astype(int))
    pairs = result.pairs.set_index(["run_a", "run_b"])
    assert pairs.loc[("r0", "r1"), "reference_word"] == "better" and not pairs.loc[("r0", "r1"), "same_order"]
    assert pairs.loc[("r2", "r3"), "reference_word"] == "tied"
    separated = [(a, b) for a, b in pairs.index if pairs.loc[(a, b), "reference_word"] != "tied"]
    assert len(separated) == 5
    same = [np.sign(small_macro[runs.index(a)] - small_macro[runs.index(b)])
            == np.sign(ref_macro[runs.index(a)] - ref_macro[runs.index(b)]) for a, b in separated]
    assert result.same_order_share() == pytest.approx(np.mean(same))
    assert result.resolved_share() <= result.same_order_share() and result.n_docs == 120


def test_presets_scored_on_different_documents_are_refused():
    a = intervals.Scores.from_frame(_docs({"x": 0, "y": 1, "z": 2}, 0.1, 0))
    other = _docs({"x": 0, "y": 1, "z": 2}, 0.1, 0)
    b = intervals.Scores.from_frame(other.assign(doc_id=other["doc_id"] + "_"))
    with pytest.raises(ValueError, match="same held-out documents"):
        fidelity.compare(a, b, ["x", "y", "z"], intervals.strata(a.domains, list(DOMAINS), 50))


def test_the_mixture_interval_resamples_runs_and_groups_have_their_own_rho():
    runs = [f"m{i}" for i in range(8)]
    # Two groups far apart, each ordered alike inside by the reference; the small preset keeps the gap between the
    # groups, orders group "low" the same way and group "high" in reverse.
    reference = {r: (0.0 if i < 4 else 0.5) + 0.05 * (i % 4) for i, r in enumerate(runs)}
    small = {r: (0.0 if i < 4 else 0.5) + 0.05 * ((i % 4) if i < 4 else 3 - (i % 4)) for i, r in enumerate(runs)}
    big = intervals.Scores.from_frame(_docs(reference, noise=0.01, seed=3, n_seeds=2))
    sml = intervals.Scores.from_frame(_docs(small, noise=0.01, seed=4, n_seeds=2))
    strata = intervals.strata(big.domains, list(DOMAINS), samples=400, seed=0)
    groups = {r: "low" if i < 4 else "high" for i, r in enumerate(runs)}
    result = fidelity.compare(sml, big, runs, strata, groups, seed=5)
    assert result.within == {"high": pytest.approx(-1.0), "low": pytest.approx(1.0)}
    # Independently: scipy's rho over the same resamples of the runs, the undefined ones left out.
    small_macro = result.runs["small"].to_numpy()
    ref_macro = result.runs["reference"].to_numpy()
    picks = np.random.default_rng(5).integers(0, 8, (400, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on the resamples that draw one run only
        rhos = np.array([stats.spearmanr(small_macro[p], ref_macro[p]).statistic for p in picks])
    lo, hi = np.percentile(rhos[np.isfinite(rhos)], [2.5, 97.5])
    assert (result.rho_mix_lo, result.rho_mix_hi) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    # Fixed mixtures hide how much the agreement rests on which mixtures were chosen.
    assert result.rho_mix_hi - result.rho_mix_lo > result.rho_hi - result.rho_lo
    assert "resampling documents" in result.rho_text() and "resampling mixtures" in result.rho_text()


def test_a_rho_with_nothing_to_rank_is_undefined_not_zero():
    runs = ["x", "y", "z"]
    big = intervals.Scores.from_frame(_docs({"x": 0.0, "y": 0.3, "z": 0.6}, noise=0.01, seed=1))
    flat = intervals.Scores.from_frame(_docs({"x": 0.0, "y": 0.0, "z": 0.0}, noise=0.0, seed=1))
    strata = intervals.strata(big.domains, list(DOMAINS), samples=100, seed=0)
    with np.errstate(invalid="ignore"):
        result = fidelity.compare(flat, big, runs, strata)
    assert np.isnan(result.rho) and np.isnan(result.rho_lo) and np.isnan(result.rho_mix_hi)
    assert result.rho_text().startswith("undefined [undefined, undefined]")
