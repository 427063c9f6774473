"""``samplemix evaluate RUN [RUN ...]``: judge finished mixes by the proxies they train. Driver side.

For each run and seed a fresh byte-level proxy (``proxy``) trains on the run's
output (``stream``) for the same byte budget, and is scored on every held-out
document (``holdout``): the per-step subset at regular steps, all documents at
the final step. The proxies run here one after another, or as Spark tasks
(``swarm``). Three tables come out:

- ``proxy_eval``: bits per byte per run, seed, step and domain, with ``scope``
  ``subset`` (the per-step documents, every evaluation step: the curves) or
  ``all`` (every scored document, final step, with its 95% interval
  ``bpb_lo``/``bpb_hi``), or ``select``/``report`` (each held-out half, final
  step, with its interval; ``holdout.halves``); domain ``_all`` is the macro over
  ``macro_domains``;
  ``docs`` and ``bytes`` say what each figure rests on.
- ``proxy_eval_docs``: the final step's bits per scored document.
- ``proxy_eval_step_docs``: the per-step documents' bits at every evaluation step.

The summary, on the ``report`` half of the scored documents, gives each run's
final bits per byte with its interval, a paired
verdict against natural proportions (``intervals``), and the paper's efficiency
measure with its interval: the steps a run needs on the per-step documents to
reach the natural-proportions run's final loss there.

Every proxy's rows are also kept in ``proxy_eval_curves`` under a fingerprint
of what decides them (``proxy_cache``): a rerun, or a study that adds runs or
seeds, trains only the proxies that are missing, and a killed evaluation
resumes at the next proxy.

Runs are only compared on the same held-out set: every mix records the
fingerprint of the held-out set its documents were split from, and runs with
different fingerprints, or none, are refused.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig, TablesConfig
from samplemix_spark.errors import InputError
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation import intervals, proxy_cache
from samplemix_spark.evaluation.plots import MACRO, final_domain_bars, learning_curves, save_figure
from samplemix_spark.evaluation.swarm import ProxyJob, by_candidate, candidate_bytes, output_bytes, scores_fingerprint
from samplemix_spark.mixing.weights import MixStats, MixStep, quality_view, read_stats
from samplemix_spark.models.proxy_presets import PRESETS
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.files import snapshot_files

log = logging.getLogger(__name__)
NATURAL = "domain:natural"
PROXY_EVAL_COLUMNS = ["run", "warehouse", "method", "alpha", "tau", "seed", "step", "tokens_seen", "domain", "scope",
                      "docs", "bytes", "bpb", "bpb_lo", "bpb_hi", "preset", "epochs", "macro_domains"]
DOC_COLUMNS = ["run", "seed", "doc_id", "domain", "bytes", "bits"]
STEP_DOC_COLUMNS = ["run", "seed", "step", "doc_id", "domain", "bytes", "bits"]


@dataclass
class Run:
    name: str
    store: TableStore
    stats: MixStats
    # A mix never written out (the natural reference): its proxies read the documents and ``reference_counts``.
    counted: bool = False

    def inputs(self) -> TableStore:
        """The warehouse this run's documents and held-out set came from (where evaluations of it go)."""
        if not self.stats.inputs:
            return self.store
        return TableStore(self.store.spark, dataclasses.replace(self.store.cfg, warehouse=self.stats.inputs,
                                                                catalog=None, prefix=""))

    def proxy_files(self) -> tuple[tuple, tuple]:
        """(files, counts files) this run's proxies read: its output's files; for a counted run the documents'
        files and its counts' files (``stream.Copies``), which give the stream an output would."""
        if not self.counted:
            return tuple(snapshot_files(self.store, "output")), ()
        return tuple(snapshot_files(self.inputs(), "documents")), tuple(snapshot_files(self.store, REFERENCE_COUNTS))

    def copies_bytes(self) -> int:
        """Every training copy's bytes (one aggregate)."""
        if not self.counted:
            return output_bytes(self.store)
        return candidate_bytes(self.store, REFERENCE_COUNTS, self.inputs().read("documents")).get(0, 0)

    @property
    def method(self) -> str:
        return f"domain:{self.stats.weights_source}" if self.stats.method == "domain" else self.stats.method


def warehouse_of(store: TableStore) -> str:
    """The run's warehouse as an absolute location, so runs named by relative paths still match."""
    return store.location("mix_run").rsplit("/", 1)[0]


