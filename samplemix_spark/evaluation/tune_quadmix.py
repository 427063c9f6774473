"""``samplemix tune --method quadmix --samples N``: QuaDMix's parameter search with our proxies. Driver side.

``quadmix_search.draw`` gives N settings (seeded by ``tune.seed``; the first k of
N are the settings of a search with k, so raising N resumes). Each setting's
counts come from the stored scores, as ``tune``'s do, and go to ``tune_counts``
(candidate, doc_id, count); its proxies read them through the same
``swarm.counted_jobs``, with the preset, budget and seeds of ``evaluate``. On a
corpus above ``tune.sample_docs`` documents the counts are computed on a hashed
sample of that size (``hashing.TUNE_SAMPLE``), with the budget scaled to it.

Each finished proxy's per-document bits go to ``tune_quadmix_docs`` at once, under
a fingerprint of everything but the searched parameters, so a killed search
resumes. Then the regression and the proposal (``quadmix_search``), fitted on the
``select`` half of the held-out documents (``holdout.halves``): the
``tune_quadmix`` table has one row per setting (its parameters as JSON, the
observed seed-mean macro bpb, the regression's prediction, its held-out error,
the 5% quantile of that error on shuffled losses that it must beat, and the
constant predictor's error), and the proposal is printed as ``--set`` lines, with
the reason it was accepted or refused.

Last, the confirmation (``confirm``): the proposal and the best observed setting
are trained again on fresh seeds (``tune.confirm_seeds``) and reported on the
``report`` half, in ``tune_quadmix_confirm``: a proposal is only worth taking if
it holds up there.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
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
from samplemix_spark.evaluation import intervals, proxy_cache, quadmix_search
from samplemix_spark.evaluation.search_sample import search_input
from samplemix_spark.evaluation.swarm import (by_candidate, counted_jobs, fresh_seeds, proxy_fingerprint,
                                              train_recording)
from samplemix_spark.mixing import quadmix
from samplemix_spark.mixing.weights import compute_stats, quadmix_inputs, quality_view, scored_documents, weights_frame
from samplemix_spark.models.proxy_presets import PRESETS
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
SEARCHED = ("quadmix", "method", "alpha", "tau", "export_format", "export_path")
DOCS_SCHEMA = ("sample long, seed long, doc_id string, domain string, bytes long, bits double, "
               "fingerprint string")
CONFIRM_DOCS_SCHEMA = ("setting string, seed long, doc_id string, domain string, bytes long, bits double, "
                       "fingerprint string")
CONFIRM_SCHEMA = ("setting string, parameters string, seeds long, docs long, report_bpb double, report_lo double, "
                  "report_hi double, vs_best_observed string")
RESULT_SCHEMA = ("sample long, parameters string, observed_bpb double, predicted_bpb double, seeds long, "
                 "docs long, model string, loo_error double, shuffled_error_q05 double, constant_error double, "
                 "proposed boolean")


def setting_mixing(base: MixingConfig, setting: dict, score_columns: tuple = ()) -> MixingConfig:
    """``base`` as QuaDMix with one drawn setting (``quadmix_search.config_values``); ``score_columns`` are
    ``ingest.score_columns``, which the merging weights may name."""
    data: dict = {"mixing": {**dataclasses.asdict(base), "method": "quadmix"},
                  "ingest": {"score_columns": list(score_columns)}}
    quadmix_data = data["mixing"]["quadmix"]
    quadmix_data["domains"] = {d: {**v, "weights": dict(v["weights"])} if "weights" in v else dict(v)
                               for d, v in quadmix_data["domains"].items()}
    for path, value in quadmix_search.config_values(setting).items():
        node = quadmix_data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return build_config(data).mixing


def search_space(cfg: SampleMixConfig, domains: list[str]) -> quadmix_search.SearchSpace:
    """The search's parameters: ``tune``'s ranges and bounds, and every criterion the merging weights name."""
    quadmix_cfg = cfg.mixing.quadmix
    criteria = set(quadmix_cfg.weights) | {n for v in quadmix_cfg.domains.values() for n in v.get("weights", {})}
    ranges = {**quadmix_search.RANGES[cfg.tune.ranges], **{k: tuple(v) for k, v in cfg.tune.bounds.items()}}
    return quadmix_search.SearchSpace(tuple(domains), cfg.tune.reduced, tuple(sorted(criteria)), ranges)


def search_scored(store: TableStore, cfg: SampleMixConfig) -> tuple[DataFrame, MixingConfig]:
    """The scored documents a search mixes (``search_sample``: a hashed sample above ``tune.sample_docs``) and
    the base mixing settings for them."""
    scored = scored_documents(store, quality_view(cfg), quadmix.score_columns(cfg.mixing), diversity=False)
    chosen = search_input(store, cfg, scored)
    return chosen.scored, chosen.mixing


def setting_counts(scored: DataFrame, base: MixingConfig, settings: pd.DataFrame, hash_scheme: str,
                   score_columns: tuple = ()) -> DataFrame:
    """(candidate, doc_id, count) of every document each setting selects."""
    frames = []
    for i, setting in enumerate(settings.to_dict("records")):
        mixing = setting_mixing(base, setting, score_columns)
        frame, c, stats, shown = quadmix_inputs(scored, mixing, compute_stats(scored, mixing, hash_scheme))
        weights = weights_frame(frame, stats, c, shown)
        frames.append(weights.filter(F.col("count") > 0).select(F.lit(i).alias("candidate"), "doc_id", "count"))
    return functools.reduce(DataFrame.unionByName, frames)


def tune_quadmix(spark: SparkSession, cfg: SampleMixConfig, n_samples: int, out: Path) -> quadmix_search.Proposal:
    """Train proxies on ``n_samples`` drawn settings, regress, write ``tune_quadmix``; return the proposal."""
    if n_samples < 4:
        raise InputError(f"--samples {n_samples}: the search needs at least 4 settings to judge its regression")
    store = TableStore(spark, cfg.tables)
    holdout = held.required_fingerprint(store, "tune")
    spec = ev.held_out_spec(cfg, store)
    scored_domains = ev.chosen_domains(cfg, spec)
    scored, base = search_scored(store, cfg)
    domains = sorted(r["domain"] for r in scored.select("domain").distinct().collect())
    space = search_space(cfg, domains)
    settings = quadmix_search.draw(n_samples, space, cfg.tune.seed)
    fingerprint = _fingerprint(cfg, store, holdout, domains)
    done = _done(store, fingerprint, n_samples, cfg.evaluate.seeds)
    store.write(by_candidate(setting_counts(scored, base, settings, store.hash_scheme,
                                                   tuple(cfg.ingest.score_columns))), "tune_counts")
    finished = set(zip(done["sample"], done["seed"]))
    budget = cfg.evaluate.budget_bytes or PRESETS[cfg.evaluate.preset].budget_bytes
    jobs, labels = counted_jobs(cfg, store, "tune_counts", [f"quadmix setting {i}" for i in range(n_samples)],
                                lambda i, seed: (i, seed) in finished, budget, spec)
    executor = ev.executor(cfg)
    log.info(proxy_cache.plan_line("tune", n_samples * len(cfg.evaluate.seeds), jobs, executor))
    log.info("tune: held-out documents scored: %s", ev.rests_on(spec))
    rows = {"docs": done}

    def record(curves: pd.DataFrame) -> None:
        new = _final_rows(curves, labels).assign(fingerprint=fingerprint)
        rows["docs"] = _typed(pd.concat([rows["docs"], new], ignore_index=True) if len(rows["docs"]) else new)
        store.write(spark.createDataFrame(rows["docs"], DOCS_SCHEMA), "tune_quadmix_docs")

    train_recording(store, executor, jobs, record)
    observed, seeds, docs = _macro(rows["docs"], scored_domains, n_samples)
    scored_rows = _scored(observed)
    scored_settings, scored_observed = settings.iloc[scored_rows].reset_index(drop=True), observed[scored_rows]
    fitted = quadmix_search.fit(scored_settings, scored_observed, cfg.tune.seed)
    proposal = quadmix_search.propose(fitted, scored_settings, scored_observed, space, cfg.tune.seed)
    table = _result_table(settings, observed, fitted, proposal, seeds, docs)
    store.write(spark.createDataFrame(table, RESULT_SCHEMA), "tune_quadmix")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "tune_quadmix.csv", index=False)
    log.info("tune: QuaDMix search over %d settings, macro bpb on the select half of the held-out documents (%d "
             "documents, seed mean of %d)\n%s\ntune: %s", n_samples, docs, seeds, table.drop(columns="parameters")
             .to_string(index=False, float_format=lambda v: f"{v:.4f}"), proposal.reason)
    best = scored_settings.iloc[int(np.argmin(scored_observed))].to_dict()
    confirm(_Confirming(spark, cfg, store, scored, base, spec, fingerprint, scored_domains), proposal, best, out)
    print(" ".join(["--set mixing.method=quadmix", *quadmix_search.set_lines(proposal.setting)]))
    return proposal


@dataclass(frozen=True)
class _Confirming:
    """What a confirmation trains from: the search's scored documents, settings and held-out set (driver side)."""

    spark: SparkSession
    cfg: SampleMixConfig
    store: TableStore
    scored: DataFrame
    base: MixingConfig
    spec: held.HeldOutSpec
    fingerprint: str
    domains: list


