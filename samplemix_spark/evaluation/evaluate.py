"""``samplemix evaluate RUN [RUN ...]``: judge finished mixes by the proxies they train. Driver side.

For each run and seed a fresh byte-level proxy (``proxy``) trains on the run's
output (``stream``) for the same byte budget, and is scored on the held-out
set (``holdout``) at regular steps. The proxies run here one after another, or
as Spark tasks (``swarm``). The curves go to the ``proxy_eval`` table, with
domain ``_all`` for the macro average over ``evaluate.domains``; the summary
gives each run's final bits per byte, the spread over seeds, and the paper's
efficiency measure: the steps a run needs to reach the natural-proportions
run's final macro bits per byte.

Runs are only compared on the same held-out set: every mix records the
fingerprint of the held-out set its documents were split from, and runs with
different fingerprints, or none, are refused.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from samplemix_spark.config import SampleMixConfig, TablesConfig
from samplemix_spark.errors import InputError
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation.plots import MACRO, final_domain_bars, learning_curves
from samplemix_spark.evaluation.proxy import PRESETS
from samplemix_spark.evaluation.stream import snapshot_files
from samplemix_spark.evaluation.swarm import ProxyJob, run_local, run_on_spark
from samplemix_spark.mixing.weights import MixStats, MixStep, read_stats
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
NATURAL = "domain:natural"
PROXY_EVAL_COLUMNS = ["run", "warehouse", "method", "alpha", "tau", "seed", "step", "tokens_seen", "domain", "bpb",
                      "preset", "epochs"]


@dataclass
class Run:
    name: str
    store: TableStore
    stats: MixStats

    def inputs(self) -> TableStore:
        """The warehouse this run's documents and held-out set came from (where evaluations of it go)."""
        if not self.stats.inputs:
            return self.store
        return TableStore(self.store.spark, dataclasses.replace(self.store.cfg, warehouse=self.stats.inputs))

    @property
    def method(self) -> str:
        return f"domain:{self.stats.weights_source}" if self.stats.method == "domain" else self.stats.method


def warehouse_of(store: TableStore) -> str:
    """The run's warehouse as an absolute location, so runs named by relative paths still match."""
    return store.location("mix_run").rsplit("/", 1)[0]


def open_run(spark: SparkSession, tables: TablesConfig, warehouse: str, name: str) -> Run:
    store = TableStore(spark, dataclasses.replace(tables, warehouse=warehouse, catalog=None, prefix=""))
    return Run(name, store, read_stats(store))


def natural_reference(spark: SparkSession, cfg: SampleMixConfig, run: Run, out: Path) -> Run:
    """Mix the run's documents in natural domain proportions, with the same token budget, under ``out``."""
    mixing = dataclasses.replace(cfg.mixing, method="domain", target_tokens=run.stats.target_tokens,
                                 target_fraction=None, max_repeats=None, export_format=None, export_path=None,
                                 domain_weights=dataclasses.replace(cfg.mixing.domain_weights, source="natural"))
    store = TableStore(spark, dataclasses.replace(cfg.tables, warehouse=str(out), catalog=None, prefix=""))
    log.info("evaluate: mixing the natural-proportions reference of %s into %s", run.name, out)
    MixStep(dataclasses.replace(cfg, mixing=mixing)).run(spark, store, inputs=run.store)
    return Run("natural", store, read_stats(store))


def check_holdout(runs: list[Run]) -> TableStore:
    """The store whose held-out table every run was mixed against; refuses runs that differ."""
    prints = {run.name: run.stats.holdout for run in runs}
    for name, mark in prints.items():
        if mark in ("", "none") or mark.startswith("0:"):
            raise InputError(f"run {name!r} has no held-out set: set ingest.holdout_fraction (or "
                             "ingest.holdout_sources) and rerun ingest and the stages after it")
    if len(set(prints.values())) > 1:
        raise InputError("the runs were mixed against different held-out sets, so their losses cannot be "
                         f"compared: {', '.join(f'{n} {p}' for n, p in prints.items())}")
    for run in runs:
        for store in (run.store, *([run.inputs()] if run.stats.inputs else [])):
            if held.fingerprint(store) == run.stats.holdout:
                return store
    raise InputError("no run's warehouse holds the held-out set its mix recorded: the held-out table changed "
                     "after the mix; rerun `samplemix mix`")


