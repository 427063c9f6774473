"""``samplemix report --html out/report.html``: one self-contained page with the run's figures.

Driver side: small aggregates of the report tables and samples of the weights
table are collected and drawn with matplotlib; the PNGs are embedded in the
page and also written next to it. Figures follow the paper: quality and
diversity per domain (Figure 3), domain token shares before and after mixing
(Figure 13), the distribution of counts and the mean p per count (Figures 14/15),
the cluster sizes when k-means ran, and the budget sweep when ``samplemix sweep`` ran.
The per-domain table leads with the headline columns; every table scrolls inside
its own container, so the page keeps its width.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from samplemix_spark.evaluation.plots import image_tag, save_figure
from samplemix_spark.report.domains import DETAIL_COLUMNS, HEADLINE_COLUMNS, budget_line, run_settings
from samplemix_spark.report.sweep import plot_sweep
from samplemix_spark.tables import TableStore
from samplemix_spark.tables.state import STAGES

SAMPLE_ROWS = 200_000


def _scores_by_domain(weights: pd.DataFrame, column: str):
    def draw(ax):
        domains = sorted(weights["domain"].unique())
        ax.boxplot([weights.loc[weights["domain"] == d, column] for d in domains], tick_labels=domains)
        ax.set_title(f"{'Quality' if column == 'q' else 'Diversity'} per domain")
        ax.set_xlabel("domain")
        ax.set_ylabel("quality q(x), 0-10" if column == "q" else "diversity d(x)")
    return draw


def _shares(domains: pd.DataFrame):
    def draw(ax):
        domains.set_index("domain")[["source_token_share", "output_token_share"]].plot.bar(ax=ax, rot=0)
        ax.set_title("Domain token share before and after mixing")
        ax.set_xlabel("domain")
        ax.set_ylabel("share of tokens")
    return draw


def _counts(per_count: pd.DataFrame):
    labels = [str(c) if c < 6 else "6+" for c in per_count["count"]]

    def draw(ax):
        ax.bar(labels, per_count["docs"], color="tab:blue")
        ax.set_xlabel("count (copies of a document in the output)")
        ax.set_ylabel("documents")
        twin = ax.twinx()
        twin.plot(labels, per_count["mean_p"], color="tab:red", marker="o")
        twin.set_ylabel("mean p")
        ax.set_title("Sampling counts and mean p per count")
    return draw


def _clusters(sizes: pd.DataFrame):
    def draw(ax):
        ax.hist(sizes["size"], bins=min(50, max(5, len(sizes) // 2)))
        ax.set_title(f"Cluster sizes (k = {len(sizes)})")
        ax.set_xlabel("documents in the cluster")
        ax.set_ylabel("clusters")
    return draw


def _proxy_evaluation(store: TableStore, path: Path) -> str:
    """The proxy evaluation section, when ``samplemix evaluate`` has written its tables."""
    from samplemix_spark.evaluation.evaluate import Evaluation

    evaluation = Evaluation.read(store)
    return "" if evaluation is None else evaluation_section(evaluation, path.parent)


def evaluation_section(evaluation, folder: Path) -> str:
    """Per-run held-out bpb per domain, macro with its interval, the paired verdict, steps to natural's loss."""
    from samplemix_spark.evaluation.evaluate import summarise, write_figures

    table = evaluation.proxy_eval
    figures = write_figures(table, folder)
    summary = scrolling(summarise(evaluation).to_html(float_format=lambda v: f"{v:.4f}"))
    return (f"<h2>Proxy evaluation</h2><p>Held-out bits per byte of byte-level proxies trained on each run's "
            f"output (preset {html.escape(str(table['preset'].iat[0]))}, seeds "
            f"{', '.join(map(str, sorted(table['seed'].unique())))}), on every scored held-out document; lower "
            f"is better. Intervals are 95%, over held-out documents and seeds (seed variance pooled over the runs), "
            f"and a difference counts only where <code>vs_natural</code> says <code>better</code> or "
            f"<code>worse</code>: its paired interval excludes 0. With one seed per run there is no estimate of "
            f"seed variance and the verdict is <code>undetermined</code>.</p>{summary}{''.join(figures)}")


