"""BiMix end to end: a proxy swarm at designed domain proportions fills ``bimix_observations``. Driver side.

``mixing.domain_weights.source: bimix`` with no observations file makes the mix
stage ``mix_stage.SwarmThenMix``: the swarm trains here, one layer above mixing,
and the mix then reads its table. The design, after BiMix (Ge et al., 2024: a handful of proxy runs
at varied proportions, losses read at several step counts) and Olmix's swarms:

- with D domains, D + 1 mixtures: ``uniform`` (every domain 1/D) and, per domain i,
  ``heavy:i`` (r_i = 0.5, or 0.75 when D = 2; the other domains share the rest);
- every proportion at least ``bimix_min_proportion`` (default 0.05): the law's
  r^-alpha has no value at 0, and a domain the swarm never sees cannot be fitted;
- so every domain is seen at three proportions (1/D, heavy, the others' share),
  each at every held-out evaluation from a quarter of the proxy's training on
  (6 of the ``cpu`` preset's 8, 3 of ``test``'s 4), once per seed.

A mixture's documents are drawn by the domain-weight sampler (``baselines.sampler``)
with the final mix's token budget, and the proxies read the documents plus the
counts (``bimix_counts``), as ``tune`` does. Above ``tune.sample_docs`` documents the
mixtures are drawn on a hashed sample in which every domain keeps at least
``sample_docs / domains`` documents or all of its own (``search_sample.domain_floor_input``),
so ``bimix_counts`` holds mixtures x the sample, never mixtures x the corpus. The proportion recorded is the domain's
realised token share of that mixture (sum of count x n_tokens, in ``ingest.tokenizer``'s
tokens): the unit the design is drawn in and the unit the fitted proportions are
applied in as domain weights. The loss is the proxy's held-out bits per byte on the
``select`` half of the domain's per-step documents (``holdout.halves``), so that
``samplemix evaluate`` judges the fitted mix on documents the swarm never chose by.
Rows go to ``bimix_observations`` after every proxy, keyed by the design, seed and
a fingerprint of everything else that changes the loss (``swarm.proxy_fingerprint``),
so a rerun of the mix stage retrains nothing that is still comparable.
The optimisation's target step count is the proxy's final step at this budget,
where ``samplemix evaluate`` later judges the mix (``bimix_target_steps`` overrides).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.evaluation import evaluate as ev
from samplemix_spark.evaluation import holdout as held
from samplemix_spark.evaluation.search_sample import domain_floor_input
from samplemix_spark.evaluation.swarm import by_candidate, counted_jobs, proxy_fingerprint, train_recording
from samplemix_spark.hashing import SWARM_DESIGN, purpose_seed
from samplemix_spark.models.proxy_presets import PRESETS
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)
OBSERVATION_SCHEMA = ("domain string, proportion double, steps long, loss double, run string, design string, "
                      "seed long, preset string, budget_bytes long, holdout string, fingerprint string")
# What a swarm proxy's loss does not depend on: the final mix's own method and settings.
NOT_IN_SWARM = ("method", "alpha", "tau", "max_repeats", "domain_weights", "export_format", "export_path")
OBSERVATION_COLUMNS = [part.split()[0] for part in OBSERVATION_SCHEMA.split(", ")]
FIRST_STEP_SHARE = 0.25  # losses before a quarter of training mostly show the warm-up, not the mixture


@dataclass(frozen=True)
class Mixture:
    name: str
    proportions: dict

    def key(self) -> str:
        """The design as stable text, so that a changed floor or domain set is a new mixture."""
        return json.dumps({d: round(r, 9) for d, r in sorted(self.proportions.items())})


def design(domains: list[str], floor: float) -> list[Mixture]:
    """The swarm's mixtures: uniform, then one heavy mixture per domain, every share >= ``floor``."""
    n = len(domains)
    if n < 2:
        raise InputError(f"bimix fits a law across domain proportions and needs at least two domains; "
                         f"the data has {', '.join(domains) or 'none'}")
    if floor * n >= 1:
        raise ConfigError(f"config key 'mixing.domain_weights.bimix_min_proportion': {floor} x {n} domains "
                          "leaves no room to vary the proportions; use a value below 1/(number of domains)")
    heavy = 0.75 if n == 2 else 0.5
    rest = max(floor, (1 - heavy) / (n - 1))
    mixtures = [Mixture("uniform", {d: 1.0 / n for d in domains})]
    for focus in domains:
        mixtures.append(Mixture(f"heavy:{focus}", {d: (1 - rest * (n - 1)) if d == focus else rest for d in domains}))
    return mixtures


