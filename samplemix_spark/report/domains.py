"""Per-domain report: what SampleMix's per-document weights did to the domain mix.

The per-domain numbers are defined once, as SQL over the ``weights`` table. The
report stage materialises that query as ``report_domains`` and registers it as
the view ``domain_mix``, so the table and the view cannot disagree.
"""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from samplemix_spark.config import SampleMixConfig
from samplemix_spark.mixing import read_stats
from samplemix_spark.tables import TableStore

log = logging.getLogger(__name__)

VIEW_NAME = "domain_mix"

# The columns a reader looks at first, then the rest: the same order in the table, the view, the
# terminal and the page.
HEADLINE_COLUMNS = ("domain", "source_token_share", "output_token_share", "source_docs", "output_docs",
                    "mean_q", "mean_d")
DETAIL_COLUMNS = ("source_tokens", "output_tokens", "selected_docs", "unique_output_tokens", "repeated_token_share",
                  "mean_p", "docs_count_0", "docs_count_1", "docs_count_2", "docs_count_3", "docs_count_4plus",
                  "cap_mass_out", "cap_mass_in", "expected_docs", "expected_tokens", "rounding_variance")

DOMAIN_MIX_SQL = """
WITH per_domain AS (
  SELECT domain,
         COUNT(*)                                      AS source_docs,
         SUM(n_tokens)                                 AS source_tokens,
         SUM(CASE WHEN `count` > 0 THEN 1 ELSE 0 END)  AS selected_docs,
         SUM(`count`)                                  AS output_docs,
         SUM(`count` * n_tokens)                       AS output_tokens,
         SUM(CASE WHEN `count` > 0 THEN n_tokens ELSE 0 END) AS unique_output_tokens,
         SUM(GREATEST(c_uncapped - c, 0))              AS cap_mass_out,
         SUM(GREATEST(c - c_uncapped, 0))              AS cap_mass_in,
         SUM(c)                                        AS expected_docs,
         SUM(c * n_tokens)                             AS expected_tokens,
         -- Var(count x n_tokens) of the draw: a count is floor(c) plus one with probability f = c - floor(c).
         SUM((c - FLOOR(c)) * (1 - (c - FLOOR(c))) * n_tokens * n_tokens) AS rounding_variance,
         AVG(q)                                        AS mean_q,
         AVG(d)                                        AS mean_d,
         AVG(p)                                        AS mean_p,
         SUM(CASE WHEN `count` = 0 THEN 1 ELSE 0 END)  AS docs_count_0,
         SUM(CASE WHEN `count` = 1 THEN 1 ELSE 0 END)  AS docs_count_1,
         SUM(CASE WHEN `count` = 2 THEN 1 ELSE 0 END)  AS docs_count_2,
         SUM(CASE WHEN `count` = 3 THEN 1 ELSE 0 END)  AS docs_count_3,
         SUM(CASE WHEN `count` >= 4 THEN 1 ELSE 0 END) AS docs_count_4plus
  FROM {weights}
  GROUP BY domain
), totals AS (
  SELECT SUM(source_tokens) AS all_source_tokens, SUM(output_tokens) AS all_output_tokens
  FROM per_domain
)
SELECT {columns}
FROM (
  SELECT per_domain.*,
         source_tokens / all_source_tokens AS source_token_share,
         CASE WHEN all_output_tokens > 0 THEN output_tokens / all_output_tokens END AS output_token_share,
         CASE WHEN output_tokens > 0 THEN (output_tokens - unique_output_tokens) / output_tokens END
           AS repeated_token_share
  FROM per_domain CROSS JOIN totals
)
ORDER BY domain
"""


def domain_mix_sql(weights: str) -> str:
    """The per-domain query over the table ``weights`` names, columns in report order, rows by domain."""
    return DOMAIN_MIX_SQL.format(weights=weights, columns=", ".join(HEADLINE_COLUMNS + DETAIL_COLUMNS))


