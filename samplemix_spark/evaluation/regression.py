"""Regression over mixtures (the RegMix / Olmix idea) for domain-level weights. Driver side, numpy/scipy.

From a swarm of proxy runs at different domain proportions, fit the held-out macro
bits per byte as a log-linear function of the proportions,

    bpb(r) = b_0 + sum_i b_i log r_i,

and propose the proportions it predicts best on the simplex, no share below the
swarm's floor. A negative b_i means more of domain i lowers the loss; the optimum
gives such domains shares in proportion to |b_i| (the Lagrange condition
b_i / r_i = const) and the others the floor. The model has D + 1 parameters, so it
needs clearly more than D + 1 mixtures; its leave-one-run-out error (every seed of
one mixture left out, predicted by a fit on the rest) says whether it has them.
RegMix fits 512 runs with a gradient-boosted model; with the tens of runs a CPU
affords, a model this simple is what the data can support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from samplemix_spark.errors import InputError

RIDGE = 1e-6  # keeps the normal equations solvable when two domains' shares move together


@dataclass(frozen=True)
class MixtureRegression:
    domains: tuple[str, ...]
    coefficients: np.ndarray  # b_0, then one b_i per domain
    loo_mean_abs_error: float
    loo_mean_relative_error: float
    n_mixtures: int

    def predict(self, proportions: np.ndarray) -> np.ndarray:
        """Macro bpb for rows of proportions (columns in ``domains`` order)."""
        return self.coefficients[0] + np.log(proportions) @ self.coefficients[1:]


def runs_table(observations: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """One row per (mixture, seed): its realised share of every domain and its final macro bpb over ``domains``."""
    last = observations[observations["steps"] == observations.groupby(["design", "seed"])["steps"].transform("max")]
    shares = last.pivot_table(index=["design", "seed"], columns="domain", values="proportion", aggfunc="first")
    macro = last[last["domain"].isin(domains)].groupby(["design", "seed"])["loss"].mean()
    return shares.assign(macro=macro).reset_index()


def _fit(shares: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.hstack([np.ones((len(shares), 1)), np.log(shares)])
    return np.linalg.solve(x.T @ x + RIDGE * np.eye(x.shape[1]), x.T @ y)


def fit(runs: pd.DataFrame, domains: list[str]) -> MixtureRegression:
    """Least-squares fit on every run, with the leave-one-mixture-out error."""
    mixtures = runs["design"].unique()
    if len(mixtures) <= len(domains) + 1:
        raise InputError(f"a regression over {len(domains)} domain proportions needs more than {len(domains) + 1} "
                         f"mixtures; the swarm has {len(mixtures)}: add random ones (samplemix tune --mixtures N)")
    shares, y = runs[domains].to_numpy(float), runs["macro"].to_numpy(float)
    errors = []
    for mixture in mixtures:
        out = (runs["design"] == mixture).to_numpy()
        b = _fit(shares[~out], y[~out])
        predicted = b[0] + np.log(shares[out]) @ b[1:]
        errors += list(zip(np.abs(predicted - y[out]), np.abs(predicted - y[out]) / y[out]))
    errors = np.array(errors)
    return MixtureRegression(tuple(domains), _fit(shares, y), float(errors[:, 0].mean()), float(errors[:, 1].mean()),
                             len(mixtures))


def propose(model: MixtureRegression, floor: float) -> dict[str, float]:
    """The proportions with the lowest predicted macro bpb, every share at least ``floor``."""
    from scipy.optimize import minimize

    n = len(model.domains)
    start = np.full(n, 1.0 / n)
    result = minimize(lambda r: float(model.predict(r[None, :])[0]), start, method="SLSQP",
                      bounds=[(floor, 1.0)] * n, constraints=[{"type": "eq", "fun": lambda r: np.sum(r) - 1.0}],
                      options={"maxiter": 500, "ftol": 1e-12})
    r = np.clip(result.x, floor, None)
    return dict(zip(model.domains, (r / r.sum()).tolist()))
