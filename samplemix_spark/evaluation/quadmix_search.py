"""QuaDMix's parameter search (arXiv 2504.16511, Algorithm 1 and §3.2): sample, regress, propose. Driver side.

Pure numpy (LightGBM when installed): the proxy runs that give each setting its
held-out macro bits per byte come from ``samplemix tune``; this module draws the
settings and turns the observed losses into a proposal.

- **Drawing** (``draw``): seeded from ``hashing.QUADMIX_SEARCH``, each parameter
  uniform in its range (λ log-uniform). ``tune.ranges`` picks the ranges:
  ``paper`` is Algorithm 1's (λ = 10^(3u), ω = u/10, η = u, ε = u/1000), which
  suits its selection of 6% of a corpus: at most the best 10% of a domain's tokens
  lie above the floor. ``wide`` (the default) suits budgets near the corpus size:
  λ as the paper, ω = 0.05 + 0.95u (from the best 5% of a domain to all of it),
  η = u and ε = u/10 (a floor up to a tenth of a typical top value, where u/1000
  would all but drop the rest of a domain). ``tune.bounds`` overrides any range.
- **Merging weights**: with two or more criteria, Algorithm 1's merging weights
  are drawn too, a global a_n = u per criterion times a per-domain b_{n,m} = u, so
  domain m merges criterion n with weight a_n·b_{n,m} (columns ``a.<criterion>``
  and ``b.<criterion>.<domain>``). With one criterion they cancel in the
  normalisation and are not drawn.
- **Reduced parameterisation**: with tens of runs, not thousands, one λ and one ω
  are shared by every domain and only η and ε are per domain (2 + 2D numbers, not
  4D); ``reduced=False`` draws all four per domain.
- **Regression** (``fit``): LightGBM from the features (log10 λ, ω, η, ε, ...) to
  the macro loss, its leaves sized for tens of runs (at least ``n // 10`` runs a
  leaf); without LightGBM, ridge regression on the features and their squares
  (so an interior optimum can be represented). Either way its held-out mean
  absolute error (leave-one-out; 10-fold above 200 runs) must be below the 5%
  quantile of the same error on 50 shuffles of the losses across settings (a
  permutation test): on pure noise a lower error than a constant predictor's
  alone accepted about one search in six. The constant predictor's error is
  still reported beside it.
- **Proposal** (``propose``): 100,000 settings drawn from the same ranges are
  predicted, and the mean of the top 10 (λ averaged in log space) is proposed, as
  the paper does, but only when the regression passes that test; otherwise the
  best observed setting is proposed and the result says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from samplemix_spark.errors import InputError
from samplemix_spark.hashing import QUADMIX_SEARCH, purpose_seed

SHARED = ("lam", "omega")       # one value for every domain in the reduced parameterisation
PER_DOMAIN = ("eta", "epsilon")
MERGE = ("a", "b")              # the global and the per-domain factor of a merging weight
PREDICTED = 100_000
TOP_K = 10
RIDGE_ALPHA = 1.0
SHUFFLES = 50           # permutations of the losses in the regression's acceptance test
ACCEPT_QUANTILE = 0.05  # the regression is trusted below this quantile of its error on shuffled losses
KFOLD_ABOVE = 200       # more runs than this: FOLDS-fold errors instead of leave-one-out
FOLDS = 10
RANGES = {
    "wide": {"lam": (1.0, 1000.0), "omega": (0.05, 1.0), "eta": (0.0, 1.0), "epsilon": (0.0, 0.1),
             "merge": (0.0, 1.0)},
    "paper": {"lam": (1.0, 1000.0), "omega": (0.0, 0.1), "eta": (0.0, 1.0), "epsilon": (0.0, 0.001),
              "merge": (0.0, 1.0)},
}
LOG_UNIFORM = ("lam",)


@dataclass(frozen=True)
class SearchSpace:
    """What a search draws: the domains, whether λ and ω are shared, the merged criteria and the ranges."""

    domains: tuple
    reduced: bool = True
    criteria: tuple = ("quality",)
    ranges: dict = field(default_factory=lambda: dict(RANGES["wide"]))

    def columns(self) -> list[str]:
        """``lam``, ``omega``, ``eta.<domain>``, ... (``lam.<domain>`` when not reduced), then merging weights."""
        shared = list(SHARED) if self.reduced else [f"{p}.{d}" for p in SHARED for d in self.domains]
        names = shared + [f"{p}.{d}" for p in PER_DOMAIN for d in self.domains]
        if len(self.criteria) > 1:
            names += [f"a.{n}" for n in self.criteria] + [f"b.{n}.{d}" for n in self.criteria for d in self.domains]
        return names

    def value(self, column: str, u: np.ndarray) -> np.ndarray:
        """A parameter's value from uniform draws: linear in its range, log-uniform for λ."""
        name = column.split(".")[0]
        low, high = self.ranges["merge" if name in MERGE else name]
        if name in LOG_UNIFORM:
            return low * (high / low) ** u
        return low + (high - low) * u


