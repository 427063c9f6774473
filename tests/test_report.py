"""Report: per-domain numbers agree with direct SQL over the output and documents tables."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd
import pytest

from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.pipeline import run_pipeline

from .conftest import make_config, store_for


@pytest.fixture(scope="module")
def reported(spark, tmp_path_factory):
    paths = write_corpus(tmp_path_factory.mktemp("corpus"), 2000, seed=3, n_files=2)
    cfg = make_config(tmp_path_factory.mktemp("wh"), paths, mixing={"tau": 0.1, "target_fraction": 0.7})
    run_pipeline(spark, cfg)
    return cfg


def test_domain_report_matches_sql_over_output(spark, reported):
    store = store_for(spark, reported)
    report = store.read("report_domains").toPandas().set_index("domain").sort_index()
    store.read("output").createOrReplaceTempView("t_output")
    store.read("documents").createOrReplaceTempView("t_documents")
    direct = spark.sql("""
        SELECT o.domain, COUNT(*) AS output_docs, SUM(o.n_tokens) AS output_tokens,
               COUNT(DISTINCT o.doc_id) AS selected_docs
        FROM t_output o GROUP BY o.domain""").toPandas().set_index("domain").sort_index()
    source = spark.sql("""SELECT domain, COUNT(*) AS source_docs, SUM(n_tokens) AS source_tokens
                          FROM t_documents GROUP BY domain""").toPandas().set_index("domain").sort_index()
    for column in ("output_docs", "output_tokens", "selected_docs"):
        assert report[column].tolist() == direct[column].tolist(), column
    for column in ("source_docs", "source_tokens"):
        assert report[column].tolist() == source[column].tolist(), column
    expected_share = direct["output_tokens"] / direct["output_tokens"].sum()
    assert report["output_token_share"].tolist() == pytest.approx(expected_share.tolist(), rel=1e-12)
    buckets = report[["docs_count_0", "docs_count_1", "docs_count_2", "docs_count_3", "docs_count_4plus"]]
    assert (buckets.sum(axis=1) == report["source_docs"]).all()
    assert (report["source_docs"] - report["docs_count_0"] == report["selected_docs"]).all()


def test_summary_and_view(spark, reported):
    store = store_for(spark, reported)
    summary = store.read("report_summary").collect()[0]
    output_tokens = store.read("output").agg({"n_tokens": "sum"}).collect()[0][0]
    source_tokens = store.read("documents").agg({"n_tokens": "sum"}).collect()[0][0]
    assert summary.achieved_tokens == output_tokens
    assert summary.target_tokens == pytest.approx(0.7 * source_tokens, rel=1e-12)
    assert summary.relative_error == pytest.approx((output_tokens - summary.target_tokens) / summary.target_tokens)
    assert (summary.alpha, summary.tau, summary.seed) == (0.8, 0.1, 1024)
    view = spark.sql("SELECT * FROM domain_mix ORDER BY domain").toPandas()
    table = store.read("report_domains").toPandas().sort_values("domain").reset_index(drop=True)
    pd.testing.assert_frame_equal(view[table.columns], table, check_dtype=False)


def test_summary_states_the_precision_of_the_draw(spark, reported):
    import numpy as np

    store = store_for(spark, reported)
    summary = store.read("report_summary").collect()[0]
    weights = store.read("weights").select("c", "n_tokens", "count").toPandas()
    c, n = weights["c"].to_numpy(), weights["n_tokens"].to_numpy(dtype=float)
    fraction = c - np.floor(c)
    sd = np.sqrt(np.sum(fraction * (1 - fraction) * n ** 2))
    assert summary.rounding_sd_tokens == pytest.approx(sd, rel=1e-9)
    assert summary.realised_error_sd == pytest.approx(((weights["count"] * n).sum() - (c * n).sum()) / sd, rel=1e-9)
    # The formula is the spread of the integer-plus-Bernoulli total: simulated draws agree within 10%.
    rng = np.random.default_rng(0)
    totals = [((np.floor(c) + (rng.random(len(c)) < fraction)) * n).sum() for _ in range(400)]
    assert np.std(totals, ddof=1) == pytest.approx(sd, rel=0.1)
    from samplemix_spark.report.domains import format_report

    text = format_report(spark, store)
    assert f"rounding sigma {sd / summary.target_tokens:.2%} of the target" in text
    assert "hypothetical, had the budget been in tokens" in text  # this fixture is budgeted in documents


def test_html_report_has_summary_table_and_figures(spark, reported, tmp_path):
    from samplemix_spark.report.html import write_html

    store = store_for(spark, reported)
    page = write_html(spark, store, tmp_path / "report.html").read_text()
    summary = store.read("report_summary").collect()[0]
    assert f"{summary.target_tokens:,.0f}" in page and f"{summary.achieved_tokens:,.0f}" in page
    assert "alpha=0.8 tau=0.1" in page and f"rounding sigma {summary.rounding_sd_share:.2%}" in page
    assert page.count('src="data:image/png;base64,') == 4
    for name in ("quality_by_domain", "diversity_by_domain", "token_shares", "counts"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    for domain in store.read("report_domains").toPandas()["domain"]:
        assert f"<td>{domain}</td>" in page


class _Tables(HTMLParser):
    """Each <table> of a page: its header cells, its first column, and whether a scroll container holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.tables, self.open_divs, self.cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            self.open_divs.append(dict(attrs).get("class"))
        elif tag == "table":
            self.tables.append({"scrolls": "scroll" in self.open_divs, "header": [], "first_column": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["column"] = 0
        elif tag in ("th", "td"):
            self.cell = tag

    def handle_endtag(self, tag):
        if tag == "div":
            self.open_divs.pop()
        elif tag in ("th", "td"):
            self.tables[-1]["column"] += 1
            self.cell = None

    def handle_data(self, data):
        if self.cell == "th":
            self.tables[-1]["header"].append(data.strip())
        elif self.cell == "td" and self.tables[-1]["column"] == 0:
            self.tables[-1]["first_column"].append(data.strip())


def test_html_report_leads_with_the_headline_and_every_table_scrolls(spark, reported, tmp_path):
    from samplemix_spark.report.html import write_html
    from samplemix_spark.tables.state import STAGES

    store = store_for(spark, reported)
    parser = _Tables()
    parser.feed(write_html(spark, store, tmp_path / "report.html").read_text())
    assert len(parser.tables) == 3 and all(table["scrolls"] for table in parser.tables)
    first = parser.tables[0]["header"]
    assert first[0] == "domain" and {"source_token_share", "output_token_share"} <= set(first[:6])
    assert {"mean_q", "mean_d", "source_docs", "output_docs"} <= set(first)
    assert set(parser.tables[1]["header"]) > set(store.read("report_domains").columns) - set(first)
    stages = parser.tables[-1]["first_column"]
    recorded = {row.stage for row in store.read("stage_runs").collect()}
    assert stages == [s for s in STAGES if s in recorded] + ["total"]


def test_the_view_the_table_and_the_terminal_share_one_column_order(spark, reported):
    from samplemix_spark.report.domains import DETAIL_COLUMNS, HEADLINE_COLUMNS, format_report

    store = store_for(spark, reported)
    order = list(HEADLINE_COLUMNS + DETAIL_COLUMNS)
    assert store.read("report_domains").columns == order
    view = spark.sql("SELECT * FROM domain_mix")
    assert view.columns == order
    domains = [row.domain for row in view.collect()]
    assert domains == sorted(domains)
    lines = format_report(spark, store).splitlines()
    header = next(line for line in lines if line.split()[:1] == ["domain"])
    assert header.split() == list(HEADLINE_COLUMNS)
    assert all(len(line) <= 120 for line in lines[3:])


def test_q_shares_count_each_domains_documents_at_each_rounded_q(spark, reported):
    import numpy as np

    from samplemix_spark.report.domains import format_report, q_shares

    store = store_for(spark, reported)
    weights = store.read("weights").select("domain", "q").toPandas()
    rounded = np.floor(weights["q"] + 0.5).astype(int)
    expected = pd.crosstab(weights["domain"], rounded, normalize="index")
    shares = q_shares(store)
    assert list(shares.index) == list(expected.index) and list(shares.columns) == list(expected.columns)
    np.testing.assert_allclose(shares.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert "share of each domain's documents at each q" in format_report(spark, store)


def test_the_page_shows_the_budget_sweep_once_one_ran(spark, reported, tmp_path):
    """Last in this module: the sweep adds a table to the shared warehouse."""
    from samplemix_spark.report.html import write_html
    from samplemix_spark.report.sweep import run_sweep

    store = store_for(spark, reported)
    before = write_html(spark, store, tmp_path / "before" / "report.html").read_text()
    run_sweep(spark, store, reported.mixing, [0.2, 0.8], [0.1], [0.7], tmp_path / "sweep")
    after = write_html(spark, store, tmp_path / "after" / "report.html").read_text()
    assert 'alt="sweep"' not in before and 'alt="sweep"' in after
    assert (tmp_path / "after" / "sweep.png").stat().st_size > 1000
