"""``samplemix tune``: choose alpha, tau (and the repetition cap) by the held-out loss of proxies. Driver side.

For every candidate setting the counts are computed from the stored scores, as
``sweep`` does, and written to the small ``tune_counts`` table (candidate,
doc_id, count); no output table is written. On a corpus above
``tune.sample_docs`` documents the counts are drawn on a hashed sample of that
size (``search_sample``), the budget scaled with it. Each proxy reads the documents
table's files and those counts (``stream.Copies``), which gives exactly the
stream the candidate's ``output`` table would give. Every candidate's proxies
get the same preset, byte budget and seeds.

Every proxy is scored on every held-out document (``holdout``); the bits per
document go to ``tune_docs`` and the per-domain figures to ``tune``, after every
proxy, so a killed run resumes without retraining finished proxies. The macro
``_all`` is recomputed from the per-document rows with the current
``evaluate.domains`` on every run, never reused.

Choosing and reporting rest on different documents (``holdout.halves``). On the
``select`` half the candidate with the lowest seed-mean macro bpb is chosen,
each candidate's probability of being best is estimated (``p_best``: documents
resampled, training noise drawn from the pooled seed variance), and every other
candidate is compared with the chosen one at a level that holds over every pair
(``intervals.comparisons_level``): ``tied`` when that interval holds 0. With one
seed per candidate there is no seed variance to draw from: ``p_best`` is NaN and
every comparison is undetermined, neither tied nor worse. The
figures reported are the ``report`` half's. Then the chosen candidate and the
runner-up are trained again on fresh seeds (``tune.confirm_seeds``), and their
macro on the ``report`` half, with the paired difference between them, is the
figure to quote: neither the documents nor the training luck it won on are in it.

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

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig, build_config
from samplemix_spark.errors import InputError
from samplemix_spark.evaluation import evaluate as ev
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation import intervals, proxy_cache
from samplemix_spark.evaluation.plots import MACRO, save_figure
from samplemix_spark.evaluation.search_sample import search_input
from samplemix_spark.evaluation.swarm import (by_candidate, counted_jobs, fresh_seeds, proxy_fingerprint,
                                              train_recording)
from samplemix_spark.mixing.weights import compute_stats, quality_view, scored_documents, weights_frame
from samplemix_spark.models.proxy_presets import PRESETS
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
KEY = ["alpha", "tau", "max_repeats", "seed"]
TUNE_COLUMNS = [*KEY, "domain", "docs", "bytes", "bpb", "chosen", "tied", "p_best", "preset", "budget_bytes", "holdout",
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


def _labels(rows: pd.DataFrame) -> list[str]:
    """``_label`` of every row (a candidate's run name in the statistics)."""
    return [_label({"alpha": a, "tau": t, "max_repeats": c})
            for a, t, c in zip(rows["alpha"], rows["tau"], rows["max_repeats"])]


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


def mark_choice(docs: pd.DataFrame, domains: list[str], samples: int = intervals.SAMPLES, seed: int = 0,
                confirm_seeds: tuple = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``tune`` rows with ``chosen``, ``tied`` and ``p_best`` set, and the per-candidate summary.

    The choice is made on the ``select`` half of the held-out documents with the
    search seeds (every seed not in ``confirm_seeds``): the lowest seed-mean macro
    bpb, each candidate's probability of being best, and the others compared with
    the chosen one at the level that holds over every pair
    (``intervals.comparisons_level``). The figures reported are the ``report``
    half's; where the chosen candidate and the runner-up were trained again on
    ``confirm_seeds``, those fresh proxies on the ``report`` half confirm the choice
    (``confirmation``).
    """
    setting = ["alpha", "tau", "max_repeats"]
    docs = docs.assign(max_repeats=docs["max_repeats"].astype(float))
    docs = docs.assign(run=_labels(docs))
    searched = docs[~docs["seed"].isin(confirm_seeds)]
    summary = searched.drop_duplicates(setting)[[*setting, "run"]].reset_index(drop=True)
    runs = list(summary["run"])
    select = _half_scores(searched, "select", domains, samples, seed)
    summary["select_bpb"] = [macro_of(select, run) for run in runs]
    best = runs[int(np.argmin(summary["select_bpb"].to_numpy()))]
    p_best = intervals.probability_best(select.scores, runs, select.strata, select.noise, seed)
    summary["p_best"] = [p_best[run] for run in runs]
    level = intervals.comparisons_level(len(runs))
    differences = {run: intervals.paired_difference(select.scores, run, best, select.strata, select.noise, level)
                   for run in runs if run != best}
    summary["chosen"] = summary["run"] == best
    summary["tied"] = [run != best and differences[run].word == "tied" for run in runs]
    summary["vs_chosen"] = [differences[run].describe() if run != best else "-" for run in runs]
    report = _half_scores(searched, "report", domains, samples, seed)
    figures = [intervals.run_interval(report.scores, run, report.strata, report.noise) for run in runs]
    summary[["report_bpb", "report_lo", "report_hi"]] = pd.DataFrame(figures, index=summary.index)
    summary["seeds"] = [len(select.scores.per_seed[run]) for run in runs]
    summary["select_docs"], summary["report_docs"] = select.n_docs, report.n_docs
    summary["confirmed"] = confirmation(docs, summary, confirm_seeds, domains, samples, seed)
    flags = summary[setting + ["chosen", "tied", "p_best"]]
    marked = domain_rows(docs.drop(columns="run"), domains).merge(flags, on=setting, how="left")
    return marked[TUNE_COLUMNS], summary.drop(columns="run")


@dataclass(frozen=True)
class HalfScores:
    """One held-out half's per-document scores of some runs, with its bootstrap strata and pooled seed noise."""

    scores: intervals.Scores
    strata: list
    noise: intervals.SeedNoise

    @property
    def n_docs(self) -> int:
        return int(sum(len(s.positions) for s in self.strata))


def _half_scores(docs: pd.DataFrame, half: str, domains: list[str], samples: int, seed: int) -> HalfScores:
    scores = intervals.Scores.from_frame(held.in_half(docs, half))
    strata = intervals.strata(scores.domains, domains, samples, seed)
    return HalfScores(scores, strata, intervals.seed_noise(scores, strata))


def macro_of(half: HalfScores, run: str) -> float:
    """A run's seed-mean macro bpb on a half, as scored."""
    return intervals.macro(half.scores.bits[run], half.scores.bytes, half.strata, resampled=False)


def runner_up(summary: pd.DataFrame) -> Optional[str]:
    """The candidate with the second lowest macro bpb on the select half (None with one candidate)."""
    others = summary[~summary["chosen"]]
    return None if others.empty else str(others.loc[others["select_bpb"].idxmin(), "run"])


def confirmation(docs: pd.DataFrame, summary: pd.DataFrame, confirm_seeds: tuple, domains: list[str],
                 samples: int, seed: int) -> list[str]:
    """Per candidate, its fresh proxies' macro bpb on the report half with its interval, and for the chosen one
    the paired difference from the runner-up's fresh proxies; ``-`` where there are none.

    Fresh seeds carry none of the training luck that made the chosen candidate
    win, and the report half none of the documents it won on, so this is the
    figure to quote for the choice.
    """
    chosen = str(summary.loc[summary["chosen"], "run"].iat[0])
    second = runner_up(summary)
    fresh = docs[docs["seed"].isin(confirm_seeds) & docs["run"].isin([chosen, second])]
    if fresh.empty or set(fresh["run"]) != {chosen, second} - {None}:
        return ["-"] * len(summary)
    report = _half_scores(fresh, "report", domains, samples, seed)
    text = {}
    for run in report.scores.bits:
        bpb, lo, hi = intervals.run_interval(report.scores, run, report.strata, report.noise)
        text[run] = f"{bpb:.4f} [{lo:.4f}, {hi:.4f}] on seeds {sorted(report.scores.per_seed[run])}"
    if second is not None:
        difference = intervals.paired_difference(report.scores, chosen, second, report.strata, report.noise)
        text[chosen] += f"; minus the runner-up: {difference.describe()}"
    return [text.get(run, "-") for run in summary["run"]]


def plot(summary: pd.DataFrame, path: Path) -> None:
    """Macro bpb on the report half (seed mean, 95% interval as error bars) against alpha, one line per tau
    and cap."""
    def draw(ax):
        for (tau, cap), rows in summary.groupby(["tau", "max_repeats"], dropna=False):
            rows = rows.sort_values("alpha")
            label = f"tau={tau:g}" + ("" if pd.isna(cap) else f", cap={cap:g}")
            errors = [(rows["report_bpb"] - rows["report_lo"]).to_numpy(),
                      (rows["report_hi"] - rows["report_bpb"]).to_numpy()]
            ax.errorbar(rows["alpha"], rows["report_bpb"], yerr=errors, marker="o", capsize=3, label=label)
        ax.set_xlabel("alpha")
        ax.set_ylabel("held-out bits per byte (macro)")
        ax.set_title("Proxy loss per setting on the report half (mean over seeds, 95% interval)")
        ax.legend(fontsize=7)

    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(path, draw)


def tune(spark: SparkSession, cfg: SampleMixConfig, candidates: list[Candidate], out: Path) -> pd.DataFrame:
    """Train proxies on every candidate and seed, confirm the choice on fresh seeds, write ``tune``,
    ``tune_docs`` and the plot; return the summary."""
    if not candidates:
        raise InputError("tune needs at least one candidate setting")
    store = TableStore(spark, cfg.tables)
    holdout = held.required_fingerprint(store, "tune")
    spec = ev.held_out_spec(cfg, store)
    domains = ev.chosen_domains(cfg, spec)
    budget = cfg.evaluate.budget_bytes or PRESETS[cfg.evaluate.preset].budget_bytes
    searched = search_input(store, cfg, scored_documents(store, quality_view(cfg)))
    fingerprint = proxy_fingerprint(cfg, store, holdout, SEARCHED, searched.fingerprint_parts())
    fresh = fresh_seeds(cfg)
    wanted = {_key(c, seed) for c in candidates for seed in (*cfg.evaluate.seeds, *fresh)}
    done = _done(store, fingerprint, wanted)
    store.write(by_candidate(candidate_counts(searched.scored, searched.mixing, candidates, store.hash_scheme)),
                "tune_counts")
    if cfg.evaluate.preset == "cpu":
        log.info("tune: %s", CPU_PRESET_NOTE)
    log.info("tune: held-out documents scored: %s; the choice is made on the select half and reported on the "
             "report half", ev.rests_on(spec))
    search = _Search(spark, cfg, store, candidates, spec, budget,
                     {"docs": done[DOC_COLUMNS], "summary": None, "domains": domains, "fresh": fresh,
                      "stamp": {"preset": cfg.evaluate.preset, "budget_bytes": budget, "holdout": holdout,
                                "fingerprint": fingerprint}})
    search.train(tuple(cfg.evaluate.seeds), list(range(len(candidates))), "tune")
    if fresh:
        summary = search.summary()
        pair = [str(summary.loc[summary["chosen"], "run"].iat[0]), runner_up(summary)]
        chosen = [i for i, c in enumerate(candidates) if _label(_as_row(c)) in pair]
        search.train(fresh, chosen, "tune: confirming the choice on fresh seeds")
    return _finish(search.summary(), out)


def _as_row(candidate: Candidate) -> dict:
    return {"alpha": candidate.alpha, "tau": candidate.tau,
            "max_repeats": np.nan if candidate.max_repeats is None else candidate.max_repeats}


@dataclass
class _Search:
    """Trains a search's missing proxies and rewrites its tables after each one (driver side)."""

    spark: SparkSession
    cfg: SampleMixConfig
    store: TableStore
    candidates: list
    spec: held.HeldOutSpec
    budget: int
    state: dict

    def train(self, seeds: tuple, chosen: list[int], what: str) -> None:
        finished = set(_row_keys(self.state["docs"]))
        names = [f"alpha={c.alpha:g} tau={c.tau:g}" for c in self.candidates]
        jobs, labels = counted_jobs(self.cfg, self.store, "tune_counts", names,
                                    lambda i, seed: _key(self.candidates[i], seed) in finished, self.budget,
                                    self.spec, seeds, chosen)
        executor = ev.executor(self.cfg)
        log.info(proxy_cache.plan_line(what, len(chosen) * len(seeds), jobs, executor))
        found = {job: (self.candidates[i], seed) for job, (i, seed) in labels.items()}

        def record(scores: pd.DataFrame) -> None:
            new = _document_rows(scores, found).assign(**self.state["stamp"])[DOC_COLUMNS]
            docs = self.state["docs"]
            self.state["docs"] = pd.concat([docs, new], ignore_index=True) if len(docs) else new
            self.state["summary"] = _write(self.store, self.state["docs"], self.state["domains"], self.cfg,
                                           self.state["fresh"])

        train_recording(self.store, executor, jobs, record)

    def summary(self) -> pd.DataFrame:
        if self.state["summary"] is None:  # every proxy was stored already
            self.state["summary"] = _write(self.store, self.state["docs"], self.state["domains"], self.cfg,
                                           self.state["fresh"])
        return self.state["summary"].assign(run=lambda t: _labels(t))


def _document_rows(scores: pd.DataFrame, labels: dict) -> pd.DataFrame:
    """The final step's per-document bits of each job, labelled with its candidate and seed."""
    last = scores[scores["step"] == scores.groupby("job")["step"].transform("max")]
    rows = []
    for job, group in last.groupby("job"):
        candidate, seed = labels[job]
        rows.append(group[["doc_id", "domain", "bytes", "bits"]].assign(
            alpha=candidate.alpha, tau=candidate.tau, max_repeats=candidate.max_repeats, seed=seed))
    return pd.concat(rows, ignore_index=True)


def _write(store: TableStore, docs: pd.DataFrame, domains: list[str], cfg: SampleMixConfig,
           fresh: tuple) -> pd.DataFrame:
    """Rewrite ``tune_docs`` and ``tune`` from the per-document rows; return the per-candidate summary."""
    marked, summary = mark_choice(docs, domains, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed, fresh)
    spark = store.spark
    store.write(spark.createDataFrame(docs.assign(max_repeats=docs["max_repeats"].astype(float)), _DOC_SCHEMA),
                "tune_docs")
    store.write(spark.createDataFrame(marked, _SCHEMA), "tune")
    return summary


_SCHEMA = ("alpha double, tau double, max_repeats double, seed long, domain string, docs long, bytes long, "
           "bpb double, chosen boolean, tied boolean, p_best double, preset string, budget_bytes long, holdout string, "
           "fingerprint string")
_DOC_SCHEMA = ("alpha double, tau double, max_repeats double, seed long, doc_id string, domain string, bytes long, "
               "bits double, preset string, budget_bytes long, holdout string, fingerprint string")


def _candidate(row) -> Candidate:
    cap = None if pd.isna(row["max_repeats"]) else float(row["max_repeats"])
    return Candidate(float(row["alpha"]), float(row["tau"]), cap)


def _finish(summary: pd.DataFrame, out: Path) -> pd.DataFrame:
    summary = summary.drop(columns="run", errors="ignore")
    plot(summary, out / "tune.png")
    summary.to_csv(out / "tune.csv", index=False)
    best = summary[summary["chosen"]].iloc[0]
    choice = _candidate(best)
    table = summary.drop(columns=["confirmed", "vs_chosen"])
    words = summary.loc[~summary["chosen"], "vs_chosen"].str.split().str[0]
    p_best = float(best["p_best"])
    level = intervals.comparisons_level(len(summary))
    confirmed = summary.loc[summary["confirmed"] != "-"]
    lines = [f"  {_candidate(r).as_set()}: {r['confirmed']}" for _, r in confirmed.iterrows()]
    log.info("tune: held-out macro bits per byte per setting (seed mean); chosen on the select half (%d documents, "
             "select_bpb), reported on the report half (%d documents, report_bpb with its 95%% interval over "
             "documents%s)\n%s\nagainst the chosen setting, each at the %.4f level that holds over every pair:\n%s\n"
             "chosen: %s  (probability of being best %s; other settings: %d worse, %d tied, %d undetermined)"
             "\n%s\nplot %s",
             int(summary["select_docs"].iat[0]), int(summary["report_docs"].iat[0]),
             intervals.interval_sources(int(summary["seeds"].min())),
             table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), level,
             "\n".join(f"  {_candidate(r).as_set()}: {r['vs_chosen']}"
                       for _, r in summary[~summary["chosen"]].iterrows()) or "  (no other setting)",
             choice.as_set(), "undefined with one seed per setting" if np.isnan(p_best) else f"{p_best:.2f}",
             int((words == "worse").sum()), int((words == "tied").sum()), int((words == "undetermined").sum()),
             "confirmed on fresh seeds, report half:\n" + "\n".join(lines) if lines
             else "not confirmed on fresh seeds (tune.confirm_seeds: 0)", out / "tune.png")
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