def draw(n: int, space: SearchSpace, seed: int) -> pd.DataFrame:
    """``n`` settings, one row each, in the columns of ``space.columns()``; the first k of n are a draw of k."""
    rng = np.random.default_rng(purpose_seed(QUADMIX_SEARCH, seed))
    names = space.columns()
    u = rng.random((n, len(names)))
    return pd.DataFrame({name: space.value(name, u[:, i]) for i, name in enumerate(names)})


def config_values(setting: dict) -> dict[tuple[str, ...], float]:
    """A drawn setting as paths under ``mixing.quadmix``: shared parameters globally, the rest per domain, and
    each domain's merging weight a_n·b_{n,m}."""
    values = {}
    for column, value in setting.items():
        name, _, rest = column.partition(".")
        if name == "a":
            continue
        if name == "b":
            criterion, _, domain = rest.partition(".")
            values[("domains", domain, "weights", criterion)] = float(setting[f"a.{criterion}"]) * float(value)
        else:
            values[("domains", rest, name) if rest else (name,)] = float(value)
    return values


def features(settings: pd.DataFrame) -> np.ndarray:
    """What the regression sees: log10 λ (λ spans three decades), the other parameters as they are."""
    return np.column_stack([np.log10(settings[c]) if c.split(".")[0] == "lam" else settings[c]
                            for c in settings.columns]).astype(np.float64)


class _Ridge:
    """Ridge regression on standardised features and their squares (the fallback without LightGBM)."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_Ridge":
        expanded = np.hstack([x, x ** 2])
        self.mean, self.scale = expanded.mean(0), expanded.std(0) + 1e-12
        z = (expanded - self.mean) / self.scale
        self.intercept = y.mean()
        self.coef = np.linalg.solve(z.T @ z + RIDGE_ALPHA * np.eye(z.shape[1]), z.T @ (y - self.intercept))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.intercept + ((np.hstack([x, x ** 2]) - self.mean) / self.scale) @ self.coef


def _model(n: int, seed: int):
    try:
        import lightgbm
    except ImportError:
        return "ridge", _Ridge()
    leaf = max(2, n // 10)
    return "lightgbm", lightgbm.LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=8,
                                              min_child_samples=leaf, min_child_weight=0.0, subsample=1.0,
                                              deterministic=True, force_row_wise=True, n_jobs=1,
                                              random_state=seed, verbose=-1)


@dataclass
class SearchFit:
    model_name: str
    model: object
    predicted: np.ndarray       # the fitted model's prediction of every observed run
    loo_error: float            # held-out mean absolute error of the regression (leave-one-out, or K-fold)
    constant_error: float       # the same for a constant predictor (the mean of the other runs)
    shuffled_errors: np.ndarray  # the same error of the regression fitted to shuffled losses, per shuffle

    @property
    def threshold(self) -> float:
        """The error that pure chance reaches in ``ACCEPT_QUANTILE`` of shuffles."""
        return float(np.quantile(self.shuffled_errors, ACCEPT_QUANTILE))

    @property
    def beats_shuffles(self) -> bool:
        """A permutation test: the regression predicts held-out runs better than it does once the losses are
        shuffled across settings (no relation left to learn) in all but ``ACCEPT_QUANTILE`` of shuffles."""
        return self.loo_error < self.threshold


def held_out_error(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Mean absolute error of the regression on runs it was not fitted to: leave-one-out up to
    ``KFOLD_ABOVE`` runs, ``FOLDS``-fold (seeded folds) above."""
    n = len(y)
    folds = np.arange(n) if n <= KFOLD_ABOVE else np.random.default_rng(seed).permutation(n) % FOLDS
    predicted = np.empty(n)
    for fold in np.unique(folds):
        out = folds == fold
        predicted[out] = _model(int((~out).sum()), seed)[1].fit(x[~out], y[~out]).predict(x[out])
    return float(np.abs(predicted - y).mean())