def _jobs(cfg: SampleMixConfig, runs: list[Run]) -> list[ProxyJob]:
    ev = cfg.evaluate
    budget = ev.budget_bytes or PRESETS[ev.preset].budget_bytes
    files = {run.name: tuple(snapshot_files(run.store, "output")) for run in runs}
    return [ProxyJob(i, run.name, files[run.name], seed, ev.preset, budget, ev.threads, ev.device)
            for i, (run, seed) in enumerate((r, s) for r in runs for s in ev.seeds)]


def _with_macro(curves: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    keys = ["run", "seed", "step", "tokens_seen"]
    macro = curves[curves["domain"].isin(domains)].groupby(keys, as_index=False)["bpb"].mean()
    return pd.concat([curves, macro.assign(domain=MACRO)], ignore_index=True)


def macro_over(proxy_eval: pd.DataFrame, domains: list[str]) -> pd.DataFrame:
    """``proxy_eval`` with ``_all`` recomputed over ``domains``: another view of the same proxies, no training."""
    rest = proxy_eval[proxy_eval["domain"] != MACRO]
    keys = [c for c in PROXY_EVAL_COLUMNS if c not in ("domain", "bpb")]
    macro = rest[rest["domain"].isin(domains)].groupby(keys, as_index=False, dropna=False)["bpb"].mean()
    return pd.concat([rest, macro.assign(domain=MACRO)], ignore_index=True)[PROXY_EVAL_COLUMNS]


def proxy_eval_frame(curves: pd.DataFrame, jobs: list[ProxyJob], runs: list[Run], domains: list[str],
                     preset: str) -> pd.DataFrame:
    """The ``proxy_eval`` rows: curves labelled with their run's method and settings, plus ``_all``."""
    by_job = pd.DataFrame([(j.job, j.run, j.seed) for j in jobs], columns=["job", "run", "seed"])
    labelled = curves.merge(by_job, on="job")
    epochs = labelled.groupby("run")["epochs"].first()
    table = _with_macro(labelled[["run", "seed", "step", "tokens_seen", "domain", "bpb"]], domains)
    info = pd.DataFrame([(r.name, warehouse_of(r.store), r.method, r.stats.alpha, r.stats.tau) for r in runs],
                        columns=["run", "warehouse", "method", "alpha", "tau"])
    table = table.merge(info, on="run").assign(preset=preset, epochs=lambda t: t["run"].map(epochs))
    return table[PROXY_EVAL_COLUMNS].sort_values(["run", "seed", "step", "domain"]).reset_index(drop=True)


def exceeds_spread(a: pd.Series, b: pd.Series) -> bool:
    """The difference of seed means is larger than twice the larger seed standard deviation."""
    spread = max(a.std(ddof=1), b.std(ddof=1))
    return bool(abs(a.mean() - b.mean()) > 2 * (0.0 if np.isnan(spread) else spread))


def steps_to_reach(proxy_eval: pd.DataFrame, run: str, target: float) -> Optional[int]:
    """The first evaluated step at which the run's seed-mean macro bpb is at or below ``target``."""
    macro = proxy_eval[(proxy_eval["run"] == run) & (proxy_eval["domain"] == MACRO)]
    curve = macro.groupby("step")["bpb"].mean().sort_index()
    reached = curve[curve <= target + 1e-12]
    return int(reached.index[0]) if len(reached) else None


def summarise(proxy_eval: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final bpb per domain (seed mean), macro mean and std, steps to natural's final macro."""
    last = proxy_eval[proxy_eval["step"] == proxy_eval.groupby("run")["step"].transform("max")]
    per_domain = last.pivot_table(index="run", columns="domain", values="bpb", aggfunc="mean")
    macro = last[last["domain"] == MACRO].groupby("run")["bpb"]
    summary = per_domain.drop(columns=MACRO).assign(macro=macro.mean(), macro_std=macro.std(ddof=1))
    summary.insert(0, "method", last.groupby("run")["method"].first())
    natural = last.loc[last["method"] == NATURAL, "run"].unique()
    if len(natural):
        target = summary.loc[natural[0], "macro"]
        final_step = int(last["step"].max())
        steps = {run: steps_to_reach(proxy_eval, run, target) for run in summary.index}
        summary["steps_to_natural"] = [("not reached" if s is None else s) for s in steps.values()]
        summary["speedup"] = [(f"{final_step / s:.2f}x" if s else "-") for s in steps.values()]
        base = macro.get_group(natural[0])
        summary["vs_natural"] = [_verdict(macro.get_group(run), base) if run != natural[0] else "-"
                                 for run in summary.index]
    return summary


def _verdict(run: pd.Series, natural: pd.Series) -> str:
    better = "lower" if run.mean() < natural.mean() else "higher"
    return f"{better}, {'exceeds' if exceeds_spread(run, natural) else 'within'} seed spread"


def write_figures(proxy_eval: pd.DataFrame, out: Path) -> list[str]:
    """Learning curves and final per-domain bars as PNGs under ``out``; returns the page fragments."""
    from samplemix_spark.report.html import save_figure

    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(out / "learning_curves.png", learning_curves(proxy_eval)),
            save_figure(out / "domain_bpb.png", final_domain_bars(proxy_eval))]


def chosen_domains(cfg: SampleMixConfig, held_out: dict[str, bytes]) -> list[str]:
    """The held-out domains of the macro average: ``evaluate.domains``, or all of them."""
    unknown = sorted(set(cfg.evaluate.domains) - set(held_out))
    if unknown:
        raise InputError(f"evaluate.domains names {', '.join(unknown)}, which the held-out set does not hold; "
                         f"held-out domains: {', '.join(sorted(held_out))}")
    return sorted(cfg.evaluate.domains or held_out)


def held_out_bytes(cfg: SampleMixConfig, store: TableStore) -> dict[str, bytes]:
    """The preset's held-out bytes per domain; domains too small for one window are left out with a warning."""
    preset = PRESETS[cfg.evaluate.preset]
    texts = held.held_out_bytes(store, preset.eval_bytes)
    small = sorted(d for d, data in texts.items() if len(data) < preset.context + 1)
    if small:
        log.warning("evaluate: held-out domains %s hold less than one %d-byte window; left out",
                    ", ".join(small), preset.context + 1)
    return {d: data for d, data in texts.items() if d not in small}


def executor(cfg: SampleMixConfig) -> str:
    """``local`` or ``spark``: where this config's proxies train."""
    from samplemix_spark.engine import resolve_engine_kind

    if cfg.evaluate.executor != "auto":
        return cfg.evaluate.executor
    # The embedded engine runs Python UDFs in the driver's process: tasks would only add overhead.
    return "local" if resolve_engine_kind(cfg.engine.kind) == "embedded" else "spark"


def evaluate(spark: SparkSession, cfg: SampleMixConfig, warehouses: list[str], names: Optional[list[str]] = None,
             reference: bool = True) -> pd.DataFrame:
    """Train and score the proxies of every run; write ``proxy_eval`` and the figures; return the summary."""
    names = names or [Path(w).name or w for w in warehouses]
    if len(names) != len(warehouses) or len(set(names)) != len(names):
        raise InputError(f"--names needs one distinct name per run; got {names} for {len(warehouses)} runs")
    out = Path(cfg.evaluate.out)
    runs = [open_run(spark, cfg.tables, w, n) for w, n in zip(warehouses, names)]
    if reference and len(runs) == 1:
        runs.append(natural_reference(spark, cfg, runs[0], out / "reference_natural"))
    held_out = held_out_bytes(cfg, check_holdout(runs))
    domains = chosen_domains(cfg, held_out)
    jobs = _jobs(cfg, runs)
    log.info("evaluate: %d runs x %d seeds, preset %s, %d bytes each, held-out domains %s (macro over %s)",
             len(runs), len(cfg.evaluate.seeds), cfg.evaluate.preset, jobs[0].budget_bytes,
             ", ".join(held_out), ", ".join(domains))
    trainer = run_local if executor(cfg) == "local" else lambda j, h: run_on_spark(spark, j, h)
    curves = trainer(jobs, held_out)
    _log_speed(curves)
    table = proxy_eval_frame(curves, jobs, runs, domains, cfg.evaluate.preset)
    store = TableStore(spark, cfg.tables)
    store.write(spark.createDataFrame(table), "proxy_eval")
    summary = summarise(table)
    write_figures(table, out)
    summary.to_csv(out / "evaluate.csv")
    log.info("evaluate: final held-out bits per byte (mean over seeds %s); figures in %s\n%s",
             cfg.evaluate.seeds, out, summary.to_string(float_format=lambda v: f"{v:.4f}"))
    return summary


def _log_speed(curves: pd.DataFrame) -> None:
    per_job = curves.groupby("job").first()
    mfu = per_job["mfu"].dropna()
    log.info("evaluate: proxy of %d parameters, %.0f bytes/s median, %.1f s median per proxy, %.2f epochs of the "
             "output%s", per_job["n_params"].iat[0], per_job["bytes_per_s"].median(), per_job["seconds"].median(),
             per_job["epochs"].max(), f", MFU {mfu.median():.1%}" if len(mfu) else "")