def write_html(spark: SparkSession, store: TableStore, path: Path) -> Path:
    """Write the report page and its PNGs; returns the page's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = store.read("report_summary").toPandas().iloc[0]
    domains = store.read("report_domains").toPandas().sort_values("domain")
    body = f"""<h1>SampleMix run</h1>
<p><b>Target tokens</b> {summary.target_tokens:,.0f} &middot; <b>achieved</b> {summary.achieved_tokens:,.0f}
({summary.relative_error:+.3%}) &middot; {html.escape(run_settings(summary))} &middot; seed {summary.seed}</p>
<p>{html.escape(budget_line(summary)).replace(chr(10), "<br>")}</p>
<p>Source documents {summary.source_docs:,} &middot; output documents {summary.output_docs:,} &middot;
zero-count share {summary.zero_count_share:.2%}</p>
<h2>Per domain</h2>{_table(domains[list(HEADLINE_COLUMNS)])}
<details><summary>Every per-domain column</summary>{_table(domains[["domain", *DETAIL_COLUMNS]])}</details>
<h2>Figures</h2>{"".join(_figures(store, path, domains))}
{_proxy_evaluation(store, path)}
<h2>Time per stage</h2>{_stage_times(store)}"""
    path.write_text(page("SampleMix report", body))
    return path


def _figures(store: TableStore, path: Path, domains: pd.DataFrame) -> list[str]:
    weights = store.read("weights")
    sample = weights.select("domain", "q", "d").limit(SAMPLE_ROWS).toPandas()
    per_count = (weights.groupBy(F.least(F.col("count"), F.lit(6)).alias("count"))
                 .agg(F.count(F.lit(1)).alias("docs"), F.avg("p").alias("mean_p")).toPandas().sort_values("count"))
    figures = [save_figure(path.with_name("quality_by_domain.png"), _scores_by_domain(sample, "q")),
               save_figure(path.with_name("diversity_by_domain.png"), _scores_by_domain(sample, "d")),
               save_figure(path.with_name("token_shares.png"), _shares(domains)),
               save_figure(path.with_name("counts.png"), _counts(per_count))]
    cluster_stats = store.read_if_exists("cluster_stats")
    if cluster_stats is not None:
        figures.append(save_figure(path.with_name("cluster_sizes.png"), _clusters(cluster_stats.toPandas())))
    sweep = store.read_if_exists("sweep")
    if sweep is not None:
        plot_sweep(sweep.toPandas(), path.with_name("sweep.png"))
        figures.append(image_tag(path.with_name("sweep.png")))
    return figures


def _stage_times(store: TableStore) -> str:
    """Seconds per stage in pipeline order, with the total of those recorded."""
    stage_runs = store.read_if_exists("stage_runs")
    if stage_runs is None:
        return "<p>not recorded</p>"
    times = stage_runs.toPandas().dropna(subset=["seconds"])
    times = times.assign(order=times["stage"].map({s: i for i, s in enumerate(STAGES)}).fillna(len(STAGES)))
    times = times.sort_values(["order", "stage"])[["stage", "seconds"]]
    total = pd.DataFrame({"stage": ["total"], "seconds": [times["seconds"].sum()]})
    return _table(pd.concat([times, total], ignore_index=True), decimals=1)


def _table(frame: pd.DataFrame, decimals: int = 4) -> str:
    """Integers with separators, other numbers to ``decimals`` places, in a scroll container."""
    integers = {column: "{:,}".format for column in frame.columns if pd.api.types.is_integer_dtype(frame[column])}
    return scrolling(frame.to_html(index=False, formatters=integers, float_format=lambda v: f"{v:.{decimals}f}"))


def scrolling(table_html: str) -> str:
    """A table in a container that scrolls sideways, so a wide table never widens the page."""
    return f'<div class="scroll">{table_html}</div>'


def page(title: str, body: str) -> str:
    """A self-contained HTML page around ``body`` (figures are embedded as data URIs)."""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}}img{{max-width:100%}}
.scroll{{overflow-x:auto;max-width:100%}}details{{margin:1em 0}}</style></head><body>
{body}
</body></html>"""