def open_run(spark: SparkSession, tables: TablesConfig, warehouse: str, name: str) -> Run:
    store = TableStore(spark, dataclasses.replace(tables, warehouse=warehouse, catalog=None, prefix=""))
    return Run(name, store, read_stats(store))


REFERENCE_PREFIX = "reference_natural_"
REFERENCE_COUNTS = "reference_counts"


def natural_mixing(cfg: SampleMixConfig, run: Run) -> MixingConfig:
    """The mixing settings of ``run``'s natural-proportions reference: domain weights by size, same budget."""
    return dataclasses.replace(cfg.mixing, method="domain", target_tokens=run.stats.target_tokens,
                               target_fraction=None, max_repeats=None, export_format=None, export_path=None,
                               domain_weights=dataclasses.replace(cfg.mixing.domain_weights, source="natural"))


def natural_reference(spark: SparkSession, cfg: SampleMixConfig, run: Run) -> Run:
    """The run's documents mixed in natural domain proportions with the same token budget, as counts only.

    Its ``weights`` and ``mix_run`` go to the evaluation's warehouse under the
    prefix ``reference_natural_``, and the selected documents' (candidate 0,
    doc_id, count) to ``reference_natural_reference_counts``; no ``output`` is
    written. Its proxies read the documents' files and these counts, the stream
    its output would give (``stream.Copies``, as ``tune`` does), so the reference
    costs one count per document, not a second copy of the mix.
    """
    mixing = natural_mixing(cfg, run)
    store = TableStore(spark, dataclasses.replace(cfg.tables, prefix=f"{cfg.tables.prefix}{REFERENCE_PREFIX}"))
    log.info("evaluate: counting the natural-proportions reference of %s into %s", run.name,
             store.location(REFERENCE_COUNTS))
    MixStep(dataclasses.replace(cfg, mixing=mixing)).run(spark, store, inputs=run.store, output=False)
    selected = store.read("weights").filter(F.col("count") > 0)
    store.write(by_candidate(selected.select(F.lit(0).alias("candidate"), "doc_id", "count")), REFERENCE_COUNTS)
    return Run("natural", store, read_stats(store), counted=True)


def check_holdout(runs: list[Run]) -> TableStore:
    """The store whose held-out table every run was mixed against; refuses runs that differ."""
    prints = {run.name: run.stats.holdout for run in runs}
    for name, mark in prints.items():
        if mark in ("", "none") or mark.startswith("0:"):
            raise InputError(f"run {name!r} has no held-out set: set ingest.holdout_fraction (or "
                             "ingest.holdout_docs or ingest.holdout_sources) and rerun ingest and the stages after it")
    if len(set(prints.values())) > 1:
        raise InputError("the runs were mixed against different held-out sets, so their losses cannot be "
                         f"compared: {', '.join(f'{n} {p}' for n, p in prints.items())}")
    for run in runs:
        for store in (run.store, *([run.inputs()] if run.stats.inputs else [])):
            if held.fingerprint(store) == run.stats.holdout:
                return store
    raise InputError("no run's warehouse holds the held-out set its mix recorded: the held-out table changed "
                     "after the mix; rerun `samplemix mix`")


def held_out_spec(cfg: SampleMixConfig, store: TableStore) -> held.HeldOutSpec:
    """The held-out documents of ``store`` as this config scores them, written once to the ``holdout_scored``
    table of ``cfg``'s warehouse (where the evaluation's own tables go)."""
    ev = cfg.evaluate
    return held.spec(store, ev.doc_bytes, ev.max_eval_docs, ev.step_docs, TableStore(store.spark, cfg.tables))


def chosen_domains(cfg: SampleMixConfig, spec: held.HeldOutSpec) -> list[str]:
    """The held-out domains of the macro average: ``evaluate.domains``, or all of them."""
    present = held.load(spec)
    if not present:
        raise InputError("the held-out table holds no documents with text: nothing to score proxies on")
    unknown = sorted(set(cfg.evaluate.domains) - set(present))
    if unknown:
        raise InputError(f"evaluate.domains names {', '.join(unknown)}, which the held-out set does not hold; "
                         f"held-out domains: {', '.join(sorted(present))}")
    return sorted(cfg.evaluate.domains or present)


def rests_on(spec: held.HeldOutSpec) -> str:
    """One line: per domain, how many documents and bytes its final figure rests on (and at every step)."""
    return "; ".join(f"{domain} {len(docs.doc_ids):,} docs, {docs.n_bytes():,} bytes ({docs.n_step:,} per step)"
                     for domain, docs in held.load(spec).items())