def confirm(on: _Confirming, proposal: quadmix_search.Proposal, best: dict, out: Path) -> Optional[pd.DataFrame]:
    """Train the proposal and the best observed setting on fresh seeds (``tune.confirm_seeds``) and report both
    on the ``report`` half: the figures to quote, free of the documents and training luck the search chose by.

    Writes ``tune_quadmix_confirm_docs`` (per document, resumable) and
    ``tune_quadmix_confirm`` (per setting: report-half macro with its interval, and
    the proposal minus the best observed setting); returns the latter.
    """
    fresh = fresh_seeds(on.cfg)
    if not fresh:
        log.info("tune: the proposal is not confirmed on fresh seeds (tune.confirm_seeds: 0)")
        return None
    named = {"proposal": proposal.setting, "best observed": best} if proposal.accepted else {"best observed": best}
    prints = {name: _setting_print(on.fingerprint, setting) for name, setting in named.items()}
    done = _confirm_done(on.store, prints, fresh)
    finished = set(zip(done["setting"], done["seed"]))
    on.store.write(by_candidate(setting_counts(on.scored, on.base, pd.DataFrame(list(named.values())),
                                               on.store.hash_scheme, tuple(on.cfg.ingest.score_columns))),
                   "tune_counts")
    names = list(named)
    budget = on.cfg.evaluate.budget_bytes or PRESETS[on.cfg.evaluate.preset].budget_bytes
    jobs, labels = counted_jobs(on.cfg, on.store, "tune_counts", names,
                                lambda i, seed: (names[i], seed) in finished, budget, on.spec, fresh)
    log.info(proxy_cache.plan_line("tune: confirming on fresh seeds", len(names) * len(fresh), jobs,
                                   ev.executor(on.cfg)))
    rows = {"docs": done}

    def record(curves: pd.DataFrame) -> None:
        new = _final_rows(curves, labels).rename(columns={"sample": "setting"})
        new = new.assign(setting=new["setting"].map(dict(enumerate(names))),
                         fingerprint=lambda t: t["setting"].map(prints))
        rows["docs"] = pd.concat([rows["docs"], new], ignore_index=True) if len(rows["docs"]) else new
        on.store.write(on.spark.createDataFrame(rows["docs"], CONFIRM_DOCS_SCHEMA), "tune_quadmix_confirm_docs")

    train_recording(on.store, ev.executor(on.cfg), jobs, record)
    table = confirmation_table(rows["docs"], named, on.domains, on.cfg.evaluate.bootstrap,
                               on.cfg.evaluate.bootstrap_seed)
    on.store.write(on.spark.createDataFrame(table, CONFIRM_SCHEMA), "tune_quadmix_confirm")
    table.to_csv(out / "tune_quadmix_confirm.csv", index=False)
    log.info("tune: confirmed on fresh seeds %s, report half of the held-out documents:\n%s", list(fresh),
             "\n".join(f"  {r.setting}: {r.report_bpb:.4f} [{r.report_lo:.4f}, {r.report_hi:.4f}] ({r.docs} docs)"
                       f"{'' if r.vs_best_observed == '-' else '; minus the best observed: ' + r.vs_best_observed}"
                       for r in table.itertuples()))
    return table


