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
        # Two seeds that train alike: the pooled seed variance is 0, so the interval is the documents' alone.
        scores = intervals.Scores.from_frame(_docs(sample, {"a": {0: 0.0, 1: 0.0}, "b": {0: 0.0, 1: 0.0}}))
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
    two = {0: 0.0, 1: 0.01 * sample["bytes"].to_numpy()}  # the second seed 0.01 bpb worse, in both runs
    scores = intervals.Scores.from_frame(_docs(sample.assign(same=sample["a"]), {"a": two, "same": two}))
    strata = intervals.strata(scores.domains, DOMAINS)
    same = intervals.paired_difference(scores, "same", "a", strata)
    assert same.estimate == 0 and same.lo < 0 < same.hi and same.word == "tied"
    # A 0.3 bpb shift on every document: far outside the document and seed intervals.
    scores.bits["better"] = scores.bits["a"] - 0.3 * scores.bytes
    scores.per_seed["better"] = {s: bits - 0.3 * scores.bytes for s, bits in scores.per_seed["a"].items()}
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


def test_seed_variance_is_pooled_over_the_runs_and_one_seed_is_undetermined():
    rng = np.random.default_rng(11)
    sample = _population(rng, 300)
    offsets = {"a": [0.0, 0.03, -0.01], "b": [0.05, -0.02, 0.04], "c": [0.01, 0.02]}  # bpb per seed, every byte
    seeds = {run: {s: o * sample["bytes"].to_numpy() for s, o in enumerate(values)} for run, values in offsets.items()}
    sample = sample.assign(c=sample["a"])
    scores = intervals.Scores.from_frame(_docs(sample, seeds))
    strata = intervals.strata(scores.domains, DOMAINS)
    # Independently: each run's per-seed macros about their mean, pooled, then a t-interval on 2 + 2 + 1 df.
    residuals = []
    for run, values in offsets.items():
        macros = np.array([_true_macro(sample.assign(x=sample[run] + o * sample["bytes"]), "x") for o in values])
        residuals += list(macros - macros.mean())
    sd = np.sqrt(np.sum(np.square(residuals)) / 5)
    seed_se = sd * np.sqrt(1 / 3 + 1 / 2)
    noise = intervals.seed_noise(scores, strata)
    assert noise.df == 5 and noise.sd == pytest.approx(sd, rel=1e-9)
    with_seeds = intervals.paired_difference(scores, "b", "c", strata)
    docs_only = intervals.paired_difference(intervals.Scores.from_frame(
        _docs(sample, {r: {0: v[0]} for r, v in seeds.items()})), "b", "c", strata)
    # The upper side: the document side's standard error and the seed's in quadrature, on Satterthwaite's df.
    doc_se = (docs_only.hi - docs_only.estimate) / stats.norm.ppf(0.975)
    total = np.sqrt(doc_se ** 2 + seed_se ** 2)
    upper = stats.t.ppf(0.975, total ** 4 / (seed_se ** 4 / 5)) * total
    assert with_seeds.seed_variance and with_seeds.hi - with_seeds.estimate == pytest.approx(upper, rel=1e-9)
    assert "(300 docs, 2 seeds, seed variance included)" in with_seeds.describe()
    assert docs_only.word == "undetermined" and not docs_only.seed_variance
    assert "undetermined" in docs_only.describe() and "1 seed, no estimate of seed variance" in docs_only.describe()


@pytest.mark.parametrize("n_seeds", [2, 3])
def test_the_interval_covers_the_truth_under_seed_noise(n_seeds):
    """Each seed shifts a run's bits per byte by N(0, 0.02) on every document, as training noise does; the
    interval with the pooled seed variance covers the population's difference about 95% of the time."""
    rng = np.random.default_rng(20261203 + n_seeds)
    population = _population(rng)
    truth = _true_macro(population, "b") - _true_macro(population, "a")
    draws, covered, wrong_way = 300, 0, 0
    for draw in range(draws):
        sample = population.groupby("domain").sample(n=40, random_state=int(rng.integers(2**31)))
        size = sample["bytes"].to_numpy()
        seeds = {run: {s: rng.normal(0, 0.02) * size for s in range(n_seeds)} for run in ("a", "b", "c")}
        scores = intervals.Scores.from_frame(_docs(sample.assign(c=sample["a"]), seeds))
        strata = intervals.strata(scores.domains, DOMAINS, samples=500, seed=draw)
        difference = intervals.paired_difference(scores, "b", "a", strata)
        covered += difference.lo <= truth <= difference.hi
        wrong_way += difference.word == "better"
    assert 0.92 <= covered / draws <= 0.98, covered / draws
    assert wrong_way / draws <= 0.04, wrong_way / draws


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