def fit(settings: pd.DataFrame, observed: np.ndarray, seed: int = 0) -> SearchFit:
    """The regression from settings to observed macro bpb, its held-out error, and the same error on
    ``SHUFFLES`` shuffles of the losses (seeded), which decide whether it is trusted (``beats_shuffles``)."""
    x, y = features(settings), np.asarray(observed, dtype=np.float64)
    if not np.isfinite(y).all():
        raise InputError(f"a parameter search was handed {int((~np.isfinite(y)).sum())} settings without a held-out "
                         "score; leave them out before fitting, so none can be taken for the best")
    n = len(y)
    if n < 4:
        raise InputError(f"a parameter search needs at least 4 runs to judge its regression; it has {n}")
    name, model = _model(n, seed)
    rng = np.random.default_rng([purpose_seed(QUADMIX_SEARCH, seed), n])
    shuffled = np.array([held_out_error(x, rng.permutation(y), seed) for _ in range(SHUFFLES)])
    constant = np.array([y[np.arange(n) != i].mean() for i in range(n)])
    model.fit(x, y)
    return SearchFit(name, model, model.predict(x), held_out_error(x, y, seed), float(np.abs(constant - y).mean()),
                     shuffled)


@dataclass
class Proposal:
    setting: dict           # parameter column -> value
    accepted: bool          # True: the mean of the top predicted settings; False: the best observed run
    reason: str


def propose(search: SearchFit, settings: pd.DataFrame, observed: np.ndarray, space: SearchSpace,
            seed: int) -> Proposal:
    """The mean of the top ``TOP_K`` of ``PREDICTED`` drawn settings, or the best observed run (module doc)."""
    if not search.beats_shuffles:
        best = settings.iloc[int(np.argmin(observed))].to_dict()
        return Proposal(best, False, f"the regression's held-out error {search.loo_error:.4f} bpb is not below "
                                     f"{search.threshold:.4f}, the {ACCEPT_QUANTILE:.0%} quantile of its error on "
                                     f"{SHUFFLES} shuffles of the losses: no relation it found can be told from "
                                     "chance, so the best observed run is proposed instead")
    pool = draw(PREDICTED, space, seed + 1)
    top = pool.iloc[np.argsort(search.model.predict(features(pool)), kind="stable")[:TOP_K]]
    setting = {c: float(10.0 ** np.log10(top[c]).mean()) if c.split(".")[0] == "lam" else float(top[c].mean())
               for c in pool.columns}
    return Proposal(setting, True, f"the regression ({search.model_name}) has held-out error "
                                   f"{search.loo_error:.4f} bpb, below {search.threshold:.4f}, the "
                                   f"{ACCEPT_QUANTILE:.0%} quantile of its error on {SHUFFLES} shuffles of the "
                                   f"losses: the mean of its top {TOP_K} of {PREDICTED:,} predicted settings is "
                                   "proposed")


def set_lines(setting: dict) -> list[str]:
    """``--set`` lines for ``samplemix run``: shared parameters globally, per-domain ones as overrides."""
    values = sorted(config_values(setting).items())
    return [f"--set mixing.quadmix.{'.'.join(path)}={value:.6g}" for path, value in values]