def random_mixtures(domains: list[str], floor: float, n: int, seed: int) -> list[Mixture]:
    """``n`` mixtures drawn uniformly from the simplex above ``floor`` (Dirichlet(1), then shifted)."""
    rng = np.random.default_rng(purpose_seed(SWARM_DESIGN, seed))
    free = 1 - len(domains) * floor
    return [Mixture(f"random:{k}", dict(zip(domains, (floor + free * rng.dirichlet(np.ones(len(domains)))).tolist())))
            for k in range(n)]


def mixture_counts(scored: DataFrame, mixing: MixingConfig, mixtures: list[Mixture], hash_scheme: str) -> DataFrame:
    """(candidate, doc_id, count) of every mixture, drawn by the domain-weight sampler at the ``mixing`` budget."""
    from samplemix_spark.mixing.baselines.sampler import domain_count_column, tokens_by_domain
    from samplemix_spark.mixing.weights import compute_stats, weights_frame

    stats = compute_stats(scored, mixing, hash_scheme)
    tokens, _ = tokens_by_domain(scored, F.lit(True))
    frames = []
    for i, mixture in enumerate(mixtures):
        factors = {d: r * stats.target_tokens / tokens[d] for d, r in mixture.proportions.items()}
        weights = weights_frame(scored, stats, domain_count_column(factors, F.lit(True)))
        frames.append(weights.filter(F.col("count") > 0).select(F.lit(i).alias("candidate"), "doc_id", "count"))
    return functools.reduce(DataFrame.unionByName, frames)


def realised_shares(counts: DataFrame, documents: DataFrame) -> dict[int, dict[str, float]]:
    """candidate -> domain -> token share of that mixture's training copies (sum of count x n_tokens)."""
    sized = documents.select("doc_id", "domain", "n_tokens")
    totals = (counts.join(sized, "doc_id").groupBy("candidate", "domain")
              .agg(F.sum(F.col("count") * F.col("n_tokens")).cast("double").alias("tokens")).toPandas())
    totals["share"] = totals["tokens"] / totals.groupby("candidate")["tokens"].transform("sum")
    return {int(c): dict(zip(rows["domain"], rows["share"])) for c, rows in totals.groupby("candidate")}


def domain_curves(scores: pd.DataFrame) -> pd.DataFrame:
    """Trainer rows -> (job, step, domain, bpb) on the ``select`` half of each domain's per-step documents (the
    swarm chooses proportions, so it never sees the ``report`` half that judges them)."""
    select = held.in_half(scores[scores["subset"]], "select")
    sums = select.groupby(["job", "step", "domain"], as_index=False)[["bits", "bytes"]].sum()
    return sums.assign(bpb=sums["bits"] / sums["bytes"])[["job", "step", "domain", "bpb"]]


def observations_from_curves(curves: pd.DataFrame, labels: dict, shares: dict[int, dict[str, float]],
                             mixtures: list[Mixture]) -> pd.DataFrame:
    """Proxy curves (job, step, domain, bpb) -> observations (domain, proportion, steps, loss, run, design, seed).

    ``labels``: job -> (mixture index, seed). Steps before ``FIRST_STEP_SHARE`` of the
    proxy's training are left out.
    """
    final = curves.groupby("job")["step"].transform("max")
    kept = curves[curves["step"] >= FIRST_STEP_SHARE * final]
    rows = []
    for row in kept.itertuples():
        mixture, seed = labels[row.job]
        share = shares[mixture].get(row.domain, 0.0)
        if share > 0:  # a held-out domain with no training data here has no proportion to fit
            rows.append((row.domain, share, int(row.step), float(row.bpb), mixtures[mixture].name,
                         mixtures[mixture].key(), int(seed)))
    return pd.DataFrame(rows, columns=OBSERVATION_COLUMNS[:7])