def domain_mix(spark: SparkSession, store: TableStore) -> DataFrame:
    """The per-domain report as a live query over the weights table."""
    return spark.sql(domain_mix_sql(store.sql_ref("weights")))


def register_domain_mix_view(spark: SparkSession, store: TableStore) -> str:
    """Create the ``domain_mix`` view: persistent under a catalog, a session temp view otherwise."""
    sql = domain_mix_sql(store.sql_ref("weights"))
    if store.cfg.catalog:
        name = f"{store.cfg.catalog}.{store.cfg.prefix}{VIEW_NAME}"
        spark.sql(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        return name
    spark.sql(sql).createOrReplaceTempView(VIEW_NAME)
    return VIEW_NAME


def summary_frame(spark: SparkSession, store: TableStore, domains: DataFrame) -> DataFrame:
    """One row: target vs achieved tokens, the run's parameters and corpus totals."""
    stats = read_stats(store)
    totals = domains.agg({"output_tokens": "sum", "output_docs": "sum", "selected_docs": "sum",
                          "expected_tokens": "sum", "rounding_variance": "sum"}).collect()[0]
    achieved = float(totals["sum(output_tokens)"] or 0)
    expected = float(totals["sum(expected_tokens)"] or 0)
    rounding_sd = float(totals["sum(rounding_variance)"] or 0) ** 0.5
    row = {
        "target_tokens": stats.target_tokens,
        "achieved_tokens": achieved,
        "relative_error": (achieved - stats.target_tokens) / stats.target_tokens,
        # The draw's own precision: the standard deviation of the realised total around its expectation
        # (independent Bernoulli draws), and where this draw landed in those units.
        "expected_tokens": expected,
        "rounding_sd_tokens": rounding_sd,
        "rounding_sd_share": rounding_sd / stats.target_tokens,
        "realised_error_sd": (achieved - expected) / rounding_sd if rounding_sd > 0 else 0.0,
        "alpha": stats.alpha, "tau": stats.tau, "seed": stats.seed,
        "source_docs": stats.n_source_docs, "source_tokens": stats.source_tokens,
        "target_docs": stats.n_target_docs,
        "output_docs": int(totals["sum(output_docs)"] or 0),
        "selected_docs": int(totals["sum(selected_docs)"] or 0),
        "zero_count_share": 1.0 - int(totals["sum(selected_docs)"] or 0) / stats.n_source_docs,
        "method": stats.method, "domain_weights": stats.domain_weights,
        "budget_mode": stats.budget_mode, "max_repeats": stats.max_repeats,
        "cap_rounds": stats.cap_rounds, "capped_docs": stats.n_capped,
        # What each budget mode would give on these weights, before rounding and without a cap.
        "expected_error_documents_mode": stats.expected_tokens_uncapped("documents") / stats.target_tokens - 1,
        "expected_error_tokens_mode": stats.expected_tokens_uncapped("tokens") / stats.target_tokens - 1,
    }
    schema = ", ".join(f"{key} {_ddl(value)}" for key, value in row.items())
    return spark.createDataFrame([tuple(row.values())], schema)


def _ddl(value) -> str:
    if isinstance(value, str):
        return "string"
    return "bigint" if isinstance(value, int) and not isinstance(value, bool) else "double"


class ReportStep:
    """Write ``report_domains`` and ``report_summary`` and register the ``domain_mix`` view."""

    name = "report"

    def __init__(self, cfg: SampleMixConfig) -> None:
        self.cfg = cfg

    def run(self, spark: SparkSession, store: TableStore) -> dict[str, int]:
        store.write(domain_mix(spark, store).orderBy("domain"), "report_domains")
        domains = store.read("report_domains")
        store.write(summary_frame(spark, store, domains), "report_summary")
        view = register_domain_mix_view(spark, store)
        log.info("report: per-domain view %s", view)
        log.info("\n%s", format_report(spark, store))
        return {"report_domains": domains.count(), "report_summary": 1}


def run_settings(summary) -> str:
    """The method's own settings: alpha and tau for SampleMix, the method's name otherwise."""
    if summary.method == "samplemix":
        return f"alpha={summary.alpha} tau={summary.tau}"
    return f"method={summary.method}"


def budget_line(summary) -> str:
    """The budget's precision: the mode's expected error, the draw's sigma, and the other mode as a what-if."""
    mode = summary.budget_mode
    other = "documents" if mode == "tokens" else "tokens"
    sigma = (f"rounding sigma {summary.rounding_sd_share:.2%} of the target ({summary.rounding_sd_tokens:,.0f} "
             f"tokens), this draw {summary.realised_error_sd:+.2f} sigma")
    if mode == "implicit":
        return f"budget implicit: QuaDMix's sampling values are the counts, the target their tokens; {sigma}"
    error = summary[f"expected_error_{mode}_mode"]
    line = f"budget in {mode}: expected token error before rounding {error:+.3%}; {sigma}"
    return (f"{line}\nhypothetical, had the budget been in {other}: expected token error "
            f"{summary[f'expected_error_{other}_mode']:+.3%}")


def format_report(spark: SparkSession, store: TableStore) -> str:
    """The summary and the per-domain table as text, for the terminal."""
    summary = store.read("report_summary").collect()[0]
    domains = store.read("report_domains").orderBy("domain").toPandas()
    head = (f"target tokens {summary.target_tokens:,.0f}  achieved {summary.achieved_tokens:,.0f}  "
            f"relative error {summary.relative_error:+.4%}  {run_settings(summary)} "
            f"seed={summary.seed}\nsource docs {summary.source_docs:,}  output docs "
            f"{summary.output_docs:,}  zero-count share {summary.zero_count_share:.2%}\n"
            f"{budget_line(summary)}")
    if summary.max_repeats is not None:
        head += (f"\nmax_repeats {summary.max_repeats}: {summary.capped_docs:,} documents capped after "
                 f"{summary.cap_rounds} rounds")
    details = ["domain", *DETAIL_COLUMNS[:DETAIL_COLUMNS.index("cap_mass_in") + 1]]
    return (f"{head}\n{plain_table(domains[list(HEADLINE_COLUMNS)])}\ndetails:\n{plain_table(domains[details])}\n"
            f"share of each domain's documents at each q (rounded to an integer):\n{plain_table(q_shares(store), 3)}")


def plain_table(frame: pd.DataFrame, decimals: int = 4, width: int = 120, separators: bool = True) -> str:
    """``frame`` as terminal text: integer columns (with separators), the rest to ``decimals``.

    Wider than ``width``, it continues in blocks below, each led by the first column (or the index).
    """
    shown = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_integer_dtype(frame[column]):
            shown[column] = frame[column].map("{:,}".format if separators else str)
        elif pd.api.types.is_float_dtype(frame[column]):
            shown[column] = frame[column].map(lambda v: "" if pd.isna(v) else f"{v:.{decimals}f}")
    keep_index = not isinstance(frame.index, pd.RangeIndex)
    lead, rest = ([], list(shown.columns)) if keep_index else ([shown.columns[0]], list(shown.columns[1:]))
    blocks, block = [], []
    for column in rest:
        if block and len(shown[lead + block + [column]].to_string(index=keep_index).split("\n")[0]) > width:
            blocks.append(block)
            block = []
        block.append(column)
    blocks.append(block)
    return "\n\n".join(shown[lead + b].to_string(index=keep_index) for b in blocks)


def q_shares(store: TableStore) -> pd.DataFrame:
    """domain x q (0-10, rounded half up): the share of the domain's documents with that q."""
    counts = (store.read("weights").groupBy("domain", F.floor(F.col("q") + 0.5).cast("int").alias("q"))
              .agg(F.count(F.lit(1)).alias("docs")).toPandas())
    table = counts.pivot(index="domain", columns="q", values="docs").fillna(0).sort_index()
    return table.div(table.sum(axis=1), axis=0)
