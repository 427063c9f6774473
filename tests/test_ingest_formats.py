"""Real data-lake files give the same documents and rejects on the embedded engine and JVM Spark.

Every case of ``ingest_cases.CASES`` is ingested on the embedded engine (in this
process) and on classic JVM local Spark (one subprocess for all cases); both must
equal the case's expectation, which is written from the JSON and Parquet
specifications and Python's ``json.loads``, not from either engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from .conftest import REPO
from .ingest_cases import ASTRAL, CASES, ingest_case, write_cases

EMBEDDED = {"kind": "embedded"}


@pytest.fixture(scope="module")
def case_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest_cases")
    write_cases(root)
    return root


@pytest.fixture(scope="module")
def embedded_results(spark, case_root, tmp_path_factory):
    """Each case ingested once on the embedded engine, on first use, for every test that reads it."""
    warehouse, results = tmp_path_factory.mktemp("embedded_ingest"), {}

    def result(name: str) -> dict:
        if name not in results:
            results[name] = ingest_case(spark, name, case_root, warehouse, EMBEDDED, "delta")
        return results[name]
    return result


@pytest.fixture(scope="module")
def jvm_results(case_root, tmp_path_factory):
    if shutil.which("java") is None:
        pytest.skip("classic Spark needs Java")
    out = tmp_path_factory.mktemp("jvm_ingest")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, "-m", "tests.ingest_cases", str(out), str(case_root)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def _check_expectation(name: str, result: dict) -> None:
    case = CASES[name]
    if case.error:
        assert "error" in result, f"{name}: expected an error, got {result}"
        assert case.error in result["error"], result["error"]
        assert "\n" not in result["error"] and not result["written"]
        return
    assert "error" not in result, result.get("error")
    documents = sorted(tuple(row[:3]) for row in result["documents"])
    assert documents == sorted(case.documents)
    assert Counter(row[0] for row in result["rejects"]) == Counter(case.rejects)
    assert all(row[4] and (row[5] or row[4].startswith("table:")) for row in result["rejects"]), \
        "rejects name their file and line, or their catalog table"
    if case.scores:
        assert {row[0]: tuple(row[4:]) for row in result["documents"]} == case.scores


@pytest.mark.parametrize("name", sorted(CASES))
def test_embedded_engine_matches_the_expectation(embedded_results, name):
    _check_expectation(name, embedded_results(name))


@pytest.mark.jvm
def test_jvm_local_matches_the_expectation_and_the_embedded_engine(embedded_results, jvm_results):
    for name in sorted(CASES):
        _check_expectation(name, jvm_results[name])
        embedded = json.loads(json.dumps(embedded_results(name), default=str))
        if "error" in embedded:
            assert embedded["error"] == jvm_results[name]["error"], name
        else:
            assert embedded == jvm_results[name], name


def test_malformed_line_reject_keeps_the_raw_line_file_and_line_number(embedded_results):
    result = embedded_results("malformed_line")
    [(reason, doc_id, domain, text, source_file, source_line)] = result["rejects"]
    assert (reason, doc_id, domain, source_file, source_line) == ("malformed_json", None, None, "a.jsonl", 2)
    assert text == '{"text": "cut off in the middle, "domain": '


def test_astral_text_equals_json_loads_escaped_and_raw(case_root, embedded_results):
    for name in ("astral_escaped", "astral_raw_utf8"):
        raw = next((case_root / name).glob("*.jsonl")).read_bytes().splitlines()[0]
        expected = json.loads(raw)["text"]
        assert expected == ASTRAL
        texts = {row[2] for row in embedded_results(name)["documents"]}
        assert expected in texts


def _shingles(text: str) -> set:
    """Lower-cased 13-word windows, words split on space, tab, LF, VT, FF and CR: the check's definition."""
    import re

    words = [w for w in re.split("[\t\n\x0b\f\r ]+", text.lower()) if w]
    return {" ".join(words[i:i + 13]) for i in range(len(words) - 12)}


@pytest.mark.parametrize("path", ["closure", "files", "semi-join"],
                         ids=["matched-in-task", "read-in-task", "semi-join"])
def test_a_near_duplicate_held_out_document_is_rejected_and_its_overlap_kept(spark, case_root, tmp_path,
                                                                              monkeypatch, path,
                                                                              embedded_results):
    from samplemix_spark.ingest import decontaminate

    from .ingest_cases import DELTA, FRESH, GOOD, NEAR_DELTA, hashed

    if path == "closure":  # the default path, as every case runs it
        result = embedded_results("holdout_near_duplicate")
    else:  # more held-out shingles than a closure may carry: the tasks read them, or every training shingle is joined
        monkeypatch.setattr(decontaminate, "BROADCAST_SHINGLES", 1)
        if path == "semi-join":
            monkeypatch.setattr(decontaminate, "TASK_SHINGLES", 1)
        decontaminate._file_lookup.cache_clear()
        result = ingest_case(spark, "holdout_near_duplicate", case_root, tmp_path, EMBEDDED, "delta")
        # The embedded engine runs Python UDFs in this process: the tasks read the files, or never did.
        assert (decontaminate._file_lookup.cache_info().misses > 0) == (path == "files")
    [reject] = result["rejects"]
    assert reject[:2] == ["holdout_near_duplicate", hashed(NEAR_DELTA)]
    training = set().union(*(_shingles(t) for t in GOOD + [DELTA]))
    shares = {doc_id: (shingles, shared) for doc_id, shingles, shared in result["overlap"]}
    for text in (NEAR_DELTA, FRESH):
        expected = _shingles(text)
        assert shares[hashed(text)] == (len(expected), len(expected & training)), text
    near, total = shares[hashed(NEAR_DELTA)][1], shares[hashed(NEAR_DELTA)][0]
    assert 0.5 <= near / total < 1 and shares[hashed(FRESH)][1] == 0
    # The short text has no shingle to compare: it is listed as checked, with none shared.
    assert len(result["holdout"]) == 2 and len(shares) == 3
    [short] = set(shares) - {hashed(NEAR_DELTA), hashed(FRESH)}
    assert shares[short] == (0, 0)


def test_a_catalog_tables_signature_follows_its_data_files(spark, tmp_path):
    """`samplemix run` reruns ingest when a `table:` source gains data, and not otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from samplemix_spark.tables.state import source_signature

    folder = tmp_path / "lake"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["one document"], "domain": ["d"]}), folder / "part-0.parquet")
    spark.sql("DROP TABLE IF EXISTS default.signature_docs")
    spark.sql(f"CREATE TABLE default.signature_docs USING parquet LOCATION '{folder}'")
    sources = ["table:default.signature_docs"]
    before = source_signature(sources, spark)
    assert source_signature(sources, spark) == before
    assert [entry[0] for entry in before[0][1:]] == [str(folder / "part-0.parquet")]
    pq.write_table(pa.table({"text": ["a new document"], "domain": ["d"]}), folder / "part-1.parquet")
    assert source_signature(sources, spark) != before
    with pytest.raises(ValueError, match="needs a Spark session"):
        source_signature(sources)
