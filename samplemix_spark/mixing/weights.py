"""Mix step: scores -> sampling weights -> integer counts -> exploded output dataset.

Driver side: the scores are joined to the documents once, into the narrow
``mix_scores`` table (no text); three global aggregates over it give min/max of
q and d with the corpus size, then max p, then the softmax normaliser. Their
values are fed back as literals into native column expressions (``formulas``),
so executors do all per-row work with no Python UDF and no unpartitioned window.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig, SampleMixConfig
from samplemix_spark.errors import InputError, TableError
from samplemix_spark.hashing import COUNT_DRAW, CURRENT_SCHEME, PERPLEXITY_SAMPLE, uniform
from samplemix_spark.ingest.holdout import fingerprint
from samplemix_spark.mixing import budget, formulas, quadmix
from samplemix_spark.mixing.output import build_output, export_output, output_changes, output_file_count
from samplemix_spark.mixing.rounding import systematic_counts
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MixStats:
    """The global quantities of one mix run; stored as the one-row ``mix_run`` table."""

    alpha: float
    tau: float
    seed: int
    budget_mode: str
    max_repeats: Optional[float]
    n_source_docs: int
    source_tokens: float
    target_tokens: float
    n_target_docs: float
    q_min: float
    q_max: float
    d_min: float
    d_max: float
    p_max: float
    shifted_sum: float           # sum_x w(x), w = exp((p - p_max)/tau)
    shifted_token_sum: float     # sum_x w(x) n_tokens(x)
    scale: float                 # c(x) = min(scale * w(x), max_repeats)
    uncapped_scale: float
    cap_rounds: int
    n_capped: int
    method: str = "samplemix"
    domain_weights: str = ""     # JSON domain -> weight, for the domain-weight baselines
    weights_source: str = ""     # natural | manual | entropy | bimix | quality_threshold (domain method)
    holdout: str = ""            # fingerprint of the held-out set the documents were split from
    inputs: str = ""             # warehouse of the documents and scores, when not this run's own
    hash_scheme: str = "v1"      # of the count draw (``hashing``); mix_run tables from before schemes are v1
    rounding: str = "bernoulli"  # expected counts to integers (``rounding``)
    quality_source: str = "integer"  # q from the quality table's integer or its expected value
    parameters: str = ""         # JSON: QuaDMix's parameters per domain (method quadmix)

    def expected_rows(self) -> float:
        """sum_x c(x) before the cap: the expected number of output rows, for sizing files."""
        return self.n_target_docs if self.method == "domain" else self.uncapped_scale * self.shifted_sum

    def expected_tokens(self) -> float:
        """sum_x c(x) n_tokens(x) before the cap."""
        return self.target_tokens if self.method == "domain" else self.uncapped_scale * self.shifted_token_sum

    def expected_tokens_uncapped(self, budget_mode: str) -> float:
        """sum_x c(x) n_tokens(x) without a cap, had the budget been sized in ``budget_mode``."""
        if budget_mode == "tokens":
            return self.target_tokens
        return self.n_target_docs / self.shifted_sum * self.shifted_token_sum


_DDL = {int: "bigint", float: "double", str: "string", Optional[float]: "double"}


def stats_schema() -> str:
    hints = typing.get_type_hints(MixStats)
    return ", ".join(f"{f.name} {_DDL[hints[f.name]]}" for f in dataclasses.fields(MixStats))


@dataclass(frozen=True)
class QualityView:
    """How the mix reads q from the quality table: ``mixing.quality_source``, and for perplexity scores
    (``quality.method: perplexity``) the buckets, sample and seed their quantiles come from."""

    source: str = "integer"
    buckets: int = 11
    sample: int = 1_000_000
    seed: int = 0


def quality_view(cfg: SampleMixConfig) -> QualityView:
    """The ``QualityView`` of a config."""
    settings = cfg.quality.perplexity
    return QualityView(cfg.mixing.quality_source, settings.buckets, settings.sample, settings.seed)


def perplexity_cuts(table: DataFrame, view: QualityView, hash_scheme: str) -> list[float]:
    """The ``buckets - 1`` cut points of bits per byte: exact quantiles of a hashed sample of at most ``sample``
    scores, computed on the driver, so every engine and partitioning gets the same cuts. Empty without scores."""
    n = table.count()
    share = min(1.0, view.sample / max(1, n))
    chosen = table.where(uniform(F.col("doc_id"), view.seed, PERPLEXITY_SAMPLE, hash_scheme) < share)
    values = np.sort(np.array([r["bpb"] for r in chosen.select("bpb").collect()], dtype=np.float64))
    if not len(values):
        return []
    return [float(values[min(len(values) - 1, k * len(values) // view.buckets)]) for k in range(1, view.buckets)]


def perplexity_q(table: DataFrame, view: QualityView, hash_scheme: str) -> DataFrame:
    """doc_id, quality and quality_expected from bits per byte: the lowest bucket of bpb gets q = 10.

    The cuts are each scoring model's own (per ``half``), so an offset between the two reference models
    moves no document across a bucket border; a table without halves is cut as one.
    """
    halves = (0, 1) if "half" in table.columns else (None,)
    cuts = {h: perplexity_cuts(table if h is None else table.where(F.col("half") == h), view, hash_scheme)
            for h in halves}
    if not any(cuts.values()):
        raise InputError("the quality table holds no perplexity scores to cut into buckets")
    rank = None
    for h, half_cuts in cuts.items():
        half_rank = sum((F.col("bpb") >= F.lit(cut)).cast("int") for cut in half_cuts) if half_cuts else F.lit(0)
        rank = half_rank if rank is None else F.when(F.col("half") == h, half_rank).otherwise(rank)
    expected = (F.lit(view.buckets - 1) - rank).cast("double") * F.lit(10.0 / (view.buckets - 1))
    return table.select("doc_id", F.floor(expected + 0.5).cast("int").alias("quality"),
                        expected.alias("quality_expected"))


def needs_diversity(mixing: MixingConfig) -> bool:
    """Whether the mix reads d(x): SampleMix does; QuaDMix ranks merged quality criteria only, and the
    domain-weight baselines keep p for comparison when a diversity table exists."""
    return mixing.method == "samplemix"


def scored_documents(store: TableStore, view: QualityView | str = "integer", extra: Sequence[str] = (),
                     diversity: bool = True) -> DataFrame:
    """doc_id, domain, n_tokens (and the ``extra`` documents columns) with q and d attached (null where missing).

    q is the quality table's integer ``quality``, or with ``view.source``
    ``expected`` its unrounded ``quality_expected`` (``mixing.quality_source``);
    perplexity scores (a ``bpb`` column) become both first (``perplexity_q``).
    Without ``diversity`` a missing diversity table leaves d null instead of failing.
    """
    view = view if isinstance(view, QualityView) else QualityView(view)
    documents = store.read("documents")
    missing = [c for c in extra if c not in documents.columns]
    if missing:
        raise InputError(f"the documents table has no column {', '.join(missing)}: keep the source columns with "
                         "ingest.score_columns and run ingest again")
    documents = documents.select("doc_id", "domain", "n_tokens", *extra)
    table = store.read("quality")
    if "bpb" in table.columns:
        table = perplexity_q(table, view, store.hash_scheme)
    column = "quality" if view.source == "integer" else "quality_expected"
    if column not in table.columns:
        raise InputError("config key 'mixing.quality_source': 'expected' needs the quality table's "
                         "quality_expected column, which only quality.method 'model' and 'classifier' write")
    quality = table.select("doc_id", F.col(column).cast("double").alias("q"))
    scored = documents.join(quality, "doc_id", "left")
    if not diversity and not store.exists("diversity"):
        return scored.withColumn("d", F.lit(None).cast("double"))
    d = store.read("diversity").select("doc_id", F.col("diversity").cast("double").alias("d"))
    return scored.join(d, "doc_id", "left")


def stored_scores(store: TableStore, scored: DataFrame, table: str = "mix_scores") -> DataFrame:
    """``scored`` written once as the narrow ``table`` of ``store`` and read back.

    The global aggregates (three, one more per cap round, about eight for QuaDMix)
    and every candidate of a search then scan doc_id, domain, n_tokens, q and d
    instead of joining documents, quality and diversity again for each.
    """
    store.write(scored, table)
    return store.read(table)


def _count_if(condition: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0))


def _source_aggregates(scored: DataFrame) -> dict:
    row = scored.agg(
        F.count(F.lit(1)).alias("n"), F.sum("n_tokens").cast("double").alias("tokens"),
        F.min("q").alias("q_min"), F.max("q").alias("q_max"),
        F.min("d").alias("d_min"), F.max("d").alias("d_max"),
        _count_if(F.col("q").isNull()).alias("q_missing"), _count_if(F.col("d").isNull()).alias("d_missing"),
    ).collect()[0]
    return row.asDict()


def _check_source(agg: dict, diversity: bool = True) -> None:
    if not agg["n"]:
        raise InputError("the documents table is empty: nothing to mix")
    for score, table in (("q", "quality"), ("d", "diversity"))[:2 if diversity else 1]:
        if agg[f"{score}_missing"]:
            raise InputError(f"{agg[f'{score}_missing']} of {agg['n']} documents have no {table} score; "
                             f"rerun `samplemix {table}` after ingest")
        if not (math.isfinite(agg[f"{score}_min"]) and math.isfinite(agg[f"{score}_max"])):
            raise InputError(f"the {table} table holds NaN or infinite scores")
    if not agg["tokens"]:
        raise InputError("the documents hold 0 tokens in total: the token budget cannot be sized")


def target_tokens(cfg: MixingConfig, source_tokens: float) -> float:
    """T_tgt from an absolute budget or a fraction of T_src (default: T_src)."""
    if cfg.target_tokens is not None:
        return float(cfg.target_tokens)
    return (cfg.target_fraction if cfg.target_fraction is not None else 1.0) * source_tokens


def weight_columns(bounds: dict, alpha: float) -> tuple[Column, Column, Column]:
    """q_norm, d_norm and p(x) given the corpus min/max of q and d."""
    q_norm = formulas.min_max_normalised(F.col("q"), bounds["q_min"], bounds["q_max"])
    d_norm = formulas.min_max_normalised(F.col("d"), bounds["d_min"], bounds["d_max"])
    return q_norm, d_norm, formulas.sampling_weight(q_norm, d_norm, alpha)


def compute_stats(scored: DataFrame, cfg: MixingConfig, hash_scheme: str = CURRENT_SCHEME) -> MixStats:
    """Run the global aggregates over the scored documents and size the counts (drawn under ``hash_scheme``).

    A method that does not read d(x), given documents without it, gets the corpus totals and budget
    only: its own counts replace SampleMix's (p and its sums are NaN in ``mix_run``).
    """
    agg = _source_aggregates(scored)
    _check_source(agg, needs_diversity(cfg))
    t_target = target_tokens(cfg, agg["tokens"])
    n_target = formulas.target_documents(agg["n"], agg["tokens"], t_target)
    if cfg.repeat_cap is not None and cfg.budget_mode != "implicit":
        budget.check_cap_reachable(cfg.repeat_cap, agg["tokens"], t_target)
    weighting = _no_weighting() if agg["d_missing"] else _softmax_weighting(scored, agg, cfg, t_target, n_target)
    return MixStats(
        alpha=cfg.alpha, tau=cfg.tau, seed=cfg.seed, budget_mode=cfg.budget_mode, max_repeats=cfg.repeat_cap,
        n_source_docs=agg["n"], source_tokens=agg["tokens"], target_tokens=t_target, n_target_docs=n_target,
        q_min=agg["q_min"], q_max=agg["q_max"], hash_scheme=hash_scheme, rounding=cfg.rounding,
        quality_source=cfg.quality_source, **weighting,
    )


def _softmax_weighting(scored: DataFrame, agg: dict, cfg: MixingConfig, t_target: float, n_target: float) -> dict:
    """SampleMix's global quantities: the d bounds, p_max, the softmax sums and the budget's scale."""
    _, _, p = weight_columns(agg, cfg.alpha)
    p_max = scored.agg(F.max(p)).collect()[0][0]
    w = formulas.shifted_exponent(p, p_max, cfg.tau)
    sums = scored.agg(F.sum(w).alias("w"), F.sum(w * F.col("n_tokens")).alias("wn")).collect()[0]
    by_tokens = cfg.budget_mode == "tokens"
    scale = budget.solve_scale(scored, w, budget.unit(cfg.budget_mode), t_target if by_tokens else n_target,
                               float(sums["wn"] if by_tokens else sums["w"]), cfg.repeat_cap)
    return {"d_min": agg["d_min"], "d_max": agg["d_max"], "p_max": p_max, "shifted_sum": float(sums["w"]),
            "shifted_token_sum": float(sums["wn"]), "scale": scale.scale, "uncapped_scale": scale.uncapped_scale,
            "cap_rounds": scale.cap_rounds, "n_capped": scale.n_capped}


def _no_weighting() -> dict:
    """Documents without d(x): SampleMix's quantities are undefined, and the method's own counts are used."""
    nan = float("nan")
    return {"d_min": nan, "d_max": nan, "p_max": nan, "shifted_sum": nan, "shifted_token_sum": nan, "scale": nan,
            "uncapped_scale": nan, "cap_rounds": 0, "n_capped": 0}


def weights_frame(scored: DataFrame, stats: MixStats, c: Optional[Column] = None,
                  shown: Optional[dict] = None) -> DataFrame:
    """The ``weights`` table: doc_id, domain, n_tokens, q, d, q_norm, d_norm, p, c, c_uncapped, count.

    ``c`` replaces SampleMix's expected count (the domain-weight baselines, QuaDMix); p is kept for
    comparison unless ``shown`` gives other columns for p, q_norm and d_norm (QuaDMix).
    """
    q_norm, d_norm, p = weight_columns(dataclasses.asdict(stats), stats.alpha)
    if shown:
        q_norm, d_norm, p = shown["q_norm"], shown["d_norm"], shown["p"]
    if c is None:
        c = formulas.expected_count(p, stats.p_max, stats.tau, stats.scale, stats.max_repeats)
        c_uncapped = formulas.expected_count(p, stats.p_max, stats.tau, stats.uncapped_scale)
    else:
        c_uncapped = c
    with_c = scored.select("doc_id", "domain", "n_tokens", "q", "d", q_norm.alias("q_norm"),
                           d_norm.alias("d_norm"), p.alias("p"), c.alias("c"), c_uncapped.alias("c_uncapped"))
    if stats.rounding == "systematic":
        return systematic_counts(with_c, stats.seed)
    u = uniform(F.col("doc_id"), stats.seed, COUNT_DRAW, stats.hash_scheme)
    return with_c.select("*", formulas.integer_count(F.col("c"), u).alias("count"))


class MixStep:
    """Compute SampleMix (or a baseline's, or QuaDMix's) weights and counts, then write weights, mix_run, output."""

    name = "mix"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def run(self, spark: SparkSession, store: TableStore, inputs: Optional[TableStore] = None,
            output: bool = True, merge_output: bool = False) -> dict[str, int]:
        """Mix the documents and scores of ``inputs`` (default: ``store``) and write the result to ``store``.

        Another ``inputs`` store lets one scored corpus feed several mixes (the
        baselines of an evaluation) without copying documents or scores. Without
        ``output`` only ``weights`` and ``mix_run`` are written: the counts, for a
        reader that takes the text from the documents (``evaluate``'s reference).
        With ``merge_output`` (a refresh that only added documents, so stored copies
        are still right) a Delta ``output`` gets a MERGE of the copies whose count changed.
        """
        mixing, inputs = self.cfg.mixing, inputs or store
        extra = quadmix.score_columns(mixing) if mixing.method == "quadmix" else []
        scored = stored_scores(store, scored_documents(inputs, quality_view(self.cfg), extra, needs_diversity(mixing)))
        stats = dataclasses.replace(compute_stats(scored, mixing, store.hash_scheme), holdout=fingerprint(inputs),
                                    inputs="" if inputs is store else inputs.location("documents").rsplit("/", 1)[0])
        c, shown = None, None
        if mixing.method == "quadmix":
            scored, c, stats, shown = quadmix_inputs(scored, mixing, stats)
        if mixing.method == "domain":
            from samplemix_spark.mixing.baselines.sampler import domain_count_column, domain_factors, weights_json

            weights, factors, eligible = domain_factors(spark, inputs, self.cfg, scored, stats.target_tokens)
            c = domain_count_column(factors, eligible)
            stats = dataclasses.replace(stats, method="domain", domain_weights=weights_json(weights),
                                        weights_source=mixing.domain_weights.source)
        log.info("mix: %d source docs, %.0f source tokens -> target %.0f tokens = %.1f docs "
                 "(alpha=%s, tau=%s, seed=%s, budget in %s)", stats.n_source_docs, stats.source_tokens,
                 stats.target_tokens, stats.n_target_docs, stats.alpha, stats.tau, stats.seed, stats.budget_mode)
        store.write(weights_frame(scored, stats, c, shown), "weights")
        store.write(spark.createDataFrame([dataclasses.astuple(stats)], stats_schema()), "mix_run")
        if not output:
            return {"weights": stats.n_source_docs, "output": 0}
        n_files = output_file_count(stats.expected_rows(), stats.expected_tokens(), mixing.output_file_mb)
        merged = merge_output and store.appends_atomically and store.exists("output")
        if merged:
            store.apply_changes(output_changes(store.read("output"), store.read("weights"), inputs.read("documents")),
                                "output", ["doc_id", "replica"])
        else:
            store.write(build_output(store.read("weights"), inputs.read("documents"), mixing, n_files), "output")
        n_output = store.read("output").count()
        if mixing.export_format:
            export_output(store.read("output"), mixing, n_files, laid_out=not merged)
        return {"weights": stats.n_source_docs, "output": n_output}


def quadmix_inputs(scored: DataFrame, mixing: MixingConfig, stats: MixStats) -> tuple:
    """(scored frame, expected count column, stats, shown columns) for ``weights_frame`` under QuaDMix."""
    counts = quadmix.quadmix_counts(scored, mixing, stats.target_tokens if mixing.budget_mode == "tokens"
                                    else stats.n_target_docs)
    return counts.frame, counts.c, _quadmix_stats(stats, counts), quadmix.shown_columns()


def _quadmix_stats(stats: MixStats, counts) -> MixStats:
    """``stats`` with QuaDMix's method, budget scale and sums of S in place of SampleMix's; under
    ``budget_mode: implicit`` the target is what S gives (before the cap)."""
    if stats.budget_mode == "implicit":
        stats = dataclasses.replace(stats, target_tokens=counts.s_token_sum, n_target_docs=counts.s_sum)
    return dataclasses.replace(stats, method="quadmix", scale=counts.scale.scale,
                               uncapped_scale=counts.scale.uncapped_scale, cap_rounds=counts.scale.cap_rounds,
                               n_capped=counts.scale.n_capped, shifted_sum=counts.s_sum,
                               shifted_token_sum=counts.s_token_sum, parameters=counts.parameters)


def read_stats(store: TableStore) -> MixStats:
    """The stored global quantities of the last mix run."""
    row = store.read("mix_run").collect()[0].asDict()
    missing = [f.name for f in dataclasses.fields(MixStats)
               if f.name not in row and f.default is dataclasses.MISSING]
    if missing:
        raise TableError(f"the mix_run table lacks {', '.join(missing)}: it was written by an older "
                         "version; rerun `samplemix mix`")
    return MixStats(**{f.name: row[f.name] for f in dataclasses.fields(MixStats) if f.name in row})
