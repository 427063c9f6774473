"""BiMix (Ge et al., 2024; SPEC §5): fit a bivariate mixing law per domain, then optimise proportions.

Driver side, numpy/scipy on a small observations table of proxy runs: one row
per (run, domain) with the domain's proportion r, the training step s and the
domain's validation loss L.

The law is a swappable ``MixingLaw``. The default is our reading of BiMix v2:
L_i(r, s) = A_i / r^alpha_i * (B_i / s^beta_i + C_i). Only A*B and A*C are
identifiable from (r, s, L) data, so A is fixed to 1 and B, C carry its scale;
the fit reports alpha, beta, B = A*B and C = A*C.

The optimised mixture minimises sum_i L_i(r_i, s_target) over the simplex
(r_i >= 1e-6, sum r_i = 1) with SLSQP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from samplemix_spark.errors import InputError

REQUIRED_COLUMNS = ("domain", "proportion", "steps", "loss")
MIN_OBSERVATIONS = 6


@dataclass(frozen=True)
class MixingLaw:
    names: tuple[str, ...]
    func: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]   # (params, r, s) -> loss
    initial: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]


def _bimix(params: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    alpha, b, beta, c = params
    return r ** (-alpha) * (b / s ** beta + c)


BIMIX_LAW = MixingLaw(("alpha", "B", "beta", "C"), _bimix, (0.1, 10.0, 0.5, 2.0),
                      (0.0, 0.0, 0.0, 0.0), (5.0, 1e6, 5.0, 1e3))


@dataclass(frozen=True)
class DomainFit:
    domain: str
    params: dict
    r2: float
    mean_relative_error: float
    n: int


def validate_observations(frame: pd.DataFrame) -> pd.DataFrame:
    """Refuse a table that cannot be fitted, naming the column, domain or row count at fault."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"bimix observations lack column(s) {', '.join(missing)}; "
                         f"expected {', '.join(REQUIRED_COLUMNS)}")
    frame = frame[list(REQUIRED_COLUMNS)].copy()
    numeric = frame[["proportion", "steps", "loss"]].apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().any(axis=1) | ~np.isfinite(numeric).all(axis=1)
    bad |= (numeric["proportion"] <= 0) | (numeric["proportion"] > 1) | (numeric["steps"] <= 0) | (numeric["loss"] <= 0)
    if bad.any():
        raise InputError(f"bimix observations: {int(bad.sum())} rows have a proportion outside (0, 1], "
                         "non-positive steps or loss, or a missing value")
    frame[["proportion", "steps", "loss"]] = numeric
    counts = frame.groupby("domain").size()
    thin = counts[counts < MIN_OBSERVATIONS]
    if len(thin):
        raise InputError(f"bimix observations: domain(s) {', '.join(map(str, thin.index))} have fewer than "
                         f"{MIN_OBSERVATIONS} observations")
    return frame


def fit_domain(rows: pd.DataFrame, law: MixingLaw = BIMIX_LAW) -> tuple[np.ndarray, float, float]:
    """Least-squares fit of ``law`` to one domain's rows: (params, R^2, mean relative error)."""
    from scipy.optimize import least_squares

    r, s, loss = (rows[c].to_numpy(float) for c in ("proportion", "steps", "loss"))
    result = least_squares(lambda p: law.func(p, r, s) - loss, np.array(law.initial),
                           bounds=(np.array(law.lower), np.array(law.upper)), x_scale="jac", max_nfev=20000)
    predicted = law.func(result.x, r, s)
    r2 = 1 - np.sum((loss - predicted) ** 2) / np.sum((loss - loss.mean()) ** 2)
    return result.x, float(r2), float(np.mean(np.abs(predicted - loss) / loss))


def fit_law(observations: pd.DataFrame, law: MixingLaw = BIMIX_LAW) -> list[DomainFit]:
    """One fit per domain of a validated observations table."""
    fits = []
    for domain, rows in validate_observations(observations).groupby("domain"):
        params, r2, mre = fit_domain(rows, law)
        fits.append(DomainFit(str(domain), dict(zip(law.names, params.tolist())), r2, mre, len(rows)))
    return fits


def optimise_proportions(fits: list[DomainFit], steps: float, law: MixingLaw = BIMIX_LAW) -> dict[str, float]:
    """Proportions on the simplex minimising the summed predicted loss at ``steps``."""
    from scipy.optimize import minimize

    params = [np.array([fit.params[name] for name in law.names]) for fit in fits]

    def total_loss(r: np.ndarray) -> float:
        return float(sum(law.func(p, np.array([ri]), np.array([steps]))[0] for p, ri in zip(params, r)))

    start = np.full(len(fits), 1.0 / len(fits))
    result = minimize(total_loss, start, method="SLSQP", bounds=[(1e-6, 1.0)] * len(fits),
                      constraints=[{"type": "eq", "fun": lambda r: np.sum(r) - 1.0}],
                      options={"maxiter": 500, "ftol": 1e-12})
    r = np.clip(result.x, 1e-6, None)
    r = r / r.sum()
    return {fit.domain: float(ri) for fit, ri in zip(fits, r)}


def predicted_total_loss(fits: list[DomainFit], proportions: dict[str, float], steps: float,
                         law: MixingLaw = BIMIX_LAW) -> float:
    return float(sum(law.func(np.array([f.params[n] for n in law.names]), np.array([proportions[f.domain]]),
                              np.array([steps]))[0] for f in fits))


def fits_frame(fits: list[DomainFit], proportions: dict[str, float], steps: float) -> pd.DataFrame:
    """The ``bimix_fit`` table: one row per domain with its law, fit quality and optimised proportion."""
    return pd.DataFrame([{"domain": f.domain, **{k: float(v) for k, v in f.params.items()}, "r2": f.r2,
                          "mean_relative_error": f.mean_relative_error, "n_observations": f.n,
                          "proportion": proportions[f.domain], "target_steps": float(steps)} for f in fits])