def confirmation_table(docs: pd.DataFrame, named: dict, domains: list[str], samples: int,
                       seed: int) -> pd.DataFrame:
    """Per confirmed setting: its fresh proxies' macro bpb on the report half with the 95% interval, and for the
    proposal the paired difference from the best observed setting."""
    report = held.in_half(docs.rename(columns={"setting": "run"}), "report")
    scores = intervals.Scores.from_frame(report)
    strata = intervals.strata(scores.domains, domains, samples, seed)
    noise = intervals.seed_noise(scores, strata)
    rows = []
    for name, setting in named.items():
        bpb, lo, hi = intervals.run_interval(scores, name, strata, noise)
        versus = (intervals.paired_difference(scores, name, "best observed", strata, noise).describe()
                  if name != "best observed" else "-")
        rows.append({"setting": name, "parameters": json.dumps(setting, sort_keys=True),
                     "seeds": len(scores.per_seed[name]), "docs": int(sum(len(s.positions) for s in strata)),
                     "report_bpb": bpb, "report_lo": lo, "report_hi": hi, "vs_best_observed": versus})
    return pd.DataFrame(rows)


def _setting_print(fingerprint: str, setting: dict) -> str:
    """A confirmed setting's fingerprint: the search's, and its own parameters."""
    text = json.dumps([fingerprint, sorted(setting.items())], default=float)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _confirm_done(store: TableStore, prints: dict, seeds: tuple) -> pd.DataFrame:
    """Stored confirmation rows of these settings (same name and fingerprint) on these seeds."""
    previous = store.read_if_exists("tune_quadmix_confirm_docs")
    empty = pd.DataFrame(columns=[c.split()[0] for c in CONFIRM_DOCS_SCHEMA.split(", ")])
    if previous is None:
        return empty
    rows = previous.toPandas()
    keep = (rows["fingerprint"] == rows["setting"].map(prints)) & rows["seed"].isin(seeds)
    return rows[keep].reset_index(drop=True) if keep.any() else empty


