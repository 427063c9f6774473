"""The whole quick-start pipeline gives identical tables on the embedded engine and JVM Spark 4 and 3.5.

Real demo text (whose spam carries escaped astral-plane characters) plus planted
files of the kinds real data lakes hold (a byte-order mark, CRLF, a malformed
line, a line that is not UTF-8, an escaped lone surrogate, astral characters
escaped and raw, a gzip file) go through every stage of ``conf/local.yaml`` on
both engines. The JVM run uses other partitions and Arrow batches of 7 rows, so
equal embeddings also show that a vector does not depend on its batch-mates.

Classic Spark 4 runs locally. Spark 3.5 (EMR 7, Databricks LTS before 17) runs
as an EMR step does: ``spark-submit jobs/run_pipeline.py`` to a standalone
cluster on loopback (a master and two workers, each its own JVM, all Spark 3.5)
with ``build.sh --emr cpu``'s packed environment shipped as ``--archives
...#environment``; there pyspark comes from the cluster's Spark, since the packed
environment has none. (The same submission with the
driver's environment adds nothing this run does not check: the executors' Python
is the only difference, and the packed one is the harder case.)
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from .conftest import REPO, spark35_home
from .standalone import cluster_env, standalone_cluster
from .ingest_cases import ASTRAL
from .test_cli import samplemix
from .test_quickstart import NPM_DIR

pytestmark = [pytest.mark.jvm, pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java")]

PER_DOMAIN = 40
SPARK_CONF = ("engine.spark_conf={spark.sql.shuffle.partitions: 3, spark.driver.memory: 2g, "
              "spark.sql.execution.arrow.maxRecordsPerBatch: 7}")
JVM = ("engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet", SPARK_CONF)


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


# Classic Spark 4 (this environment's pyspark), local; a Spark 3.5 standalone cluster with the packed environment.
RUNTIMES = ["jvm", "standalone35-packed"]


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


@pytest.fixture(scope="module")
def packed_env(tmp_path_factory):
    """``build.sh --emr cpu``'s archive; it must hold no pyspark."""
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(["bash", str(REPO / "build.sh"), "--emr", "cpu"], capture_output=True, text=True,
                           env={**os.environ, "DIST": str(dist), "PYTHON": sys.executable}, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    archive = dist / "pyenv-cpu.tar.gz"
    listing = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "/site-packages/torch/" in listing and "/site-packages/pyspark/" not in listing
    return archive


def _submit(root: Path, runtime: str, master: str, packed: Path, spark_home: Path) -> subprocess.CompletedProcess:
    """``spark-submit jobs/run_pipeline.py`` to ``master``: the EMR step's command line."""
    # SPARK_CONNECT_MODE_ENABLED: left behind by a process that opened a Connect session (this
    # one has, for the embedded run); the job must still use spark-submit's classic session.
    env = {**cluster_env(spark_home), "SAMPLEMIX_PROGRESS_S": "0.5", "SPARK_CONNECT_MODE_ENABLED": "1"}
    python = ["--archives", f"{packed}#environment", "--conf", "spark.pyspark.python=./environment/bin/python",
              "--conf", f"spark.pyspark.driver.python={sys.executable}"]
    sets = [f"--set=tables.warehouse={root}/{runtime}", "--set=tables.format=parquet", f"--set={SPARK_CONF}"]
    # Both executors are registered before the first job, so tasks go to both workers.
    command = [str(spark_home / "bin" / "spark-submit"), "--master", master, "--conf", "spark.executor.memory=1g",
               "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0", *python,
               str(REPO / "jobs" / "run_pipeline.py"), *_run(root)[1:], *sets]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module", params=RUNTIMES)
def runs(root, request):
    runtime = request.param
    if runtime.startswith("standalone"):
        home = spark35_home()
        with standalone_cluster(root / f"cluster-{runtime}", spark_home=home) as master:
            result = _submit(root, runtime, master, request.getfixturevalue("packed_env"), home)
        engine = "engine: existing (pyspark 3.5."
    else:
        result = samplemix(*_run(root), f"--set=tables.warehouse={root}/{runtime}", *[f"--set={o}" for o in JVM],
                           cwd=root)
        engine = "engine: jvm-local (pyspark 4."
    # spark-submit merges the Python driver's stderr into its stdout.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert engine in output
    return root, runtime


def _tables(runs: tuple[Path, str], name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    root, runtime = runs
    embedded = DeltaTable(str(root / "embedded" / name)).to_pandas()
    jvm = pd.read_parquet(root / runtime / name)[embedded.columns]
    key = [c for c in ("doc_id", "cluster_id", "reason", "source_file", "source_line") if c in embedded.columns]
    return tuple(frame.sort_values(key).reset_index(drop=True) for frame in (embedded, jvm))


@pytest.mark.parametrize("name", ["documents", "rejects", "holdout", "holdout_overlap", "quality", "diversity",
                                  "cluster_stats"])
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
    # A decoded planted row is a document or, when the hashed split picks it, held out; planted rows quote
    # demo articles, so a held-out one can be a near-copy of training text, rejected as such.
    rejects = _tables(runs, "rejects")[0]
    decoded = pd.concat([_tables(runs, "documents")[0], _tables(runs, "holdout")[0],
                         rejects[rejects["reason"] == "holdout_near_duplicate"]])
    planted = decoded.loc[decoded["domain"] == "planted", "text"].tolist()
    assert sum(ASTRAL in text for text in planted) == 1
    assert sum("\U00020b9f" in text for text in planted) == 1
    assert sum(text.startswith("half a pair \ufffd here") for text in planted) == 1
    assert sum(text.endswith("\U0001f600") for text in planted) == 5
    kept_out = rejects["source_file"].str.contains("planted") & (rejects["reason"] != "holdout_near_duplicate")
    assert sorted(rejects.loc[kept_out, "reason"]) == ["duplicate_text", "invalid_utf8", "malformed_json"]


def test_both_workers_run_tasks_and_write_progress_to_their_executor_logs(runs):
    root, runtime = runs
    if not runtime.startswith("standalone"):
        pytest.skip("a local run has no executor logs")
    lines = {}
    for worker in ("work0", "work1"):
        logs = (root / f"cluster-{runtime}" / worker).glob("app-*/*/stderr")
        lines[worker] = [line for log in logs for line in log.read_text().splitlines()
                         if line.startswith("samplemix_spark: ") and " in this worker, " in line]
    assert all(lines.values()), lines  # the ingest reader's file tasks go to both workers
    assert any(": embed: " in line for worker_lines in lines.values() for line in worker_lines), lines


def test_packed_environment_carries_its_own_interpreter(packed_env, tmp_path):
    """The archive runs where the build's Python does not exist (EMR 7's nodes have 3.9)."""
    unpacked = tmp_path / "environment"
    unpacked.mkdir()
    subprocess.run(["tar", "-xzf", str(packed_env), "-C", str(unpacked)], check=True)
    probe = ("import json, sys, torch, faiss, transformers, samplemix_spark; "
             "print(json.dumps([sys.prefix, sys.base_prefix, [p for p in sys.path if p]]))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    command = [str(unpacked / "bin" / "python"), "-c", probe]
    ran = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    prefix, base_prefix, path = json.loads(ran.stdout)
    assert prefix == base_prefix == str(unpacked)
    assert all(entry.startswith(str(unpacked)) for entry in path), path
    libraries = subprocess.run(["ldd", str(unpacked / "bin" / "python")], capture_output=True, text=True).stdout
    assert sys.base_prefix not in libraries, libraries
    # With the build's installation hidden (a private mount namespace, where the system allows one).
    hidden = ["unshare", "-m", "--propagation", "private", "sh", "-c",
              f'mount -t tmpfs none "{sys.base_prefix}" && exec "$@"', "sh", *command]
    if shutil.which("unshare") and subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0:
        ran = subprocess.run(hidden, capture_output=True, text=True, env=env, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert json.loads(ran.stdout)[0] == str(unpacked)
