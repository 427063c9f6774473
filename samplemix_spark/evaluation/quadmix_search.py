"""QuaDMix's parameter search (arXiv 2504.16511, Algorithm 1 and §3.2): sample, regress, propose. Driver side.

Pure numpy (LightGBM when installed): the proxy runs that give each setting its
held-out macro bits per byte come from ``samplemix tune``; this module draws the
settings and turns the observed losses into a proposal.

- **Drawing** (``draw``): seeded from ``hashing.QUADMIX_SEARCH``. The paper draws
  λ = 10^(3u), ω = u/10, η = u and ε = u/1000 (u ~ U(0, 1) each), which suits its
  selection of 6% of a corpus: at most the best 10% of a domain's tokens lie above
  the floor. Our budgets are usually near the corpus size, so the ranges here are
  λ = 10^(3u) (1 to 1,000, as the paper), ω = 0.05 + 0.95u (from the best 5% of a
  domain to all of it), η = u and ε = u/10 (a floor up to a tenth of a typical top
  value, where the paper's u/1000 would all but drop the rest of a domain).
- **Reduced parameterisation**: with tens of runs, not thousands, one λ and one ω
  are shared by every domain and only η and ε are per domain (2 + 2D numbers, not
  4D); ``reduced=False`` draws all four per domain.
- **Regression** (``fit``): LightGBM from the features (log10 λ, ω, η, ε, ...) to
  the macro loss, its leaves sized for tens of runs (at least ``n // 10`` runs a
  leaf); without LightGBM, ridge regression on the features and their squares
  (so an interior optimum can be represented). Either way the leave-one-out mean
  absolute error is compared with that of a constant predictor (the mean of the
  other runs).
- **Proposal** (``propose``): 100,000 settings drawn from the same ranges are
  predicted, and the mean of the top 10 (λ averaged in log space) is proposed, as
  the paper does, but only when the regression's leave-one-out error beats the
  constant's; otherwise the best observed setting is proposed and the result says
  why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from samplemix_spark.errors import InputError
from samplemix_spark.hashing import QUADMIX_SEARCH, purpose_seed

SHARED = ("lam", "omega")       # one value for every domain in the reduced parameterisation
PER_DOMAIN = ("eta", "epsilon")
PREDICTED = 100_000
TOP_K = 10
RIDGE_ALPHA = 1.0


def _values(name: str, u: np.ndarray) -> np.ndarray:
    """A parameter's value from uniform draws (ranges in the module doc)."""
    return {"lam": 10.0 ** (3.0 * u), "omega": 0.05 + 0.95 * u, "eta": u, "epsilon": u / 10.0}[name]


def columns(domains: list[str], reduced: bool = True) -> list[str]:
    """The searched parameters: ``lam``, ``omega``, ``eta.<domain>``, ... (``lam.<domain>`` when not reduced)."""
    shared = list(SHARED) if reduced else [f"{p}.{d}" for p in SHARED for d in domains]
    return shared + [f"{p}.{d}" for p in PER_DOMAIN for d in domains]


def draw(n: int, domains: list[str], seed: int, reduced: bool = True) -> pd.DataFrame:
    """``n`` settings, one row each, in the columns of ``columns``."""
    rng = np.random.default_rng(purpose_seed(QUADMIX_SEARCH, seed))
    names = columns(domains, reduced)
    u = rng.random((n, len(names)))
    return pd.DataFrame({name: _values(name.split(".")[0], u[:, i]) for i, name in enumerate(names)})


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
    loo_error: float            # leave-one-out mean absolute error of the regression
    constant_error: float       # the same for a constant predictor (the mean of the other runs)

    @property
    def beats_constant(self) -> bool:
        # A regression too small to split predicts the other runs' mean, which is the constant predictor
        # itself: only a margin above rounding counts as beating it.
        return self.loo_error < self.constant_error * (1 - 1e-9)


def fit(settings: pd.DataFrame, observed: np.ndarray, seed: int = 0) -> SearchFit:
    """The regression from settings to observed macro bpb, with both leave-one-out errors."""
    x, y = features(settings), np.asarray(observed, dtype=np.float64)
    if not np.isfinite(y).all():
        raise InputError(f"a parameter search was handed {int((~np.isfinite(y)).sum())} settings without a held-out "
                         "score; leave them out before fitting, so none can be taken for the best")
    n = len(y)
    if n < 4:
        raise InputError(f"a parameter search needs at least 4 runs to judge its regression; it has {n}")
    name, model = _model(n, seed)
    loo = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        loo[i] = _model(n - 1, seed)[1].fit(x[keep], y[keep]).predict(x[i:i + 1])[0]
    constant = np.array([y[np.arange(n) != i].mean() for i in range(n)])
    model.fit(x, y)
    return SearchFit(name, model, model.predict(x), float(np.abs(loo - y).mean()),
                     float(np.abs(constant - y).mean()))


@dataclass
class Proposal:
    setting: dict           # parameter column -> value
    accepted: bool          # True: the mean of the top predicted settings; False: the best observed run
    reason: str


def propose(search: SearchFit, settings: pd.DataFrame, observed: np.ndarray, domains: list[str], seed: int,
            reduced: bool = True) -> Proposal:
    """The mean of the top ``TOP_K`` of ``PREDICTED`` drawn settings, or the best observed run (module doc)."""
    if not search.beats_constant:
        best = settings.iloc[int(np.argmin(observed))].to_dict()
        return Proposal(best, False, f"the regression's leave-one-out error {search.loo_error:.4f} bpb does not "
                                     f"beat a constant predictor's {search.constant_error:.4f}: the best observed "
                                     "run is proposed instead")
    pool = draw(PREDICTED, domains, seed + 1, reduced)
    top = pool.iloc[np.argsort(search.model.predict(features(pool)), kind="stable")[:TOP_K]]
    setting = {c: float(10.0 ** np.log10(top[c]).mean()) if c.split(".")[0] == "lam" else float(top[c].mean())
               for c in pool.columns}
    return Proposal(setting, True, f"the regression ({search.model_name}) has leave-one-out error "
                                   f"{search.loo_error:.4f} bpb against a constant predictor's "
                                   f"{search.constant_error:.4f}: the mean of its top {TOP_K} of {PREDICTED:,} "
                                   "predicted settings is proposed")


def set_lines(setting: dict) -> list[str]:
    """``--set`` lines for ``samplemix run``: shared parameters globally, per-domain ones as overrides."""
    lines = []
    for column, value in sorted(setting.items()):
        name, _, domain = column.partition(".")
        key = f"mixing.quadmix.{name}" if not domain else f"mixing.quadmix.domains.{domain}.{name}"
        lines.append(f"--set {key}={value:.6g}")
    return lines
