"""Intervals for held-out bits per byte, and paired verdicts between runs. Driver side, numpy only.

Every figure is a ratio: a domain's bits per byte is the sum of its scored
documents' bits over the sum of their bytes, and the macro is the mean of the
chosen domains' ratios. The uncertainty that matters most on a small held-out
set is which documents happened to be held out, so intervals come from a
bootstrap over documents, stratified by domain (each resample draws, per
domain, as many documents as it has, with replacement) and seeded, so the same
tables always print the same interval.

A comparison is **paired**: both runs are scored on the same resampled
documents, so the shared difficulty of a document cancels and only the
difference between the runs is left. Seeds are averaged per document inside
each resample. Training noise is usually the larger error on small proxies, so
the seed-to-seed variance is always added: each run's per-seed macros give a
variance about their own mean, pooled over every run of the evaluation
(degrees of freedom Σ(seeds − 1)); its standard error for the difference of two
seed means (or for one run's mean) is combined with the document interval's in
quadrature (two independent error sources), with a t quantile on the
Welch-Satterthwaite degrees of freedom of the sum (``combine``). When no run has two seeds there
is no estimate of that variance, and the verdict is ``undetermined``, never
better or worse.

The input is a frame of per-document scores with columns ``run``, ``seed``,
``doc_id``, ``domain``, ``bytes``, ``bits`` (the ``proxy_eval_docs`` table);
every run must be scored on the same documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
SAMPLES = 2000


@dataclass(frozen=True)
class Scores:
    """Seed-mean bits per document of several runs, aligned on one document order (sorted by domain, doc_id)."""

    doc_ids: np.ndarray
    domains: np.ndarray
    bytes: np.ndarray                 # (n_docs,)
    bits: dict                        # run -> (n_docs,) bits, mean over the run's seeds
    per_seed: dict                    # run -> {seed: (n_docs,) bits}

    @classmethod
    def from_frame(cls, docs: pd.DataFrame) -> "Scores":
        keys = docs[["domain", "doc_id"]].drop_duplicates().sort_values(["domain", "doc_id"])
        index = pd.MultiIndex.from_frame(keys)
        per_seed, missing = {}, set()
        for (run, seed), rows in docs.groupby(["run", "seed"], sort=True):
            bits = (rows.drop_duplicates(["domain", "doc_id"]).set_index(["domain", "doc_id"])["bits"]
                    .reindex(index).to_numpy(dtype=float))
            if np.isnan(bits).any():
                missing.add(str(run))
            per_seed.setdefault(run, {})[int(seed)] = bits
        if missing:
            raise ValueError(f"runs {', '.join(sorted(missing))} were not scored on the same held-out documents as "
                             "the others; rerun their evaluation")
        size = docs.drop_duplicates(["domain", "doc_id"]).set_index(["domain", "doc_id"])["bytes"]
        return cls(doc_ids=keys["doc_id"].to_numpy(), domains=keys["domain"].to_numpy(),
                   bytes=size.reindex(index).to_numpy(dtype=float),
                   bits={run: np.mean(list(seeds.values()), axis=0) for run, seeds in per_seed.items()},
                   per_seed=per_seed)

    def domain_names(self) -> list[str]:
        return sorted(set(self.domains))


@dataclass(frozen=True)
class Stratum:
    """One domain's documents in the bootstrap; its resample counts are drawn again on demand (bounded memory)."""

    domain: str
    positions: np.ndarray
    seed: int
    samples: int

    def counts(self) -> np.ndarray:
        """(samples, n) how often each document is drawn in each resample: the same on every call."""
        n = len(self.positions)
        draws = np.random.default_rng(self.seed).integers(0, n, size=(self.samples, n))
        flat = draws + (np.arange(self.samples) * n)[:, None]
        return np.bincount(flat.ravel(), minlength=self.samples * n).reshape(self.samples, n).astype(float)


def strata(domains: np.ndarray, chosen: Sequence[str], samples: int = SAMPLES, seed: int = 0) -> list[Stratum]:
    """The stratified bootstrap over the chosen domains' documents; each domain gets its own seeded stream."""
    seeds = np.random.SeedSequence(seed).spawn(len(chosen))
    out = []
    for domain, child in zip(sorted(chosen), seeds):
        positions = np.flatnonzero(domains == domain)
        if not len(positions):
            raise ValueError(f"held-out domain {domain!r} has no scored documents")
        out.append(Stratum(domain, positions, int(child.generate_state(1)[0]), samples))
    return out


