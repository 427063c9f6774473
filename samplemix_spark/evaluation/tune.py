"""``samplemix tune``: choose alpha, tau (and the repetition cap) by the held-out loss of proxies. Driver side.

For every candidate setting the counts are computed from the stored scores, as
``sweep`` does, and written to the small ``tune_counts`` table (candidate,
doc_id, count); no output table is written. Each proxy reads the documents
table's files and those counts (``stream.Copies``), which gives exactly the
stream the candidate's ``output`` table would give. Every candidate's proxies
get the same preset, byte budget and seeds.

The candidate with the lowest seed-mean macro bpb is chosen; every other
candidate whose difference from it does not exceed the seed spread (see
``evaluate.exceeds_spread``) is marked tied. Results go to the ``tune`` table
after every proxy, so a killed run resumes without retraining finished proxies.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig, build_config
from samplemix_spark.errors import InputError
from samplemix_spark.evaluation import evaluate as ev
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation.plots import MACRO
from samplemix_spark.evaluation.proxy import PRESETS, measured_bytes_per_s
from samplemix_spark.evaluation.swarm import ProxyJob, counted_jobs, train_recording
from samplemix_spark.mixing.weights import compute_stats, scored_documents, weights_frame
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
KEY = ["alpha", "tau", "max_repeats", "seed"]
TUNE_COLUMNS = [*KEY, "domain", "bpb", "chosen", "tied", "preset", "budget_bytes", "holdout"]


@dataclass(frozen=True)
class Candidate:
    alpha: float
    tau: float
    max_repeats: Optional[float] = None

    def mixing(self, base: MixingConfig) -> MixingConfig:
        """``base`` with this candidate's settings, validated like a config file."""
        values = {**dataclasses.asdict(base), "method": "samplemix", "alpha": self.alpha, "tau": self.tau,
                  "max_repeats": self.max_repeats}
        return build_config({"mixing": values}).mixing

    def as_set(self) -> str:
        sets = [f"--set mixing.alpha={self.alpha:g}", f"--set mixing.tau={self.tau:g}"]
        if self.max_repeats is not None:
            sets.append(f"--set mixing.max_repeats={self.max_repeats:g}")
        return " ".join(sets)


def grid(alphas: list[float], taus: list[float], caps: list[Optional[float]]) -> list[Candidate]:
    return [Candidate(a, t, c) for a, t, c in itertools.product(alphas, taus, caps)]


def candidate_counts(scored: DataFrame, base: MixingConfig, candidates: list[Candidate]) -> DataFrame:
    """(candidate, doc_id, count) of every document a candidate selects, for all candidates at once."""
    frames = []
    for i, candidate in enumerate(candidates):
        mixing = candidate.mixing(base)
        weights = weights_frame(scored, compute_stats(scored, mixing))
        frames.append(weights.filter(F.col("count") > 0).select(F.lit(i).alias("candidate"), "doc_id", "count"))
    return functools.reduce(DataFrame.unionByName, frames)


def _done(store: TableStore, preset: str, budget: int, holdout: str) -> pd.DataFrame:
    """Rows of ``tune`` from an earlier run with the same preset, budget and held-out set."""
    previous = store.read_if_exists("tune")
    if previous is None:
        return pd.DataFrame(columns=TUNE_COLUMNS)
    rows = previous.toPandas()
    same = (rows["preset"] == preset) & (rows["budget_bytes"] == budget) & (rows["holdout"] == holdout)
    return rows[same]


_NO_CAP = -1.0  # stands for "no cap" in resume keys, where NaN would not compare equal


def _key(candidate: Candidate, seed: int) -> tuple:
    cap = _NO_CAP if candidate.max_repeats is None else float(candidate.max_repeats)
    return float(candidate.alpha), float(candidate.tau), cap, int(seed)


def _row_key(row) -> tuple:
    cap = _NO_CAP if pd.isna(row["max_repeats"]) else float(row["max_repeats"])
    return float(row["alpha"]), float(row["tau"]), cap, int(row["seed"])