def _jobs(cfg: SampleMixConfig, runs: list[Run], spec: held.HeldOutSpec) -> list[ProxyJob]:
    ev = cfg.evaluate
    budget = ev.budget_bytes or PRESETS[ev.preset].budget_bytes
    files = {run.name: run.proxy_files() for run in runs}
    counted = {run.name: 0 if run.counted else -1 for run in runs}
    return [ProxyJob(i, run.name, files[run.name][0], seed, ev.preset, budget, ev.threads, ev.device, spec,
                     files[run.name][1], counted[run.name])
            for i, (run, seed) in enumerate((r, s) for r in runs for s in ev.seeds)]


def _with_copies_bytes(runs: list[Run]) -> Callable[[list[ProxyJob]], list[ProxyJob]]:
    """Gives jobs about to train their run's output bytes: one aggregate per run that has a proxy to train."""
    by_name = {run.name: run for run in runs}

    def prepare(todo: list[ProxyJob]) -> list[ProxyJob]:
        sizes = {name: by_name[name].copies_bytes() for name in sorted({job.run for job in todo})}
        return [dataclasses.replace(job, copies_bytes=sizes[job.run]) for job in todo]

    return prepare


def document_tables(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(final-step bits per document, per-step documents' bits at every step) from labelled trainer rows."""
    final = scores[scores["step"] == scores.groupby(["run", "seed"])["step"].transform("max")]
    return (final[DOC_COLUMNS].reset_index(drop=True),
            scores[scores["subset"]][STEP_DOC_COLUMNS].reset_index(drop=True))


FINAL_SCOPES = ("all", *held.HALVES)


def curve_rows(scores: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """Bits per byte per (run, seed, step, domain, scope) with its docs and bytes; ``_all`` over ``domains``.

    Scopes: ``subset`` (the per-step documents, every step), and at the final step
    ``all`` (every scored document) and each held-out half (``select``, ``report``).
    """
    keys = ["run", "seed", "step", "tokens_seen", "domain"]
    final = scores[scores["step"] == scores.groupby(["run", "seed"])["step"].transform("max")]
    half = held.halves(final)
    parts = []
    for scope, rows in (("subset", scores[scores["subset"]]), ("all", final),
                        *((name, final[half == name]) for name in held.HALVES)):
        sums = rows.groupby(keys, as_index=False).agg(docs=("doc_id", "size"), bytes=("bytes", "sum"),
                                                      bits=("bits", "sum"))
        parts.append(sums.assign(scope=scope, bpb=sums["bits"] / sums["bytes"]).drop(columns="bits"))
    table = pd.concat(parts, ignore_index=True)
    chosen = table[table["domain"].isin(domains)]
    macro = chosen.groupby(["run", "seed", "step", "tokens_seen", "scope"], as_index=False).agg(
        docs=("docs", "sum"), bytes=("bytes", "sum"), bpb=("bpb", "mean"))
    return pd.concat([table, macro.assign(domain=MACRO)], ignore_index=True)


def with_intervals(table: pd.DataFrame, docs: pd.DataFrame, domains: list[str], samples: int,
                   seed: int) -> pd.DataFrame:
    """``bpb_lo``/``bpb_hi`` on the final rows (``all``, ``select``, ``report``): each seed's document-bootstrap
    interval on the scope's documents."""
    bounds = {}
    for scope in FINAL_SCOPES:
        scores = intervals.Scores.from_frame(held.in_half(docs, None if scope == "all" else scope))
        columns = [(run, s) for run, seeds in scores.per_seed.items() for s in seeds]
        bits = np.column_stack([scores.per_seed[run][s] for run, s in columns])
        ratios = intervals.domain_ratios(bits, scores.bytes, intervals.strata(
            scores.domains, scores.domain_names(), samples, seed))
        ratios[MACRO] = np.mean([ratios[d] for d in domains], axis=0)
        bounds.update({(scope, run, s, domain): intervals.interval(draws[:, j])
                       for domain, draws in ratios.items() for j, (run, s) in enumerate(columns)})
    keys = list(zip(table["scope"], table["run"], table["seed"].astype(int), table["domain"]))
    table["bpb_lo"] = [bounds[k][0] if k in bounds else np.nan for k in keys]
    table["bpb_hi"] = [bounds[k][1] if k in bounds else np.nan for k in keys]
    return table


def proxy_eval_frame(scores: pd.DataFrame, runs: list[Run], domains: list[str], cfg: SampleMixConfig) -> pd.DataFrame:
    """The ``proxy_eval`` rows from labelled trainer rows (run, seed, ...): curves, final figures, intervals."""
    docs, _ = document_tables(scores)
    table = with_intervals(curve_rows(scores, domains), docs, domains, cfg.evaluate.bootstrap,
                           cfg.evaluate.bootstrap_seed)
    epochs = scores.groupby("run")["epochs"].first()
    info = pd.DataFrame([(r.name, warehouse_of(r.store), r.method, r.stats.alpha, r.stats.tau) for r in runs],
                        columns=["run", "warehouse", "method", "alpha", "tau"])
    table = table.merge(info, on="run").assign(preset=cfg.evaluate.preset, epochs=lambda t: t["run"].map(epochs),
                                               macro_domains=",".join(domains))
    return table[PROXY_EVAL_COLUMNS].sort_values(["run", "seed", "scope", "step", "domain"]).reset_index(drop=True)


@dataclass
class Evaluation:
    """The three tables of one proxy evaluation."""

    proxy_eval: pd.DataFrame
    docs: pd.DataFrame
    step_docs: pd.DataFrame

    @classmethod
    def read(cls, store: TableStore) -> Optional["Evaluation"]:
        """The stored evaluation, or None when the warehouse has none (or one from before per-document scoring)."""
        frames = [store.read_if_exists(t) for t in ("proxy_eval", "proxy_eval_docs", "proxy_eval_step_docs")]
        if any(f is None for f in frames) or "scope" not in frames[0].columns:
            return None
        return cls(*(f.toPandas() for f in frames))

    def domains(self) -> list[str]:
        return str(self.proxy_eval["macro_domains"].iat[0]).split(",")

    def for_warehouses(self, names: dict[str, str]) -> "Evaluation":
        """Only the runs mixed into these warehouses, renamed: warehouse -> name."""
        runs = (self.proxy_eval[self.proxy_eval["warehouse"].isin(names)]
                .drop_duplicates("run").set_index("run")["warehouse"].map(names))

        def pick(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["run"].isin(runs.index)].assign(run=lambda t: t["run"].map(runs))
        return Evaluation(pick(self.proxy_eval), pick(self.docs), pick(self.step_docs))


def _steps_to_natural(step_docs: pd.DataFrame, natural: str, domains: list[str], samples: int,
                      seed: int) -> dict[str, tuple]:
    """Per run: (steps, lo, hi, final step, evaluations) to reach natural's final per-step-docs macro."""
    mean = step_docs.groupby(["domain", "doc_id", "run", "step"])["bits"].mean().unstack(["run", "step"])
    size = step_docs.drop_duplicates(["domain", "doc_id"]).set_index(["domain", "doc_id"])["bytes"]
    mean = mean[mean.index.get_level_values("domain").isin(domains)]
    size = size.reindex(mean.index).to_numpy(dtype=float)
    strata = intervals.strata(mean.index.get_level_values("domain").to_numpy(), domains, samples, seed)
    runs = sorted(set(mean.columns.get_level_values("run")))
    steps = {run: np.array(sorted(mean[run].columns)) for run in runs}
    curves = {run: mean[run][list(steps[run])].to_numpy(dtype=float) for run in runs}
    target = intervals.macro_columns(curves[natural], size, strata)[:, -1]
    target_point = intervals.macro_columns(curves[natural], size, strata, resampled=False)[-1]
    out = {}
    for run in runs:
        draws = intervals.steps_to_reach(intervals.macro_columns(curves[run], size, strata), steps[run], target)
        point = intervals.steps_to_reach(intervals.macro_columns(curves[run], size, strata, False), steps[run],
                                         target_point)[0]
        out[run] = (point, *intervals.step_interval(draws), int(steps[run][-1]), len(steps[run]))
    return out


def _steps_text(value: float) -> str:
    return "not reached" if not np.isfinite(value) else f"{int(value)}"


def _speedup_text(final: int, point: float, lo: float, hi: float) -> str:
    def ratio(v: float) -> str:
        return f"{final / v:.2f}x" if np.isfinite(v) and v > 0 else "-"
    return f"{ratio(point)} [{ratio(hi)}, {ratio(lo)}]"


def summarise(evaluation: Evaluation, samples: int = intervals.SAMPLES, seed: int = 0,
              domains: Optional[list[str]] = None, half: Optional[str] = "report") -> pd.DataFrame:
    """One row per run: final bpb per domain, macro with its 95% interval, docs, and against natural proportions.

    Every figure rests on the ``report`` half of the scored documents (``half``;
    None for all of them), so a setting chosen on the ``select`` half is never
    judged on the documents it was chosen on. ``domains`` recomputes the macro over
    other held-out domains (another view of the same proxies, no training); by
    default the evaluation's own.
    """
    domains = domains or evaluation.domains()
    docs = held.in_half(evaluation.docs, half)
    last = evaluation.proxy_eval[evaluation.proxy_eval["scope"] == "all"]
    sums = docs.groupby(["run", "seed", "domain"])[["bits", "bytes"]].sum()
    per_domain = (sums["bits"] / sums["bytes"]).groupby(["run", "domain"]).mean().unstack("domain")
    scores = intervals.Scores.from_frame(docs)
    strata = intervals.strata(scores.domains, domains, samples, seed)
    noise = intervals.seed_noise(scores, strata)
    figures = pd.DataFrame([intervals.run_interval(scores, run, strata, noise) for run in per_domain.index],
                           index=per_domain.index, columns=["macro", "macro_lo", "macro_hi"])
    summary = per_domain.join(figures).assign(docs=sum(len(s.positions) for s in strata),
                                              seeds=docs.groupby("run")["seed"].nunique(), half=half or "all")
    summary.insert(0, "method", last.groupby("run")["method"].first())
    natural = _reference_run(last)
    if natural is not None:
        reach = _steps_to_natural(held.in_half(evaluation.step_docs, half), natural, domains, samples, seed)
        summary["steps_to_natural"] = [f"{_steps_text(reach[r][0])} [{_steps_text(reach[r][1])}, "
                                       f"{_steps_text(reach[r][2])}]" for r in summary.index]
        summary["speedup"] = [_speedup_text(reach[r][3], *reach[r][:3]) for r in summary.index]
        summary["evaluations"] = [reach[r][4] for r in summary.index]
        # The verdict first, beside the run's name: the table is wider than a terminal.
        summary.insert(0, "vs_natural", [intervals.paired_difference(scores, run, natural, strata, noise).describe()
                                         if run != natural else "-" for run in summary.index])
    return summary


def write_figures(proxy_eval: pd.DataFrame, out: Path) -> list[str]:
    """Learning curves and final per-domain bars as PNGs under ``out``; returns the page fragments."""
    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(out / "learning_curves.png", learning_curves(proxy_eval)),
            save_figure(out / "domain_bpb.png", final_domain_bars(proxy_eval, _reference_run(proxy_eval)))]


def _reference_run(proxy_eval: pd.DataFrame) -> str | None:
    """The run that mixes by natural proportions, when the evaluation has one."""
    natural = proxy_eval.loc[proxy_eval["method"] == NATURAL, "run"].unique()
    return str(natural[0]) if len(natural) else None


def executor(cfg: SampleMixConfig) -> str:
    """``local`` or ``spark``: where this config's proxies train."""
    from samplemix_spark.engine import resolve_engine_kind

    if cfg.evaluate.executor != "auto":
        return cfg.evaluate.executor
    # The embedded engine runs Python UDFs in the driver's process: tasks would only add overhead.
    return "local" if resolve_engine_kind(cfg.engine.kind) == "embedded" else "spark"


def labelled(scores: pd.DataFrame, jobs: list[ProxyJob]) -> pd.DataFrame:
    """Trainer rows with their job's run and seed."""
    by_job = pd.DataFrame([(j.job, j.run, j.seed) for j in jobs], columns=["job", "run", "seed"])
    return scores.merge(by_job, on="job")


def evaluate(spark: SparkSession, cfg: SampleMixConfig, warehouses: list[str], names: Optional[list[str]] = None,
             reference: bool = True) -> pd.DataFrame:
    """Train and score the proxies of every run; write the evaluation tables and figures; return the summary."""
    names = names or [Path(w).name or w for w in warehouses]
    if len(names) != len(warehouses) or len(set(names)) != len(names):
        raise InputError(f"--names needs one distinct name per run; got {names} for {len(warehouses)} runs")
    out = Path(cfg.evaluate.out)
    runs = [open_run(spark, cfg.tables, w, n) for w, n in zip(warehouses, names)]
    if reference and len(runs) == 1:
        runs.append(natural_reference(spark, cfg, runs[0]))
    evaluation = score_runs(spark, cfg, runs)
    write_evaluation(TableStore(spark, cfg.tables), evaluation)
    summary = summarise(evaluation, cfg.evaluate.bootstrap, cfg.evaluate.bootstrap_seed)
    write_figures(evaluation.proxy_eval, out)
    summary.to_csv(out / "evaluate.csv")
    log.info("evaluate: final held-out bits per byte (mean over seeds %s) on the report half of the scored "
             "documents, 95%% intervals over documents%s; figures in %s\n%s", cfg.evaluate.seeds,
             intervals.interval_sources(len(cfg.evaluate.seeds)), out,
             summary.to_string(float_format=lambda v: f"{v:.4f}"))
    return summary


@dataclass
class Planned:
    """The proxies an evaluation of some runs needs, before any is trained."""

    spec: held.HeldOutSpec
    domains: list[str]
    jobs: list[ProxyJob]
    prints: dict[int, str]   # job -> fingerprint (``proxy_cache``)


def plan(cfg: SampleMixConfig, runs: list[Run]) -> Planned:
    """The jobs of every run and seed under ``cfg.evaluate``, with the fingerprints that find stored ones."""
    spec = held_out_spec(cfg, check_holdout(runs))
    jobs = _jobs(cfg, runs, spec)
    # Runs mixed from one scored warehouse share its scores fingerprint: one aggregate per warehouse.
    inputs = {run.name: run.inputs() for run in runs}
    warehouses = {store.location("documents"): store for store in inputs.values()}
    view = quality_view(cfg) if cfg.quality.method == "perplexity" else None
    scores = {location: scores_fingerprint(store, view) for location, store in warehouses.items()}
    identities = {run.name: proxy_cache.mix_identity(run.stats, scores[inputs[run.name].location("documents")])
                  for run in runs}
    return Planned(spec, chosen_domains(cfg, spec), jobs,
                   {job.job: proxy_cache.fingerprint(job, identities[job.run]) for job in jobs})


def score_runs(spark: SparkSession, cfg: SampleMixConfig, runs: list[Run],
               planned: Optional[Planned] = None) -> Evaluation:
    """The evaluation of ``runs`` under ``cfg.evaluate`` (``planned``: ``plan``'s result, if already made);
    proxies stored in ``cfg``'s warehouse are not retrained."""
    planned = planned or plan(cfg, runs)
    log.info("evaluate: %d runs x %d seeds, preset %s, %d bytes each, macro over %s; held-out documents scored: %s",
             len(runs), len(cfg.evaluate.seeds), cfg.evaluate.preset, planned.jobs[0].budget_bytes,
             ", ".join(planned.domains), rests_on(planned.spec))
    scores = proxy_cache.train_missing(TableStore(spark, cfg.tables), planned.jobs, planned.prints, executor(cfg),
                                       prepare=_with_copies_bytes(runs))
    _log_speed(scores)
    scores = labelled(scores, planned.jobs)
    return Evaluation(proxy_eval_frame(scores, runs, planned.domains, cfg), *document_tables(scores))


def write_evaluation(store: TableStore, evaluation: Evaluation) -> None:
    spark = store.spark
    store.write(spark.createDataFrame(evaluation.proxy_eval, PROXY_EVAL_SCHEMA), "proxy_eval")
    store.write(spark.createDataFrame(evaluation.docs, DOCS_SCHEMA), "proxy_eval_docs")
    store.write(spark.createDataFrame(evaluation.step_docs, STEP_DOCS_SCHEMA), "proxy_eval_step_docs")


PROXY_EVAL_SCHEMA = ("run string, warehouse string, method string, alpha double, tau double, seed long, step long, "
                     "tokens_seen long, domain string, scope string, docs long, bytes long, bpb double, "
                     "bpb_lo double, bpb_hi double, preset string, epochs double, macro_domains string")
DOCS_SCHEMA = "run string, seed long, doc_id string, domain string, bytes long, bits double"
STEP_DOCS_SCHEMA = "run string, seed long, step long, doc_id string, domain string, bytes long, bits double"


def _log_speed(scores: pd.DataFrame) -> None:
    per_job = scores.groupby("job").first()
    mfu = per_job["mfu"].dropna()
    log.info("evaluate: proxy of %d parameters, %.0f bytes/s median, %.1f s median per proxy, %.2f epochs of the "
             "output%s", per_job["n_params"].iat[0], per_job["bytes_per_s"].median(), per_job["seconds"].median(),
             per_job["epochs"].max(), f", MFU {mfu.median():.1%}" if len(mfu) else "")
