"""How far a small proxy's ranking of runs agrees with a larger reference proxy's. Driver side, numpy only.

Both presets score the same runs on the same held-out documents
(``proxy_eval_docs`` rows), so one stratified document bootstrap
(``intervals.strata``) serves both: every resample gives each preset's macro
bits per byte for every run, hence one Spearman rank correlation between the two
rankings, and the percentiles of those give its interval.

That interval holds the mixtures fixed: it says how sure the rho of *these*
mixtures is, not how the agreement would carry to other mixtures. A second
interval resamples the mixtures (``rho_mix_lo``/``rho_mix_hi``: a bootstrap over
runs, each preset's macro as scored); with few mixtures it is the wider and the
more honest one. Rho within each group of mixtures (``groups``, e.g. the
domain-level methods and SampleMix's alphas) shows whether the agreement comes
from ordering the groups or from ordering inside them. A rho with no variation
to rank (every value equal) is undefined, shown as such, never as 0.

Rank correlation weighs every swap alike, including swaps of runs neither preset
can tell apart. The telling figure is therefore per pair: of the pairs of runs
the reference separates (its paired interval excludes 0), the share the small
preset orders the same way by its point estimate, and the share it separates
itself, in the same direction, beyond its own paired interval.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

from samplemix_spark.evaluation import intervals


@dataclass(frozen=True)
class Fidelity:
    rho: float            # nan: undefined (a preset gives every run the same macro)
    rho_lo: float         # documents resampled, the mixtures fixed
    rho_hi: float
    runs: pd.DataFrame    # run, small and reference macro with intervals and ranks
    pairs: pd.DataFrame   # run_a, run_b, each preset's paired difference a - b, verdict and agreement
    n_docs: int
    rho_mix_lo: float = float("nan")   # mixtures resampled, each preset's macros as scored
    rho_mix_hi: float = float("nan")
    within: dict = field(default_factory=dict)  # group -> rho over that group's runs (nan: undefined)

    def rho_text(self) -> str:
        """rho with both intervals, each named for what it resamples."""
        return (f"{rho_text(self.rho)} [{rho_text(self.rho_lo)}, {rho_text(self.rho_hi)}] resampling documents, "
                f"[{rho_text(self.rho_mix_lo)}, {rho_text(self.rho_mix_hi)}] resampling mixtures")

    def separated(self) -> pd.DataFrame:
        """The pairs the reference calls better or worse (not tied, nor undetermined for want of seeds)."""
        return self.pairs[separates(self.pairs["reference_word"])]

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


def separates(words: pd.Series) -> pd.Series:
    """Whether each pair verdict separates its pair: ``tied`` and ``undetermined`` (one seed per run) do not."""
    return words.isin(["better", "worse"])


def row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho between the rows of ``a`` and ``b`` (m, k): ranks (ties averaged), then Pearson per row."""
    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra, rb = ra - ra.mean(axis=1, keepdims=True), rb - rb.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))


def rho_text(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:.3f}"


def finite_interval(draws: np.ndarray) -> tuple[float, float]:
    """The percentile interval of the defined draws (nan, nan when none is defined)."""
    defined = draws[np.isfinite(draws)]
    return intervals.interval(defined) if len(defined) else (float("nan"), float("nan"))


def mixture_interval(small: np.ndarray, reference: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """rho's percentile interval over resamples of the runs (with replacement), each preset's macros fixed."""
    picks = np.random.default_rng(seed).integers(0, len(small), (samples, len(small)))
    return finite_interval(row_spearman(small[picks], reference[picks]))


def within_groups(small: np.ndarray, reference: np.ndarray, runs: list[str], groups: dict) -> dict[str, float]:
    """rho over each group's runs (three or more); nan where a group's values do not vary."""
    out = {}
    for group in sorted(set(groups.values())):
        members = [i for i, run in enumerate(runs) if groups.get(run) == group]
        if len(members) >= 3:
            out[group] = float(row_spearman(small[None, members], reference[None, members])[0])
    return out


def _aligned(small: intervals.Scores, reference: intervals.Scores, runs: list[str]) -> None:
    if not (np.array_equal(small.doc_ids, reference.doc_ids) and np.array_equal(small.domains, reference.domains)):
        raise ValueError("the two presets were not scored on the same held-out documents")
    missing = [r for r in runs if r not in small.bits or r not in reference.bits]
    if missing:
        raise ValueError(f"runs {', '.join(missing)} lack scores from one of the presets")
    if len(runs) < 3:
        raise ValueError(f"a rank correlation needs at least 3 runs; got {len(runs)}")


def compare(small: intervals.Scores, reference: intervals.Scores, runs: list[str],
            strata: list[intervals.Stratum], groups: Optional[dict] = None, seed: int = 0) -> Fidelity:
    """Rank agreement of ``small`` with ``reference`` over ``runs``, on the documents of ``strata``;
    ``groups`` (run -> group name) adds rho within each group, ``seed`` seeds the mixture bootstrap."""
    _aligned(small, reference, runs)
    k = len(runs)
    bits = np.column_stack([small.bits[r] for r in runs] + [reference.bits[r] for r in runs])
    point = intervals.macro_columns(bits, small.bytes, strata, resampled=False)
    draws = intervals.macro_columns(bits, small.bytes, strata)
    rho = float(row_spearman(point[None, :k], point[None, k:])[0])
    rho_lo, rho_hi = finite_interval(row_spearman(draws[:, :k], draws[:, k:]))
    mix_lo, mix_hi = mixture_interval(point[:k], point[k:], strata[0].samples, seed)
    within = within_groups(point[:k], point[k:], runs, groups or {})
    table = pd.DataFrame({"run": runs})
    for name, scores in (("small", small), ("reference", reference)):
        noise = intervals.seed_noise(scores, strata)
        figures = [intervals.run_interval(scores, run, strata, noise) for run in runs]
        table[[name, f"{name}_lo", f"{name}_hi"]] = pd.DataFrame(figures, index=table.index)
        table[f"{name}_rank"] = table[name].rank(method="min").astype(int)
    n_docs = int(sum(len(s.positions) for s in strata))
    return Fidelity(rho, rho_lo, rho_hi, table, _pairs(small, reference, runs, strata), n_docs, mix_lo, mix_hi,
                    within)


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
