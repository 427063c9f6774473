"""``samplemix sweep``: the domain mix over a grid of alpha, tau and token budgets, from stored scores.

The paper recommends tuning alpha per dataset (lower-quality corpora prefer a
smaller alpha). This reuses the stored documents, quality and diversity tables:
no rescoring and no output is written, only the counts each grid point would
give. Per grid point and domain: output token share, and per grid point the
zero-count share, the share of documents with count > 1, the share of repeated
output tokens and the unique documents.

Driver side: for each grid point the three global aggregates of the mix stage
run, then one aggregate groups the resulting counts by domain. Writes the
``sweep`` table and ``sweep.png``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Optional

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import MixingConfig
from samplemix_spark.mixing.weights import QualityView, compute_stats, scored_documents, stored_scores, weights_frame
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)


def sweep_point(scored, cfg: MixingConfig, hash_scheme: str) -> pd.DataFrame:
    """Per-domain output tokens, selected and repeated tokens for one (alpha, tau, budget)."""
    weights = weights_frame(scored, compute_stats(scored, cfg, hash_scheme))
    tokens = F.col("count") * F.col("n_tokens")
    return weights.groupBy("domain").agg(
        F.count(F.lit(1)).alias("source_docs"),
        F.sum(F.when(F.col("count") > 0, 1).otherwise(0)).alias("unique_docs"),
        F.sum(F.when(F.col("count") > 1, 1).otherwise(0)).alias("repeated_docs"),
        F.sum(tokens).cast("double").alias("output_tokens"),
        F.sum(F.greatest(F.col("count") - 1, F.lit(0)) * F.col("n_tokens")).cast("double").alias("repeated_tokens"),
    ).toPandas()


def run_sweep(spark: SparkSession, store: TableStore, base: MixingConfig, alphas: list[float], taus: list[float],
              fractions: list[float], out: Path, view: Optional[QualityView] = None) -> pd.DataFrame:
    """One row per (alpha, tau, target_fraction, domain); also written as the ``sweep`` table and a plot."""
    scored = stored_scores(store, scored_documents(store, view or base.quality_source), "sweep_scores")
    rows = []
    for alpha, tau, fraction in itertools.product(alphas, taus, fractions):
        cfg = dataclasses.replace(base, alpha=alpha, tau=tau, target_fraction=fraction, target_tokens=None)
        per_domain = sweep_point(scored, cfg, store.hash_scheme)
        total = per_domain["output_tokens"].sum()
        per_domain = per_domain.assign(
            alpha=alpha, tau=tau, target_fraction=fraction,
            output_token_share=per_domain["output_tokens"] / total if total else 0.0,
            zero_count_share=1 - per_domain["unique_docs"].sum() / per_domain["source_docs"].sum(),
            repeated_doc_share=per_domain["repeated_docs"].sum() / per_domain["source_docs"].sum(),
            repeated_token_share=per_domain["repeated_tokens"].sum() / total if total else 0.0,
            total_unique_docs=per_domain["unique_docs"].sum())
        rows.append(per_domain)
        first = per_domain.iloc[0]
        log.info("sweep: alpha=%s tau=%s fraction=%s: zero-count %.1f%%, count > 1 %.1f%%, repeated tokens %.1f%%",
                 alpha, tau, fraction, 100 * first["zero_count_share"], 100 * first["repeated_doc_share"],
                 100 * first["repeated_token_share"])
    table = pd.concat(rows, ignore_index=True)
    columns = ["alpha", "tau", "target_fraction", "domain", "source_docs", "unique_docs", "repeated_docs",
               "output_tokens", "output_token_share", "zero_count_share", "repeated_doc_share", "repeated_token_share",
               "total_unique_docs"]
    table = table[columns]
    store.write(spark.createDataFrame(table), "sweep")
    out.mkdir(parents=True, exist_ok=True)
    plot_sweep(table, out / "sweep.png")
    return table


def plot_sweep(table: pd.DataFrame, path: Path) -> None:
    """Domain token shares against alpha, one panel per (tau, budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = table[["tau", "target_fraction"]].drop_duplicates().to_numpy()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (tau, fraction) in zip(axes[0], panels):
        part = table[(table["tau"] == tau) & (table["target_fraction"] == fraction)]
        part.pivot(index="alpha", columns="domain", values="output_token_share").plot(ax=ax, marker="o")
        ax.set_title(f"tau={tau}, budget={fraction} x T_src")
        ax.set_ylabel("output token share")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
