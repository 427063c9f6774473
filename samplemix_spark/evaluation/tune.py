"""``samplemix tune``: choose alpha, tau (and the repetition cap) by the held-out loss of proxies. Driver side.

For every candidate setting the counts are computed from the stored scores, as
``sweep`` does, and written to the small ``tune_counts`` table (candidate,
doc_id, count); no output table is written. Each proxy reads the documents
table's files and those counts (``stream.Copies``), which gives exactly the
stream the candidate's ``output`` table would give. Every candidate's proxies
get the same preset, byte budget and seeds.

Every proxy is scored on every held-out document (``holdout``); the bits per
document go to ``tune_docs`` and the per-domain figures to ``tune``, after every
proxy, so a killed run resumes without retraining finished proxies. The macro
``_all`` is recomputed from the per-document rows with the current
``evaluate.domains`` on every run, never reused. The candidate with the lowest
seed-mean macro bpb is chosen; every other candidate whose paired interval of the
difference from it includes 0 (``intervals.paired_difference``, seed variance
pooled over the candidates) is marked tied; with one seed per candidate nothing
is (the verdicts are undetermined).

A stored proxy is reused only while it is still comparable: each row carries a
fingerprint of everything that changes a proxy's loss besides the searched
settings (the other mixing settings, the documents and their scores, the held-out
set, preset, byte budget, threads, device and held-out scoring); a row under
another fingerprint is retrained, and the log says so.
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
from samplemix_spark.evaluation import intervals, proxy_cache
from samplemix_spark.evaluation.plots import MACRO, save_figure
from samplemix_spark.evaluation.proxy import PRESETS
from samplemix_spark.evaluation.swarm import by_candidate, counted_jobs, proxy_fingerprint, train_recording
from samplemix_spark.mixing.weights import compute_stats, quality_view, scored_documents, weights_frame
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
KEY = ["alpha", "tau", "max_repeats", "seed"]
TUNE_COLUMNS = [*KEY, "domain", "docs", "bytes", "bpb", "chosen", "tied", "preset", "budget_bytes", "holdout",
                "fingerprint"]
DOC_COLUMNS = [*KEY, "doc_id", "domain", "bytes", "bits", "preset", "budget_bytes", "holdout", "fingerprint"]
# What the fidelity study (benchmarks/proxy_fidelity.py) found the cpu preset can and cannot decide.
CPU_PRESET_NOTE = ("the cpu preset (0.26M parameters, 2 MiB) ranks some kinds of difference and not others; see "
                   "docs/evaluation.md#what-the-cpu-preset-can-decide before trusting its choice")
SEARCHED = ("alpha", "tau", "max_repeats", "method", "export_format", "export_path")


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


def candidate_counts(scored: DataFrame, base: MixingConfig, candidates: list[Candidate],
                     hash_scheme: str) -> DataFrame:
    """(candidate, doc_id, count) of every document a candidate selects, for all candidates at once."""
    frames = []
    for i, candidate in enumerate(candidates):
        mixing = candidate.mixing(base)
        weights = weights_frame(scored, compute_stats(scored, mixing, hash_scheme))
        frames.append(weights.filter(F.col("count") > 0).select(F.lit(i).alias("candidate"), "doc_id", "count"))
    return functools.reduce(DataFrame.unionByName, frames)


def _done(store: TableStore, fingerprint: str, wanted: set) -> pd.DataFrame:
    """Per-document rows of ``tune_docs`` from earlier proxies that are still comparable and still wanted."""
    previous = store.read_if_exists("tune_docs")
    if previous is None or "fingerprint" not in previous.columns:
        return pd.DataFrame(columns=DOC_COLUMNS)
    rows = previous.toPandas()
    keys = _row_keys(rows)
    stale = rows["fingerprint"] != fingerprint
    if stale.any():
        log.info("tune: %d stored proxies were trained under other settings (mixing settings besides alpha, tau "
                 "and the cap, documents or scores, held-out set, preset, budget, threads, device or held-out "
                 "scoring changed); they are retrained where still wanted", keys[stale].nunique())
    return rows[~stale & keys.map(lambda key: key in wanted).astype(bool)]


_NO_CAP = -1.0  # stands for "no cap" in resume keys, where NaN would not compare equal


def _key(candidate: Candidate, seed: int) -> tuple:
    cap = _NO_CAP if candidate.max_repeats is None else float(candidate.max_repeats)
    return float(candidate.alpha), float(candidate.tau), cap, int(seed)


def _row_keys(rows: pd.DataFrame) -> pd.Series:
    """The resume key of every row (see ``_key``)."""
    caps = rows["max_repeats"].astype(float).fillna(_NO_CAP)
    keys = zip(rows["alpha"].astype(float), rows["tau"].astype(float), caps, rows["seed"].astype(int))
    return pd.Series([(float(a), float(t), float(c), int(s)) for a, t, c, s in keys], index=rows.index, dtype=object)


def _label(row) -> str:
    cap = "" if pd.isna(row["max_repeats"]) else f" cap={row['max_repeats']:g}"
    return f"alpha={row['alpha']:g} tau={row['tau']:g}{cap}"


def domain_rows(docs: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """Per candidate, seed and domain: docs, bytes, bits per byte; ``_all`` the mean over ``domains``."""
    keys = [k for k in DOC_COLUMNS if k not in ("doc_id", "domain", "bytes", "bits")]
    sums = docs.groupby([*keys, "domain"], dropna=False, as_index=False).agg(
        docs=("doc_id", "size"), bytes=("bytes", "sum"), bits=("bits", "sum"))
    sums = sums.assign(bpb=sums["bits"] / sums["bytes"]).drop(columns="bits")
    chosen = sums[sums["domain"].isin(domains)]
    macro = chosen.groupby(keys, dropna=False, as_index=False).agg(docs=("docs", "sum"), bytes=("bytes", "sum"),
                                                                   bpb=("bpb", "mean"))
    return pd.concat([sums, macro.assign(domain=MACRO)], ignore_index=True)


def mark_choice(docs: pd.DataFrame, domains: list[str], samples: int = intervals.SAMPLES,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``tune`` rows with ``chosen`` and ``tied`` set, and the per-candidate summary with intervals."""
    setting = ["alpha", "tau", "max_repeats"]
    docs = docs.assign(max_repeats=docs["max_repeats"].astype(float))
    scores = intervals.Scores.from_frame(docs.assign(run=docs.apply(_label, axis=1)))
    strata = intervals.strata(scores.domains, domains, samples, seed)
    summary = docs.drop_duplicates(setting)[setting].reset_index(drop=True)
    summary["run"] = summary.apply(_label, axis=1)
    noise = intervals.seed_noise(scores, strata)
    figures = [intervals.run_interval(scores, run, strata, noise) for run in summary["run"]]
    summary[["mean", "lo", "hi"]] = pd.DataFrame(figures, index=summary.index)
    summary["seeds"] = [len(scores.per_seed[run]) for run in summary["run"]]
    summary["docs"] = sum(len(s.positions) for s in strata)
    best = summary.loc[summary["mean"].idxmin(), "run"]
    summary["chosen"] = summary["run"] == best
    differences = {run: intervals.paired_difference(scores, run, best, strata, noise) for run in summary["run"]}
    summary["tied"] = [run != best and differences[run].word == "tied" for run in summary["run"]]
    summary["vs_chosen"] = [differences[run].describe() if run != best else "-" for run in summary["run"]]
    flags = summary[setting + ["chosen", "tied"]]
    marked = domain_rows(docs, domains).merge(flags, on=setting, how="left")
    return marked[TUNE_COLUMNS], summary.drop(columns="run")


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Macro bpb (seed mean, 95% interval as error bars) against alpha, one line per tau and cap."""
    def draw(ax):
        for (tau, cap), rows in summary.groupby(["tau", "max_repeats"], dropna=False):
            rows = rows.sort_values("alpha")
            label = f"tau={tau:g}" + ("" if pd.isna(cap) else f", cap={cap:g}")
            errors = [(rows["mean"] - rows["lo"]).to_numpy(), (rows["hi"] - rows["mean"]).to_numpy()]
            ax.errorbar(rows["alpha"], rows["mean"], yerr=errors, marker="o", capsize=3, label=label)
        ax.set_xlabel("alpha")
        ax.set_ylabel("held-out bits per byte (macro)")
        ax.set_title("Proxy loss per setting (mean over seeds, 95% interval)")
        ax.legend(fontsize=7)

    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(path, draw)


def tune(spark: SparkSession, cfg: SampleMixConfig, candidates: list[Candidate], out: Path) -> pd.DataFrame:
    """Train proxies on every candidate and seed, write ``tune``, ``tune_docs`` and the plot; return the summary."""
    if not candidates:
        raise InputError("tune needs at least one candidate setting")
    store = TableStore(spark, cfg.tables)
    holdout = held.required_fingerprint(store, "tune")
    spec = ev.held_out_spec(cfg, store)
    domains = ev.chosen_domains(cfg, spec)
    preset, budget = cfg.evaluate.preset, cfg.evaluate.budget_bytes or PRESETS[cfg.evaluate.preset].budget_bytes
    fingerprint = proxy_fingerprint(cfg, store, holdout, SEARCHED)
    wanted = {_key(c, seed) for c in candidates for seed in cfg.evaluate.seeds}
    done = _done(store, fingerprint, wanted)
    scored = scored_documents(store, quality_view(cfg))
    store.write(by_candidate(candidate_counts(scored, cfg.mixing, candidates, store.hash_scheme)), "tune_counts")
    finished = set(_row_keys(done))
    names = [f"alpha={c.alpha:g} tau={c.tau:g}" for c in candidates]
    jobs, labels = counted_jobs(cfg, store, "tune_counts", names,
                                lambda i, seed: _key(candidates[i], seed) in finished, budget, spec)
    executor = ev.executor(cfg)
    log.info(proxy_cache.plan_line("tune", len(wanted), jobs, executor))
    if preset == "cpu":
        log.info("tune: %s", CPU_PRESET_NOTE)
    log.info("tune: held-out documents scored: %s", ev.rests_on(spec))
    found = {job: (candidates[i], seed) for job, (i, seed) in labels.items()}
    results = {"docs": done[DOC_COLUMNS], "summary": None}

    def record(scores: pd.DataFrame) -> None:
        new = _document_rows(scores, found).assign(preset=preset, budget_bytes=budget, holdout=holdout,
                                                   fingerprint=fingerprint)[DOC_COLUMNS]
        docs = pd.concat([results["docs"], new], ignore_index=True) if len(results["docs"]) else new
        results.update(docs=docs, summary=_write(store, docs, domains, cfg))

    train_recording(spark, executor, jobs, record)
    if results["summary"] is None:  # every proxy was stored already
        results["summary"] = _write(store, results["docs"], domains, cfg)
    return _finish(results["summary"], out)


def _document_rows(scores: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """The final step's per-document bits of each job, labelled with its candidate and seed."""
    last = scores[scores["step"] == scores.groupby("job")["step"].transform("max")]
    rows = []
    for job, group in last.groupby("job"):
        candidate, seed = labels[job]
        rows.append(group[["doc_id", "domain", "bytes", "bits"]].assign(
            alpha=candidate.alpha, tau=candidate.tau, max_repeats=candidate.max_repeats, seed=seed))
    return pd.concat(rows, ignore_index=True)


