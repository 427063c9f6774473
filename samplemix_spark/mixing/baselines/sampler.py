"""The domain-weight sampler: every document of domain i gets c(x) = w_i * T_tgt / T_i.

T_i is the domain's source tokens (for ``quality_threshold``: of its documents at
or above the cut; the others get 0), so domain i contributes w_i * T_tgt tokens
in expectation and all its eligible documents share one expected count. Counts
use the same floor + hashed Bernoulli rule and the rows go to the same
``weights`` table as SampleMix (p, q_norm, d_norm are still filled in, for
comparison), so reports, views and ``samplemix compare`` work unchanged.
"""

from __future__ import annotations

import json
import logging
import math

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)


def tokens_by_domain(scored: DataFrame, eligible: Column) -> tuple[dict, dict]:
    rows = scored.groupBy("domain").agg(
        F.sum("n_tokens").cast("double").alias("all"),
        F.sum(F.when(eligible, F.col("n_tokens")).otherwise(0)).cast("double").alias("eligible")).collect()
    return {r["domain"]: r["all"] for r in rows}, {r["domain"]: r["eligible"] for r in rows}


def _normalised(weights: dict[str, float], key: str) -> dict[str, float]:
    # fsum is exact, so the total does not depend on the order the domains were collected in
    # (a plain sum differs in the last bit between reruns, and the weights feed proxy fingerprints).
    total = math.fsum(weights.values())
    if not total > 0:
        raise ConfigError(f"config key '{key}': the domain weights sum to 0")
    return {domain: w / total for domain, w in weights.items()}


def resolve_weights(spark: SparkSession, store: TableStore, cfg: SampleMixConfig, tokens: dict) -> dict[str, float]:
    """The normalised weight of every data domain from ``mixing.domain_weights.source``."""
    source = cfg.mixing.domain_weights
    if source.source in ("natural", "quality_threshold"):
        return _normalised(tokens, "mixing.domain_weights")
    if source.source == "manual":
        unknown = sorted(set(source.manual) - set(tokens))
        if unknown:
            raise ConfigError(f"config key 'mixing.domain_weights.manual': unknown domain(s) {', '.join(unknown)}; "
                              f"the data has {', '.join(sorted(tokens))}")
        return _normalised({d: float(source.manual.get(d, 0.0)) for d in tokens}, "mixing.domain_weights.manual")
    if source.source == "entropy":
        from samplemix_spark.mixing.baselines.entropy import domain_entropies

        entropies = domain_entropies(store.read("documents"), cfg.ingest.tokenizer, source.entropy_kind)
        log.info("mix: %s entropy per domain (bits): %s", source.entropy_kind,
                 {d: round(h, 4) for d, h in sorted(entropies.items())})
        return _normalised({d: entropies.get(d, 0.0) for d in tokens}, "mixing.domain_weights")
    return _bimix_weights(spark, store, cfg, tokens)


def _bimix_weights(spark: SparkSession, store: TableStore, cfg: SampleMixConfig, tokens: dict) -> dict[str, float]:
    """Fit the law to the observations (a file, or the proxy swarm's table) and optimise the proportions."""
    from samplemix_spark.mixing.baselines.bimix import fit_law, fits_frame, optimise_proportions

    source = cfg.mixing.domain_weights
    if source.bimix_observations:
        from samplemix_spark.ingest.sources import read_sources

        observations = read_sources(spark, source.bimix_observations, source.bimix_format).toPandas()
        steps = float(source.bimix_target_steps)
    else:
        observations = swarm_observations(store)
        steps = float(source.bimix_target_steps or observations["steps"].max())
    fits = fit_law(observations)
    for fit in fits:
        log.info("mix: bimix fit %s: R2 %.4f, mean relative error %.4f%%, %s", fit.domain, fit.r2,
                 100 * fit.mean_relative_error, {k: round(v, 4) for k, v in fit.params.items()})
    fitted = {fit.domain for fit in fits}
    if fitted != set(tokens):
        raise InputError(f"bimix observations cover domains {sorted(fitted)} "
                         f"but the data has {sorted(tokens)}")
    proportions = optimise_proportions(fits, steps)
    log.info("mix: bimix proportions at %.0f steps: %s", steps,
             {d: round(r, 4) for d, r in sorted(proportions.items())})
    store.write(spark.createDataFrame(fits_frame(fits, proportions, steps)), "bimix_fit")
    return proportions


def swarm_observations(store: TableStore) -> pd.DataFrame:
    """The ``bimix_observations`` table the proxy swarm wrote (``evaluation.bimix_swarm``), which ran first."""
    observations = store.read_if_exists("bimix_observations")
    if observations is None:
        raise InputError("mixing.domain_weights.source 'bimix' without an observations file needs the proxy "
                         "swarm's bimix_observations table: run the mix stage through `samplemix mix` or "
                         "`samplemix run`, which train the swarm first")
    return observations.toPandas()


def domain_count_column(factors: dict[str, float], eligible: Column) -> Column:
    """c(x) = factor of the document's domain, 0 for ineligible documents (native CASE WHEN)."""
    c = F.lit(0.0)
    for domain, factor in factors.items():
        c = F.when(F.col("domain") == F.lit(domain), F.lit(factor)).otherwise(c)
    return F.when(eligible, c).otherwise(F.lit(0.0))


def domain_factors(spark: SparkSession, store: TableStore, cfg: SampleMixConfig, scored: DataFrame,
                   target_tokens: float) -> tuple[dict[str, float], dict[str, float], Column]:
    """(weights, per-document expected count of each domain, eligibility column)."""
    source = cfg.mixing.domain_weights
    eligible = F.col("q") >= F.lit(source.quality_cut) if source.source == "quality_threshold" else F.lit(True)
    tokens, eligible_tokens = tokens_by_domain(scored, eligible)
    weights = resolve_weights(spark, store, cfg, tokens)
    starved = [d for d, w in weights.items() if w > 0 and not eligible_tokens[d] > 0]
    if starved:
        raise InputError(f"domain(s) {', '.join(starved)} have weight but no eligible tokens "
                         f"(quality cut {source.quality_cut})")
    factors = {d: (w * target_tokens / eligible_tokens[d] if w > 0 else 0.0) for d, w in weights.items()}
    log.info("mix: domain weights (%s): %s", source.source, {d: round(w, 4) for d, w in sorted(weights.items())})
    return weights, factors, eligible


def weights_json(weights: dict[str, float]) -> str:
    return json.dumps({d: weights[d] for d in sorted(weights)})
