"""``samplemix compare RUN_A RUN_B ...``: side-by-side table and plot of finished mix runs.

A run is a warehouse (path mode) holding a mix run's ``weights`` and ``mix_run``
tables, e.g. one SampleMix run and one natural-proportions run of the same
corpus. Per run: domain token shares, total tokens vs target, mean q and d of
the output (weighted by copies), the share of repeated tokens, unique documents,
and the Jaccard overlap of every pair of runs' selected documents.

Writes ``compare.csv`` (metrics x runs), ``domain_shares.csv``, ``overlap.csv``,
``compare.png`` and the page ``compare.html`` into the output folder, and returns
the metrics table. When a ``proxy_eval`` table covers every compared run (``samplemix
evaluate`` on them), the page adds per-domain held-out bpb, learning curves and
each run's steps to the natural run's loss.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import TablesConfig
from samplemix_spark.mixing import read_stats
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)


def run_metrics(weights: DataFrame, target_tokens: float) -> dict:
    """One run's totals from its weights table (a single aggregate)."""
    copies, tokens = F.col("count"), F.col("count") * F.col("n_tokens")
    row = weights.agg(
        F.sum(tokens).cast("double").alias("tokens"), F.sum(copies).cast("double").alias("copies"),
        F.sum(copies * F.col("q")).alias("q"), F.sum(copies * F.col("d")).alias("d"),
        F.sum(F.greatest(copies - 1, F.lit(0)) * F.col("n_tokens")).cast("double").alias("repeated"),
        F.sum(F.when(copies > 0, 1).otherwise(0)).alias("unique_docs"),
    ).collect()[0]
    total = row["tokens"] or 0.0
    return {
        "output_tokens": total, "target_tokens": target_tokens,
        "relative_error": total / target_tokens - 1,
        "mean_q_output": (row["q"] or 0.0) / row["copies"] if row["copies"] else float("nan"),
        "mean_d_output": (row["d"] or 0.0) / row["copies"] if row["copies"] else float("nan"),
        "repeated_token_share": (row["repeated"] or 0.0) / total if total else float("nan"),
        "unique_docs": int(row["unique_docs"] or 0),
    }


def domain_shares(weights: DataFrame) -> pd.Series:
    frame = weights.groupBy("domain").agg(F.sum(F.col("count") * F.col("n_tokens")).alias("t")).toPandas()
    return (frame.set_index("domain")["t"] / frame["t"].sum()).sort_index()


def jaccard(a: DataFrame, b: DataFrame) -> float:
    """|A & B| / |A | B| of two runs' selected doc_ids."""
    sa = a.filter(F.col("count") > 0).select("doc_id")
    sb = b.filter(F.col("count") > 0).select("doc_id")
    both = sa.join(sb, "doc_id").count()
    union = sa.count() + sb.count() - both
    return both / union if union else 1.0


