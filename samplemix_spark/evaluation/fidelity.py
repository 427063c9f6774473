"""How far a small proxy's ranking of runs agrees with a larger reference proxy's. Driver side, numpy only.

Both presets score the same runs on the same held-out documents
(``proxy_eval_docs`` rows), so one stratified document bootstrap
(``intervals.strata``) serves both: every resample gives each preset's macro
bits per byte for every run, hence one Spearman rank correlation between the two
rankings, and the percentiles of those give its interval.

Rank correlation weighs every swap alike, including swaps of runs neither preset
can tell apart. The telling figure is therefore per pair: of the pairs of runs
the reference separates (its paired interval excludes 0), the share the small
preset orders the same way by its point estimate, and the share it separates
itself, in the same direction, beyond its own paired interval.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from samplemix_spark.evaluation import intervals


@dataclass(frozen=True)
class Fidelity:
    rho: float
    rho_lo: float
    rho_hi: float
    runs: pd.DataFrame    # run, small and reference macro with intervals and ranks
    pairs: pd.DataFrame   # run_a, run_b, each preset's paired difference a - b, verdict and agreement
    n_docs: int

    def separated(self) -> pd.DataFrame:
        """The pairs the reference calls better or worse (not tied, nor undetermined for want of seeds)."""
        return self.pairs[self.pairs["reference_word"].isin(["better", "worse"])]

    def same_order_share(self) -> float:
        """Of the pairs the reference separates, the share the small preset orders the same way."""
        separated = self.separated()
        return float(separated["same_order"].mean()) if len(separated) else float("nan")

    def resolved_share(self) -> float:
        """Of the pairs the reference separates, the share the small preset separates the same way itself."""
        separated = self.separated()
        if not len(separated):
            return float("nan")
        return float((separated["small_word"] == separated["reference_word"]).mean())


def row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho between the rows of ``a`` and ``b`` (m, k): ranks (ties averaged), then Pearson per row."""
    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


def _aligned(small: intervals.Scores, reference: intervals.Scores, runs: list[str]) -> None:
    if not (np.array_equal(small.doc_ids, reference.doc_ids) and np.array_equal(small.domains, reference.domains)):
        raise ValueError("the two presets were not scored on the same held-out documents")
    missing = [r for r in runs if r not in small.bits or r not in reference.bits]
    if missing:
        raise ValueError(f"runs {', '.join(missing)} lack scores from one of the presets")
    if len(runs) < 3:
        raise ValueError(f"a rank correlation needs at least 3 runs; got {len(runs)}")


def compare(small: intervals.Scores, reference: intervals.Scores, runs: list[str],
            strata: list[intervals.Stratum]) -> Fidelity:
    """Rank agreement of ``small`` with ``reference`` over ``runs``, on the documents of ``strata``."""
    _aligned(small, reference, runs)
    k = len(runs)
    bits = np.column_stack([small.bits[r] for r in runs] + [reference.bits[r] for r in runs])
    point = intervals.macro_columns(bits, small.bytes, strata, resampled=False)
    draws = intervals.macro_columns(bits, small.bytes, strata)
    rho = float(row_spearman(point[None, :k], point[None, k:])[0])
    rho_lo, rho_hi = intervals.interval(np.nan_to_num(row_spearman(draws[:, :k], draws[:, k:])))
    table = pd.DataFrame({"run": runs})
    for name, scores in (("small", small), ("reference", reference)):
        noise = intervals.seed_noise(scores, strata)
        figures = [intervals.run_interval(scores, run, strata, noise) for run in runs]
        table[[name, f"{name}_lo", f"{name}_hi"]] = pd.DataFrame(figures, index=table.index)
        table[f"{name}_rank"] = table[name].rank(method="min").astype(int)
    n_docs = int(sum(len(s.positions) for s in strata))
    return Fidelity(rho, rho_lo, rho_hi, table, _pairs(small, reference, runs, strata), n_docs)


def _pairs(small: intervals.Scores, reference: intervals.Scores, runs: list[str],
           strata: list[intervals.Stratum]) -> pd.DataFrame:
    rows = []
    noise = {"small": intervals.seed_noise(small, strata), "reference": intervals.seed_noise(reference, strata)}
    for a, b in itertools.combinations(runs, 2):
        ref = intervals.paired_difference(reference, a, b, strata, noise["reference"])
        sml = intervals.paired_difference(small, a, b, strata, noise["small"])
        rows.append({"run_a": a, "run_b": b, "reference": ref.estimate, "reference_lo": ref.lo,
                     "reference_hi": ref.hi, "reference_word": ref.word, "small": sml.estimate, "small_lo": sml.lo,
                     "small_hi": sml.hi, "small_word": sml.word,
                     "same_order": bool(np.sign(sml.estimate) == np.sign(ref.estimate))})
    return pd.DataFrame(rows)