def domain_ratios(bits: np.ndarray, size: np.ndarray, strata: list[Stratum],
                  resampled: bool = True) -> dict[str, np.ndarray]:
    """Per stratum, Σ bits / Σ bytes of every column of ``bits`` (n_docs, k): (samples, k) per resample, or (k,).

    One draw of a stratum's counts serves every column, so the columns (runs,
    seeds, steps of a curve) stay paired.
    """
    ratios = {}
    for stratum in strata:
        b, n = bits[stratum.positions], size[stratum.positions]
        if resampled:
            counts = stratum.counts()
            ratios[stratum.domain] = (counts @ b) / (counts @ n)[:, None]
        else:
            ratios[stratum.domain] = b.sum(axis=0) / n.sum()
    return ratios


def macro_columns(bits: np.ndarray, size: np.ndarray, strata: list[Stratum], resampled: bool = True) -> np.ndarray:
    """The macro (mean over the strata) of every column of ``bits``: (samples, k) per resample, or (k,) as scored."""
    return np.mean(list(domain_ratios(bits, size, strata, resampled).values()), axis=0)


def macro(bits: np.ndarray, size: np.ndarray, strata: list[Stratum], resampled: bool = True):
    """The macro of one run's bits (n_docs,): (samples,) per resample, or a number as scored."""
    values = macro_columns(bits[:, None], size, strata, resampled)[..., 0]
    return values if resampled else float(values)


def tails(level: float = LEVEL) -> tuple[float, float]:
    """The percentiles of a two-sided interval at ``level``."""
    return 100 * (1 - level) / 2, 100 * (1 + level) / 2


def interval(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    lo, hi = np.percentile(draws, tails(level))
    return float(lo), float(hi)


@dataclass(frozen=True)
class SeedNoise:
    """The seed-to-seed standard deviation of a run's macro, pooled over every run of one evaluation."""

    sd: float
    df: int            # Σ (seeds − 1) over the runs; 0: no run has two seeds, so no estimate

    def standard_error(self, *seeds: int) -> Optional[float]:
        """Of a mean over ``seeds`` (one count), or of the difference of two independent means (two counts);
        None without an estimate."""
        if self.df < 1:
            return None
        return float(self.sd * np.sqrt(sum(1.0 / n for n in seeds)))


def interval_sources(seeds: int) -> str:
    """What an evaluation's intervals cover, for its log line, given the fewest seeds of any run."""
    if seeds >= 2:
        return " and seeds (seed variance pooled over the runs)"
    return "; one seed per run: no estimate of seed variance, so every verdict is undetermined"


def seed_noise(scores: Scores, strata: list[Stratum]) -> SeedNoise:
    """Each run's per-seed macros (on the documents as scored) about their own mean, pooled over the runs."""
    squares, df = 0.0, 0
    for seeds in scores.per_seed.values():
        if len(seeds) < 2:
            continue
        values = macro_columns(np.column_stack(list(seeds.values())), scores.bytes, strata, resampled=False)
        squares += float(((values - values.mean()) ** 2).sum())
        df += len(values) - 1
    return SeedNoise(float(np.sqrt(squares / df)) if df else float("nan"), df)


@dataclass(frozen=True)
class Difference:
    """run minus reference, in macro bits per byte (negative: the run is better)."""

    estimate: float
    lo: float
    hi: float
    n_docs: int
    n_seeds: int
    seed_variance: bool

    @property
    def word(self) -> str:
        """``better``, ``worse`` or ``tied`` (the interval excludes 0 or not); ``undetermined`` without seed
        variance, whose absence makes a document-only interval far too narrow to call a difference."""
        if not self.seed_variance:
            return "undetermined"
        if self.hi < 0:
            return "better"
        if self.lo > 0:
            return "worse"
        return "tied"

    def describe(self) -> str:
        seeds = (f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}, seed variance included" if self.seed_variance
                 else f"{self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}, no estimate of seed variance")
        return (f"{self.word} {self.estimate:+.4f} [{self.lo:+.4f}, {self.hi:+.4f}] "
                f"({self.n_docs} docs, {seeds})")


def combine(estimate: float, lo: float, hi: float, seed_se: Optional[float], df: int = 0,
            level: float = LEVEL) -> tuple[float, float]:
    """Widen a document interval by the seed standard error, each side on its own: the side's document
    standard error (its width over the normal quantile) and the seed's add in quadrature, and the t quantile
    takes the Welch-Satterthwaite degrees of freedom of that sum (only the seed part is estimated from few
    values), so neither a t-quantile on the seed part alone nor a normal one on the sum is used."""
    if seed_se is None:
        return lo, hi
    from scipy import stats

    z = stats.norm.ppf((1 + level) / 2)

    def side(width: float) -> float:
        total = float(np.hypot(width / z, seed_se))
        if seed_se == 0 or total == 0:
            return width
        return float(stats.t.ppf((1 + level) / 2, total ** 4 / (seed_se ** 4 / df)) * total)

    return estimate - side(estimate - lo), estimate + side(hi - estimate)


