"""The whole quick-start pipeline gives identical tables on the embedded engine and JVM Spark 4 and 3.5.

Real demo text (whose spam carries escaped astral-plane characters) plus planted
files of the kinds real data lakes hold (a byte-order mark, CRLF, a malformed
line, a line that is not UTF-8, an escaped lone surrogate, astral characters
escaped and raw, a gzip file) go through every stage of ``conf/local.yaml`` on
both engines. The JVM run uses other partitions and Arrow batches of 7 rows, so
equal embeddings also show that a vector does not depend on its batch-mates.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from .conftest import REPO, pyspark35_env
from .ingest_cases import ASTRAL
from .test_cli import samplemix
from .test_quickstart import NPM_DIR

pytestmark = [pytest.mark.jvm, pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")]

PER_DOMAIN = 40
JVM = ("engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet",
       "engine.spark_conf={spark.sql.shuffle.partitions: 3, spark.driver.memory: 2g, "
       "spark.sql.execution.arrow.maxRecordsPerBatch: 7}")


def _planted(folder: Path, texts: list[str]) -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"text": f"{ASTRAL} {texts[0]}", "domain": "planted"}),
             json.dumps({"text": f"{texts[1]} \U00020b9f", "domain": "planted"}, ensure_ascii=False),
             json.dumps({"text": f"half a pair LONE here, then {texts[2]}", "domain": "planted"})
             .replace("LONE", "\\udbff"),
             '{"text": "this line was cut off',
             json.dumps({"text": f"{texts[3]} (planted)", "domain": "planted"}),
             # A letter added in Unicode 14 (unknown to Java 17's regex) and a no-break space.
             json.dumps({"text": f"Arabic \u0871 letter and a no-break\u00a0space. {texts[4]}", "domain": "planted"}),
             json.dumps({"text": f"{texts[5]} (twice)", "domain": "planted"}),
             json.dumps({"text": f"{texts[5]} (twice)", "domain": "planted"})]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n\r\n"
    data += b'{"text": "latin-1 \xe9t\xe9", "domain": "planted"}\n'
    (folder / "planted.jsonl").write_bytes(data)
    (folder / "more.jsonl.gz").write_bytes(gzip.compress("".join(
        json.dumps({"text": f"{t} \U0001f600", "domain": "planted"}) + "\n" for t in texts[4:9]).encode()))


# Classic Spark 4 (this environment's pyspark) and Spark 3.5 (EMR 7, Databricks LTS before 17).
RUNTIMES = ["jvm", "jvm35"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """The corpus, and the embedded engine's tables that every JVM run is compared with."""
    if not (NPM_DIR / "node_modules" / "@stdlib").is_dir():
        pytest.fail(f"the npm demo sources are not installed under {NPM_DIR}: run the README's test command")
    root = tmp_path_factory.mktemp("parity")
    made = samplemix("demo-data", "--max-per-domain", str(PER_DOMAIN), "--npm-dir", str(NPM_DIR), cwd=root)
    assert made.returncode == 0, made.stderr
    news = [json.loads(line)["text"] for line in (root / "data" / "demo" / "news.jsonl").read_text().splitlines()]
    _planted(root / "data" / "planted", news[:9])
    embedded = samplemix(*_run(root), f"--set=tables.warehouse={root}/embedded", cwd=root)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    return root


def _run(root: Path) -> tuple[str, ...]:
    sources = f"--set=ingest.sources=[{root}/data/demo/*.jsonl, {root}/data/planted]"
    return "run", "--config", str(REPO / "conf" / "local.yaml"), sources


@pytest.fixture(scope="module", params=RUNTIMES)
def runs(root, request):
    runtime = request.param
    env, version = (pyspark35_env(), "3.5.") if runtime == "jvm35" else (None, "4.")
    jvm = samplemix(*_run(root), f"--set=tables.warehouse={root}/{runtime}", *[f"--set={o}" for o in JVM],
                    cwd=root, env=env)
    assert jvm.returncode == 0, jvm.stderr[-3000:]
    assert f"engine: jvm-local (pyspark {version}" in jvm.stderr
    return root, runtime


def _tables(runs: tuple[Path, str], name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    root, runtime = runs
    embedded = DeltaTable(str(root / "embedded" / name)).to_pandas()
    jvm = pd.read_parquet(root / runtime / name)[embedded.columns]
    key = [c for c in ("doc_id", "cluster_id", "reason", "source_file", "source_line") if c in embedded.columns]
    return tuple(frame.sort_values(key).reset_index(drop=True) for frame in (embedded, jvm))


@pytest.mark.parametrize("name", ["documents", "rejects", "quality", "diversity", "cluster_stats"])
def test_tables_are_identical(runs, name):
    embedded, jvm = _tables(runs, name)
    assert len(embedded) > 0 or name == "rejects"
    pd.testing.assert_frame_equal(embedded, jvm, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("name, column", [("embeddings", "embedding"), ("centroids", "centroid")])
def test_vectors_are_bit_identical(runs, name, column):
    embedded, jvm = _tables(runs, name)
    assert np.array_equal(np.stack(embedded[column]), np.stack(jvm[column]))


def test_counts_are_identical_and_planted_rows_are_decoded_or_rejected(runs):
    embedded, jvm = _tables(runs, "weights")
    assert embedded["count"].tolist() == jvm["count"].tolist()
    documents, _ = _tables(runs, "documents")
    planted = documents.loc[documents["domain"] == "planted", "text"].tolist()
    assert sum(ASTRAL in text for text in planted) == 1
    assert sum("\U00020b9f" in text for text in planted) == 1
    assert sum(text.startswith("half a pair \ufffd here") for text in planted) == 1
    assert sum(text.endswith("\U0001f600") for text in planted) == 5
    rejects, _ = _tables(runs, "rejects")
    assert sorted(rejects.loc[rejects["source_file"].str.contains("planted"), "reason"]) == \
        ["duplicate_text", "invalid_utf8", "malformed_json"]