def mark_choice(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set ``chosen`` and ``tied`` on every row; return the rows and the per-candidate summary."""
    setting = ["alpha", "tau", "max_repeats"]
    results = results.assign(max_repeats=results["max_repeats"].astype(float))
    macro = results[results["domain"] == MACRO]
    summary = macro.groupby(setting, dropna=False)["bpb"].agg(["mean", "std", "count"]).reset_index()
    best = summary["mean"].idxmin()
    best_rows = _macro_of(macro, summary.loc[best])
    summary["chosen"] = summary.index == best
    summary["tied"] = [not s.chosen and not ev.exceeds_spread(_macro_of(macro, s), best_rows)
                       for s in summary.itertuples()]
    flags = summary[setting + ["chosen", "tied"]]
    marked = results.drop(columns=["chosen", "tied"], errors="ignore").merge(flags, on=setting, how="left")
    return marked[TUNE_COLUMNS], summary


def _macro_of(macro: pd.DataFrame, setting) -> pd.Series:
    same_cap = (macro["max_repeats"] == setting.max_repeats) | (macro["max_repeats"].isna()
                                                                 & pd.isna(setting.max_repeats))
    return macro[(macro["alpha"] == setting.alpha) & (macro["tau"] == setting.tau) & same_cap]["bpb"]


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Macro bpb (seed mean, std as error bars) against alpha, one line per tau and cap."""
    from samplemix_spark.report.html import save_figure

    def draw(ax):
        for (tau, cap), rows in summary.groupby(["tau", "max_repeats"], dropna=False):
            rows = rows.sort_values("alpha")
            label = f"tau={tau:g}" + ("" if pd.isna(cap) else f", cap={cap:g}")
            ax.errorbar(rows["alpha"], rows["mean"], yerr=rows["std"].fillna(0.0), marker="o", capsize=3,
                        label=label)
        ax.set_xlabel("alpha")
        ax.set_ylabel("held-out bits per byte (macro)")
        ax.set_title("Proxy loss per setting (mean over seeds)")
        ax.legend(fontsize=7)

    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(path, draw)


def _plan(n_candidates: int, jobs: list[ProxyJob], n_done: int, preset: str, threads: int, executor: str) -> str:
    budget = jobs[0].budget_bytes if jobs else PRESETS[preset].budget_bytes
    rate = measured_bytes_per_s(PRESETS[preset], threads)
    minutes = len(jobs) * budget / rate / 60
    return (f"tune: {n_candidates} candidates x seeds = {len(jobs) + n_done} proxies of {budget:,} bytes "
            f"({n_done} already done); {len(jobs)} to train {executor}, about {minutes:.1f} min at "
            f"{rate:,.0f} bytes/s per proxy measured here")


def tune(spark: SparkSession, cfg: SampleMixConfig, candidates: list[Candidate], out: Path) -> pd.DataFrame:
    """Train proxies on every candidate and seed, write ``tune`` and the plot, return the per-candidate summary."""
    if not candidates:
        raise InputError("tune needs at least one candidate setting")
    store = TableStore(spark, cfg.tables)
    holdout = held.required_fingerprint(store, "tune")
    held_out = ev.held_out_bytes(cfg, store)
    domains = ev.chosen_domains(cfg, held_out)
    preset, budget = cfg.evaluate.preset, cfg.evaluate.budget_bytes or PRESETS[cfg.evaluate.preset].budget_bytes
    wanted = {_key(c, seed) for c in candidates for seed in cfg.evaluate.seeds}
    done = _done(store, preset, budget, holdout)
    done = done.loc[pd.Series([_row_key(r) in wanted for _, r in done.iterrows()], index=done.index, dtype=bool)]
    store.write(candidate_counts(scored_documents(store), cfg.mixing, candidates), "tune_counts")
    finished = {_row_key(r) for _, r in done.iterrows()}
    names = [f"alpha={c.alpha:g} tau={c.tau:g}" for c in candidates]
    jobs, labels = counted_jobs(cfg, store, "tune_counts", names,
                                lambda i, seed: _key(candidates[i], seed) in finished, budget)
    executor = ev.executor(cfg)
    log.info(_plan(len(candidates), jobs, len(wanted) - len(jobs), preset, cfg.evaluate.threads, executor))
    results = [done[[c for c in TUNE_COLUMNS if c not in ("chosen", "tied")]]]

    def record(curves: pd.DataFrame) -> None:
        found = {job: (candidates[i], seed) for job, (i, seed) in labels.items()}
        results[0] = _record(store, results[0], curves, found, domains, preset, budget, holdout)

    train_recording(spark, executor, jobs, held_out, record)
    return _finish(store, results[0], out)


def _record(store: TableStore, results: pd.DataFrame, curves: pd.DataFrame, labels: dict, domains: list[str],
            preset: str, budget: int, holdout: str) -> pd.DataFrame:
    """Add the final-step losses of ``curves`` (with ``_all``) to ``results`` and rewrite ``tune``."""
    last = curves[curves["step"] == curves.groupby("job")["step"].transform("max")]
    rows = []
    for job, group in last.groupby("job"):
        candidate, seed = labels[job]
        losses = dict(zip(group["domain"], group["bpb"]))
        losses[MACRO] = sum(losses[d] for d in domains) / len(domains)
        rows += [(candidate.alpha, candidate.tau, candidate.max_repeats, seed, d, bpb, preset, budget, holdout)
                 for d, bpb in losses.items()]
    columns = [c for c in TUNE_COLUMNS if c not in ("chosen", "tied")]
    new = pd.DataFrame(rows, columns=columns)
    results = pd.concat([results, new], ignore_index=True) if len(results) else new
    marked, _ = mark_choice(results)
    store.write(store.spark.createDataFrame(marked, _schema()), "tune")
    return results


def _schema() -> str:
    return ("alpha double, tau double, max_repeats double, seed long, domain string, bpb double, chosen boolean, "
            "tied boolean, preset string, budget_bytes long, holdout string")


def _finish(store: TableStore, results: pd.DataFrame, out: Path) -> pd.DataFrame:
    marked, summary = mark_choice(results)
    plot(summary, out / "tune.png")
    summary.to_csv(out / "tune.csv", index=False)
    best = summary[summary["chosen"]].iloc[0]
    cap = None if pd.isna(best["max_repeats"]) else float(best["max_repeats"])
    choice = Candidate(float(best["alpha"]), float(best["tau"]), cap)
    log.info("tune: held-out macro bits per byte per setting (mean and std over seeds)\n%s\nchosen: %s  "
             "(%d other settings tied within the seed spread); plot %s",
             summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"), choice.as_set(),
             int(summary["tied"].sum()), out / "tune.png")
    print(choice.as_set())
    return summary


def tune_domains(spark: SparkSession, cfg: SampleMixConfig, extra: int, out: Path) -> dict[str, float]:
    """Domain proportions from a regression over a proxy swarm (``evaluation.regression``); returns them.

    The swarm is BiMix's design plus ``extra`` random mixtures, stored in
    ``bimix_observations`` as it trains (so it also feeds ``source: bimix``).
    """
    from samplemix_spark.evaluation import regression
    from samplemix_spark.evaluation.bimix_swarm import observe

    store = TableStore(spark, cfg.tables)
    observations, _ = observe(spark, store, cfg, extra)
    domains = sorted(set(observations["domain"]))
    scored = cfg.evaluate.domains or domains
    model = regression.fit(regression.runs_table(observations, scored), domains)
    proposal = regression.propose(model, cfg.mixing.domain_weights.bimix_min_proportion)
    table = pd.DataFrame({"domain": domains, "proportion": [proposal[d] for d in domains],
                          "coefficient": model.coefficients[1:], "intercept": model.coefficients[0],
                          "loo_mean_abs_error": model.loo_mean_abs_error,
                          "loo_mean_relative_error": model.loo_mean_relative_error, "n_mixtures": model.n_mixtures})
    store.write(spark.createDataFrame(table), "tune_regression")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "regression.csv", index=False)
    weights = ", ".join(f"{d}: {proposal[d]:.4f}" for d in domains)
    log.info("tune: regression of macro bpb on log proportions over %d mixtures: leave-one-run-out error %.4f bpb "
             "(%.2f%%)\n%s", model.n_mixtures, model.loo_mean_abs_error, 100 * model.loo_mean_relative_error,
             table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"--set mixing.method=domain --set mixing.domain_weights.source=manual "
          f"--set 'mixing.domain_weights.manual={{{weights}}}'")
    return proposal