def plot(shares: pd.DataFrame, metrics: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    shares.plot.bar(ax=left)
    left.set_ylabel("share of output tokens")
    left.set_title("Domain token shares")
    ratio = metrics.loc["output_tokens"] / metrics.loc["target_tokens"]
    ratio.astype(float).plot.bar(ax=right, color="tab:gray")
    right.axhline(1.0, color="black", linewidth=0.8)
    right.set_title("Output tokens / target")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _proxy_evaluation(stores: list[TableStore], names: list[str], out: Path) -> str:
    """The proxy evaluation of the compared runs (from any run's ``proxy_eval``) as a page section, or ""."""
    from samplemix_spark.evaluation.evaluate import Evaluation, summarise, warehouse_of
    from samplemix_spark.report.html import evaluation_section

    paths = {warehouse_of(store): name for store, name in zip(stores, names)}
    # An evaluation is stored where the runs' documents live, which may be another warehouse.
    inputs = [dataclasses.replace(store.cfg, warehouse=read_stats(store).inputs) for store in stores]
    homes = stores + [TableStore(store.spark, cfg) for store, cfg in zip(stores, inputs) if cfg.warehouse]
    for store in homes:
        stored = Evaluation.read(store)
        if stored is None:
            continue
        evaluation = stored.for_warehouses(paths)
        if evaluation.proxy_eval["run"].nunique() == len(stores):
            summarise(evaluation).to_csv(out / "proxy_eval.csv")
            log.info("compare: proxy evaluation of the runs in %s", out / "proxy_eval.csv")
            return evaluation_section(evaluation, out)
    return ""


def write_page(out: Path, metrics: pd.DataFrame, shares: pd.DataFrame, overlap: pd.DataFrame, evaluation: str) -> Path:
    """``compare.html``: the runs' training-data domain shares and totals, then their proxy evaluation."""
    from samplemix_spark.evaluation.plots import image_tag
    from samplemix_spark.report.html import page, scrolling

    number = lambda v: f"{v:,.4f}"  # noqa: E731
    body = (f"<h1>Mix runs compared</h1><h2>Domain token shares of each run's training data</h2>"
            f"{scrolling(shares.to_html(float_format=number))}{image_tag(out / 'compare.png')}"
            f"<h2>Totals</h2>{scrolling(_totals(metrics).to_html())}"
            f"<h2>Selected-document overlap (Jaccard)</h2>{scrolling(overlap.to_html(float_format=number))}"
            f"{evaluation or '<p>No proxy evaluation covers all of these runs: run samplemix evaluate on them.</p>'}")
    path = out / "compare.html"
    path.write_text(page("SampleMix runs compared", body))
    return path


def compare_runs(spark: SparkSession, runs: list[str], table_format: str, out: Path,
                 names: list[str] | None = None) -> pd.DataFrame:
    """Compare the mix runs stored under each warehouse in ``runs``; write the table and the plot."""
    names = names or [Path(run).name or run for run in runs]
    stores = [TableStore(spark, TablesConfig(format=table_format, warehouse=run)) for run in runs]
    weights = [store.read("weights") for store in stores]
    metrics = pd.DataFrame({name: run_metrics(w, read_stats(store).target_tokens)
                            for name, w, store in zip(names, weights, stores)})
    shares = pd.DataFrame({name: domain_shares(w) for name, w in zip(names, weights)}).fillna(0.0)
    overlap = pd.DataFrame(1.0, index=names, columns=names)
    for (i, a), (j, b) in itertools.combinations(enumerate(weights), 2):
        overlap.iloc[i, j] = overlap.iloc[j, i] = jaccard(a, b)
    out.mkdir(parents=True, exist_ok=True)
    metrics.to_csv(out / "compare.csv")
    shares.to_csv(out / "domain_shares.csv")
    overlap.to_csv(out / "overlap.csv")
    plot(shares, metrics, out / "compare.png")
    write_page(out, metrics, shares, overlap, _proxy_evaluation(stores, names, out))
    log.info("compare: wrote %s\n%s", out, printable(metrics, shares, overlap))
    return metrics


# Totals that are counts print as whole numbers with separators; the other rows as ratios.
COUNT_ROWS = ("output_tokens", "target_tokens", "unique_docs")


def _totals(metrics: pd.DataFrame) -> pd.DataFrame:
    """The totals as text: counts as integers with separators, ratios to four places."""
    totals = metrics.astype(object)
    for row in totals.index:
        totals.loc[row] = [f"{v:,.0f}" if row in COUNT_ROWS else f"{v:.4f}" for v in metrics.loc[row]]
    return totals


def printable(metrics: pd.DataFrame, shares: pd.DataFrame, overlap: pd.DataFrame) -> str:
    """The three tables for the terminal, each under its own title, counts as integers."""
    ratio = "{:.4f}".format
    return "\n\n".join([f"Totals\n{_totals(metrics).to_string()}",
                        f"Domain token shares of each run's training data\n{shares.to_string(float_format=ratio)}",
                        f"Selected-document overlap between runs (Jaccard)\n{overlap.to_string(float_format=ratio)}"])
