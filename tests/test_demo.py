"""The real-text demo corpus: installed sources are read, missing ones skipped with a warning."""

from __future__ import annotations

import json
import logging

import pytest

from samplemix_spark.demo.real import pieces, write_real_corpus
from samplemix_spark.errors import ConfigError


def _fake_npm_package(root, package: str, records: dict[str, list[str]]) -> None:
    """The layout npm gives a @stdlib dataset, with records written for this test."""
    for group, texts in records.items():
        folder = root / "node_modules" / "@stdlib" / package / "data" / group
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(texts):
            (folder / f"{i:05d}.json").write_text(json.dumps({"id": f"{i:05d}", "group": group, "text": text}))


def test_real_corpus_reads_installed_sources_and_skips_missing_ones(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    _fake_npm_package(tmp_path / "npm", "datasets-spam-assassin",
                      {"spam-1": ["WIN CASH NOW", "CHEAP PILLS"], "easy-ham-1": ["Lunch at 12?"]})
    speech = " ".join(f"Sentence number {i} of the address." for i in range(200))  # ~7,000 characters
    _fake_npm_package(tmp_path / "npm", "datasets-sotu", {".": [speech]})
    written = write_real_corpus(tmp_path / "out", max_per_domain=30, npm_dir=tmp_path / "npm")
    assert written["news"] == 30 and written["code"] == 30
    assert written["spam"] == 2 and written["email"] == 1
    passages = [json.loads(line)["text"] for line in (tmp_path / "out" / "speeches.jsonl").read_text().splitlines()]
    assert len(passages) == written["speeches"] > 3 and " ".join(passages) == speech
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


def test_pieces_split_at_boundaries_within_the_limit_and_lose_nothing():
    text = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(300))
    parts = list(pieces(text, 500, r"\n\n(?=\S)"))
    assert all(len(p) <= 500 for p in parts) and len(parts) > 10
    assert all(p.startswith("def f") for p in parts)  # every piece starts at a definition
    assert "\n\n".join(parts) == text.strip()
    assert list(pieces("one long sentence without a boundary", 5, r"[.!?] ")) == [
        "one long sentence without a boundary"]


def test_domain_cap_spreads_over_the_source_and_is_validated(tmp_path):
    _fake_npm_package(tmp_path, "datasets-spam-assassin", {"spam-1": [f"offer {i}" for i in range(10)],
                                                            "spam-2": [f"deal {i}" for i in range(10)]})
    write_real_corpus(tmp_path / "out", max_per_domain=4, npm_dir=tmp_path)
    texts = [json.loads(line)["text"] for line in (tmp_path / "out" / "spam.jsonl").read_text().splitlines()]
    assert texts == ["offer 0", "offer 5", "deal 0", "deal 5"]  # both folders, evenly spaced
    with pytest.raises(ConfigError, match="max-per-domain"):
        write_real_corpus(tmp_path / "out", max_per_domain=0, npm_dir=tmp_path)
