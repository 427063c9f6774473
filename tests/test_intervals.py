"""Intervals and paired verdicts (``evaluation.intervals``), checked with numpy simulations of known truth.

The truth is a large simulated population of held-out documents whose bits per
byte under two runs are known; each draw holds out a sample of it, as a real
held-out split does, and the interval must cover the population's difference
about 95% of the time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from samplemix_spark.evaluation import intervals

DOMAINS = ("code", "news", "spam")


def _population(rng: np.random.Generator, n: int = 20_000, shift: float = 0.02) -> pd.DataFrame:
    """Documents with byte counts and bits under runs a and b; b is worse by ``shift`` bpb on average."""
    domain = rng.choice(DOMAINS, n)
    size = np.maximum(20, rng.lognormal(7, 0.8, n)).round()
    difficulty = {"code": 1.8, "news": 2.6, "spam": 3.1}
    rate_a = np.array([difficulty[d] for d in domain]) + rng.normal(0, 0.5, n)
    rate_b = rate_a + shift + rng.normal(0, 0.15, n)
    return pd.DataFrame({"doc_id": [f"d{i}" for i in range(n)], "domain": domain, "bytes": size,
                         "a": rate_a * size, "b": rate_b * size})


def _true_macro(population: pd.DataFrame, run: str) -> float:
    sums = population.groupby("domain")[[run, "bytes"]].sum()
    return float((sums[run] / sums["bytes"]).mean())


def _docs(sample: pd.DataFrame, seeds: dict) -> pd.DataFrame:
    """The ``proxy_eval_docs`` frame of a sample: run -> {seed: per-document noise added to its bits}."""
    frames = [sample.assign(run=run, seed=seed, bits=sample[run] + noise)[["run", "seed", "doc_id", "domain",
                                                                            "bytes", "bits"]]
              for run, per_seed in seeds.items() for seed, noise in per_seed.items()]
    return pd.concat(frames, ignore_index=True)


def test_the_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(20261201)
    population = _population(rng)
    truth = _true_macro(population, "b") - _true_macro(population, "a")
    draws, covered, wrong_way = 500, 0, 0
    for draw in range(draws):
        sample = population.groupby("domain").sample(n=60, random_state=int(rng.integers(2**31)))
        scores = intervals.Scores.from_frame(_docs(sample, {"a": {0: 0.0}, "b": {0: 0.0}}))
        strata = intervals.strata(scores.domains, DOMAINS, seed=draw)
        difference = intervals.paired_difference(scores, "b", "a", strata)
        covered += difference.lo <= truth <= difference.hi
        wrong_way += difference.word == "better"
    assert 0.92 <= covered / draws <= 0.98, covered / draws
    # b is truly worse: calling it better is a one-sided miss, at most about 2.5% of draws.
    assert wrong_way / draws <= 0.035, wrong_way / draws


def test_identical_runs_are_tied_and_a_shift_beyond_the_interval_is_better_or_worse():
    rng = np.random.default_rng(7)
    sample = _population(rng, 600)
    scores = intervals.Scores.from_frame(_docs(sample.assign(same=sample["a"]), {"a": {0: 0.0}, "same": {0: 0.0}}))
    strata = intervals.strata(scores.domains, DOMAINS)
    same = intervals.paired_difference(scores, "same", "a", strata)
    assert same.estimate == 0 and same.lo == 0 and same.hi == 0 and same.word == "tied"
    # A 0.3 bpb shift on every document: far outside the document interval.
    scores.bits["better"] = scores.bits["a"] - 0.3 * scores.bytes
    scores.per_seed["better"] = {0: scores.bits["better"]}
    better = intervals.paired_difference(scores, "better", "a", strata)
    assert better.word == "better" and better.estimate == pytest.approx(-0.3)
    assert intervals.paired_difference(scores, "a", "better", strata).word == "worse"


def test_the_point_estimate_is_the_macro_of_ratios_of_summed_bits_and_bytes():
    rng = np.random.default_rng(3)
    sample = _population(rng, 400)
    scores = intervals.Scores.from_frame(_docs(sample, {"a": {0: 0.0, 1: 0.0}, "b": {0: 0.0, 1: 0.0}}))
    strata = intervals.strata(scores.domains, ["code", "news"])
    kept = sample[sample["domain"] != "spam"]
    expected = _true_macro(kept, "b") - _true_macro(kept, "a")
    difference = intervals.paired_difference(scores, "b", "a", strata)
    assert difference.estimate == pytest.approx(expected, rel=1e-12)
    assert difference.n_docs == int((sample["domain"] != "spam").sum())


def test_three_seeds_add_a_t_interval_and_fewer_say_seed_variance_is_not_included():
    rng = np.random.default_rng(11)
    sample = _population(rng, 300)
    offsets = {0: 0.05, 1: -0.02, 2: 0.04}  # bpb per seed: the same on every byte of b
    seeds = {"a": {s: 0.0 for s in offsets}, "b": {s: o * sample["bytes"].to_numpy() for s, o in offsets.items()}}
    scores = intervals.Scores.from_frame(_docs(sample, seeds))
    strata = intervals.strata(scores.domains, DOMAINS)
    with_seeds = intervals.paired_difference(scores, "b", "a", strata)
    per_seed = [intervals.macro(scores.per_seed["b"][s], scores.bytes, strata, False)
                - intervals.macro(scores.per_seed["a"][s], scores.bytes, strata, False) for s in offsets]
    half = stats.t.ppf(0.975, 2) * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert half == pytest.approx(intervals.seed_half_width(per_seed))
    one_seed = intervals.Scores.from_frame(_docs(sample, {r: {0: v[0]} for r, v in seeds.items()}))
    two_seeds = intervals.Scores.from_frame(_docs(sample, {r: {0: v[0], 1: v[1]} for r, v in seeds.items()}))
    docs_only = intervals.paired_difference(two_seeds, "b", "a", strata)
    assert with_seeds.seed_variance and not docs_only.seed_variance
    assert with_seeds.hi - with_seeds.estimate >= half and with_seeds.estimate - with_seeds.lo >= half
    assert "seed variance included" in with_seeds.describe()
    assert "(300 docs, 2 seeds, seed variance not included)" in docs_only.describe()
    assert "1 seed, seed variance not included" in intervals.paired_difference(one_seed, "b", "a", strata).describe()


def test_runs_scored_on_different_documents_are_refused():
    rng = np.random.default_rng(5)
    sample = _population(rng, 50)
    docs = _docs(sample, {"a": {0: 0.0}, "b": {0: 0.0}})
    with pytest.raises(ValueError, match="same held-out documents"):
        intervals.Scores.from_frame(docs.drop(index=docs.index[-1]))


def test_steps_to_reach_is_the_first_step_at_or_below_the_target_per_resample():
    steps = np.array([10, 20, 30, 40])
    curves = np.array([[3.0, 2.5, 2.0, 1.9], [3.0, 2.9, 2.8, 2.7]])
    reached = intervals.steps_to_reach(curves, steps, np.array([2.5, 2.5]))
    assert reached.tolist() == [20.0, np.inf]
    assert intervals.step_interval(np.array([20.0] * 90 + [np.inf] * 10)) == (20.0, np.inf)


def test_the_bootstrap_is_stratified_and_repeatable():
    domains = np.array(["a"] * 5 + ["b"] * 3)
    first = intervals.strata(domains, ["a", "b"], samples=200, seed=4)
    again = intervals.strata(domains, ["a", "b"], samples=200, seed=4)
    for x, y in zip(first, again):
        counts = x.counts()
        assert np.array_equal(counts, y.counts())
        # Every resample draws as many documents of a domain as it has, and only that domain's.
        assert (counts.sum(axis=1) == len(x.positions)).all()
    assert [s.positions.tolist() for s in first] == [[0, 1, 2, 3, 4], [5, 6, 7]]