def _write(store: TableStore, docs: pd.DataFrame, domains: list[str], cfg: SampleMixConfig) -> pd.DataFrame:
    """Rewrite ``tune_docs`` and ``tune`` from the per-document rows; return the per-candidate summary."""
    marked, summary = mark_choice(docs, domains, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed)
    spark = store.spark
    store.write(spark.createDataFrame(docs.assign(max_repeats=docs["max_repeats"].astype(float)), _DOC_SCHEMA),
                "tune_docs")
    store.write(spark.createDataFrame(marked, _SCHEMA), "tune")
    return summary


_SCHEMA = ("alpha double, tau double, max_repeats double, seed long, domain string, docs long, bytes long, "
           "bpb double, chosen boolean, tied boolean, preset string, budget_bytes long, holdout string, "
           "fingerprint string")
_DOC_SCHEMA = ("alpha double, tau double, max_repeats double, seed long, doc_id string, domain string, bytes long, "
               "bits double, preset string, budget_bytes long, holdout string, fingerprint string")


def _finish(summary: pd.DataFrame, out: Path) -> pd.DataFrame:
    plot(summary, out / "tune.png")
    summary.to_csv(out / "tune.csv", index=False)
    best = summary[summary["chosen"]].iloc[0]
    cap = None if pd.isna(best["max_repeats"]) else float(best["max_repeats"])
    choice = Candidate(float(best["alpha"]), float(best["tau"]), cap)
    seeds = int(summary["seeds"].min())
    log.info("tune: held-out macro bits per byte per setting over %d documents (seed mean, 95%% interval over "
             "documents%s)\n%s\nchosen: %s  (%d other settings tied: their paired interval against it includes 0); "
             "plot %s", int(summary["docs"].iat[0]),
             intervals.interval_sources(seeds), summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"),
             choice.as_set(),
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