def _fingerprint(cfg: SampleMixConfig, store: TableStore, holdout: str, domains: list[str]) -> str:
    """What a stored setting's proxy depends on besides its parameters (``tune``'s, plus the search's own)."""
    parts = [proxy_fingerprint(cfg, store, holdout, SEARCHED), cfg.tune.seed, cfg.tune.reduced,
             cfg.tune.sample_docs, domains, cfg.tune.ranges, sorted(cfg.tune.bounds.items())]
    return hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).hexdigest()


def _done(store: TableStore, fingerprint: str, n_samples: int, seeds: list[int]) -> pd.DataFrame:
    previous = store.read_if_exists("tune_quadmix_docs")
    empty = pd.DataFrame(columns=[c.split()[0] for c in DOCS_SCHEMA.split(", ")])
    if previous is None:
        return empty
    rows = previous.toPandas()
    stale = rows["fingerprint"] != fingerprint
    if stale.any():
        log.info("tune: %d stored QuaDMix proxies were trained under other settings; they are retrained",
                 rows.loc[stale, ["sample", "seed"]].drop_duplicates().shape[0])
    keep = ~stale & (rows["sample"] < n_samples) & rows["seed"].isin(seeds)
    return _typed(rows[keep].reset_index(drop=True)) if keep.any() else empty


def _typed(docs: pd.DataFrame) -> pd.DataFrame:
    return docs.astype({"sample": "int64", "seed": "int64", "bytes": "int64", "bits": "float64"})


def _final_rows(curves: pd.DataFrame, labels: dict) -> pd.DataFrame:
    last = curves[curves["step"] == curves.groupby("job")["step"].transform("max")]
    parts = [group[["doc_id", "domain", "bytes", "bits"]].assign(sample=labels[job][0], seed=labels[job][1])
             for job, group in last.groupby("job")]
    return pd.concat(parts, ignore_index=True)[["sample", "seed", "doc_id", "domain", "bytes", "bits"]]


def _macro(docs: pd.DataFrame, domains: list[str], n_samples: int) -> tuple[np.ndarray, int, int]:
    """Seed-mean macro bpb over ``domains`` per setting on the ``select`` half, the seeds, and the documents it
    rests on."""
    chosen = held.in_half(docs[docs["domain"].isin(domains)], "select")
    per_domain = chosen.groupby(["sample", "seed", "domain"])[["bits", "bytes"]].sum()
    bpb = (per_domain["bits"] / per_domain["bytes"]).groupby(["sample", "seed"]).mean().groupby("sample").mean()
    seeds = int(chosen.groupby("sample")["seed"].nunique().min())
    n_docs = int(chosen.groupby(["sample", "seed"]).size().min())
    return bpb.reindex(range(n_samples)).to_numpy(), seeds, n_docs


def _scored(observed: np.ndarray) -> np.ndarray:
    """Positions of the settings with a held-out score; the others are named in the log and left out."""
    finite = np.isfinite(observed)
    if not finite.all():
        log.warning("tune: QuaDMix settings %s have no held-out score (no proxy was trained on them): the "
                    "regression and the proposal use the other %d", np.flatnonzero(~finite).tolist(), finite.sum())
    return np.flatnonzero(finite)


def _result_table(settings: pd.DataFrame, observed: np.ndarray, fitted: quadmix_search.SearchFit,
                  proposal: quadmix_search.Proposal, seeds: int, docs: int) -> pd.DataFrame:
    """One row per drawn setting; a setting without a score has no prediction and is never the proposed one."""
    scored_rows = np.flatnonzero(np.isfinite(observed))
    predicted = np.full(len(settings), np.nan)
    predicted[scored_rows] = fitted.predicted
    table = pd.DataFrame({"sample": range(len(settings)),
                          "parameters": [json.dumps(s, sort_keys=True) for s in settings.to_dict("records")],
                          "observed_bpb": observed, "predicted_bpb": predicted, "seeds": seeds, "docs": docs,
                          "model": fitted.model_name, "loo_error": fitted.loo_error,
                          "shuffled_error_q05": fitted.threshold, "constant_error": fitted.constant_error,
                          "proposed": False})
    if not proposal.accepted:
        table.loc[int(scored_rows[np.argmin(observed[scored_rows])]), "proposed"] = True
    return table