def _finished(store: TableStore, fingerprint: str, designs: set) -> pd.DataFrame:
    """Stored observations still comparable (same fingerprint) of mixtures still in the design."""
    previous = store.read_if_exists("bimix_observations")
    if previous is None or "fingerprint" not in previous.columns:
        return pd.DataFrame(columns=OBSERVATION_COLUMNS)
    rows = previous.toPandas()
    stale = rows["fingerprint"] != fingerprint
    if stale.any():
        log.info("swarm: %d stored proxies were trained under other settings (mixing settings, documents or "
                 "scores, held-out set, preset, budget, threads, device or held-out scoring changed); retraining",
                 rows[stale].drop_duplicates(["design", "seed"]).shape[0])
    return rows[~stale & rows["design"].isin(designs)]


def observe(spark: SparkSession, store: TableStore, cfg: SampleMixConfig,
            extra: int = 0) -> tuple[pd.DataFrame, float]:
    """Train the swarm that ``bimix_observations`` still lacks; return the observations and the target steps.

    ``extra`` adds that many random mixtures to the design (``samplemix tune --domains``).
    """
    from samplemix_spark.mixing.weights import quality_view, scored_documents

    holdout = held.required_fingerprint(store, "mixing.domain_weights.source 'bimix' without observations")
    settings, source = cfg.evaluate, cfg.mixing.domain_weights
    preset, budget = settings.preset, settings.budget_bytes or PRESETS[settings.preset].budget_bytes
    searched = domain_floor_input(store, cfg, scored_documents(store, quality_view(cfg)))
    scored = searched.scored
    domains = sorted(r["domain"] for r in scored.select("domain").distinct().collect())
    mixtures = design(domains, source.bimix_min_proportion)
    mixtures += random_mixtures(domains, source.bimix_min_proportion, extra, cfg.mixing.seed)
    keys = {m.key() for m in mixtures}
    fingerprint = proxy_fingerprint(cfg, store, holdout, NOT_IN_SWARM,
                                    {"observed_on": "select", **searched.fingerprint_parts()})
    done = _finished(store, fingerprint, keys)
    finished = {(k, int(s)) for k, s in zip(done["design"], done["seed"])}
    store.write(by_candidate(mixture_counts(scored, searched.mixing, mixtures, store.hash_scheme)), "bimix_counts")
    shares = realised_shares(store.read("bimix_counts"), store.read("documents"))
    spec = ev.held_out_spec(cfg, store)
    jobs, labels = counted_jobs(cfg, store, "bimix_counts", [m.name for m in mixtures],
                                lambda i, seed: (mixtures[i].key(), seed) in finished, budget, spec)
    log.info("swarm: %d mixtures x %d seeds = %d proxies of %s bytes (%d already observed); %d to train",
             len(mixtures), len(settings.seeds), len(mixtures) * len(settings.seeds), f"{budget:,}",
             len(finished), len(jobs))
    observed = [done]

    def record(scores: pd.DataFrame) -> None:
        new = observations_from_curves(domain_curves(scores), labels, shares, mixtures)
        new = new.assign(preset=preset, budget_bytes=budget, holdout=holdout, fingerprint=fingerprint)
        observed[0] = pd.concat([observed[0], new], ignore_index=True) if len(observed[0]) else new
        store.write(spark.createDataFrame(observed[0][OBSERVATION_COLUMNS], OBSERVATION_SCHEMA),
                    "bimix_observations")

    train_recording(store, ev.executor(cfg), jobs, record)
    steps = source.bimix_target_steps or dataclasses.replace(PRESETS[preset], budget_bytes=budget).steps()
    return observed[0], float(steps)