def paired_difference(scores: Scores, run: str, reference: str, strata: list[Stratum],
                      noise: Optional[SeedNoise] = None, level: float = LEVEL) -> Difference:
    """Macro bpb of ``run`` minus ``reference`` on the same resampled documents, seeds averaged inside, with
    the pooled seed variance (``noise``, computed from ``scores`` when not given), at ``level``."""
    noise = noise or seed_noise(scores, strata)
    both = np.column_stack([scores.bits[run], scores.bits[reference]])
    point = macro_columns(both, scores.bytes, strata, resampled=False)
    draws = macro_columns(both, scores.bytes, strata)
    estimate = float(point[0] - point[1])
    lo, hi = interval(draws[:, 0] - draws[:, 1], level)
    n_run, n_reference = len(scores.per_seed[run]), len(scores.per_seed[reference])
    seed_se = noise.standard_error(n_run, n_reference)
    lo, hi = combine(estimate, lo, hi, seed_se, noise.df, level)
    n_docs = int(sum(len(stratum.positions) for stratum in strata))
    return Difference(estimate, lo, hi, n_docs, min(n_run, n_reference), seed_se is not None)


def run_interval(scores: Scores, run: str, strata: list[Stratum],
                 noise: Optional[SeedNoise] = None) -> tuple[float, float, float]:
    """(macro, lo, hi) of one run's seed-mean macro bpb, with the pooled seed variance when there is one."""
    noise = noise or seed_noise(scores, strata)
    bits = scores.bits[run]
    estimate = macro(bits, scores.bytes, strata, resampled=False)
    lo, hi = interval(macro(bits, scores.bytes, strata))
    return (estimate, *combine(estimate, lo, hi, noise.standard_error(len(scores.per_seed[run])), noise.df))


def probability_best(scores: Scores, runs: Sequence[str], strata: list[Stratum], noise: SeedNoise,
                     seed: int = 0) -> dict[str, float]:
    """Per run, the share of resamples in which its macro bpb is the lowest of ``runs``.

    Each resample draws the documents (the stratified bootstrap) and each run's
    training noise: a normal shift with the standard error of its seed mean under
    the pooled seed variance (with two or three seeds a resample of the seeds
    themselves would understate it). Without an estimate of seed variance (one seed
    per run) every share is NaN: drawing the documents alone would make a run whose
    lead is training luck look certain to be best.
    """
    runs = list(runs)
    if noise.df < 1:
        return {run: float("nan") for run in runs}
    draws = macro_columns(np.column_stack([scores.bits[r] for r in runs]), scores.bytes, strata)
    spread = np.array([noise.standard_error(len(scores.per_seed[r])) or 0.0 for r in runs])
    draws = draws + np.random.default_rng(seed).standard_normal(draws.shape) * spread
    wins = np.bincount(np.argmin(draws, axis=1), minlength=len(runs)) / len(draws)
    return {run: float(share) for run, share in zip(runs, wins)}


def comparisons_level(n_runs: int, level: float = LEVEL) -> float:
    """The level of each comparison of a run with the chosen (lowest) one, so that, all runs being equal, the
    chance that any is called worse than the chosen one stays within 1 − ``level``.

    The chosen run is picked by the data, so comparing the others with it is
    comparing the extreme pair: the family at risk is every pair of runs, not the
    n − 1 comparisons with a fixed reference (with 10 equal runs, a Bonferroni
    over n − 1 calls one worse in about 15% of searches, over every pair in
    under 5%).
    """
    pairs = n_runs * (n_runs - 1) // 2
    return 1 - (1 - level) / max(pairs, 1)


def steps_to_reach(curve: np.ndarray, steps: np.ndarray, target) -> np.ndarray:
    """Per resample, the first step whose value is at or below the target; inf where none is.

    ``curve``: (samples, n_steps) or (n_steps,); ``target``: (samples,) or a scalar.
    """
    curve = np.atleast_2d(curve)
    target = np.broadcast_to(np.asarray(target, dtype=float), (curve.shape[0],))
    reached = curve <= target[:, None] + 1e-12
    first = np.where(reached.any(axis=1), reached.argmax(axis=1), -1)
    return np.where(first >= 0, steps[np.maximum(first, 0)].astype(float), np.inf)


def step_interval(steps: np.ndarray) -> tuple[float, float]:
    """Percentile interval of resampled step counts, which may be inf (never reached); no interpolation."""
    lo, hi = tails()
    return float(np.percentile(steps, lo, method="lower")), float(np.percentile(steps, hi, method="higher"))
