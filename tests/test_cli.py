"""The samplemix command as a user runs it: a subprocess, the shipped config, real Delta tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from deltalake import DeltaTable

from .conftest import REPO

SAMPLEMIX = [sys.executable, "-m", "samplemix_spark.cli"]


def samplemix(*args: str, cwd: Path, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SAMPLEMIX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def run_pipeline_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    sets = [f"--set={o}" for o in (f"ingest.sources=[{tmp_path}/data/*.jsonl]",
                                   f"tables.warehouse={tmp_path}/wh", *overrides)]
    return samplemix("run", "--config", str(REPO / "conf" / "synthetic.yaml"), *sets, cwd=tmp_path)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cli")
    made = samplemix("demo-data", "--synthetic", "--out", "data", "--docs", "1500", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    result = run_pipeline_cli(tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path, result


def test_run_writes_delta_tables_that_open_without_spark(demo_run):
    tmp_path, result = demo_run
    for stage in ("ingest", "quality", "diversity", "mix", "report"):
        assert f"stage {stage}:" in result.stderr and "rows/s" in result.stderr
    tables = {name: DeltaTable(str(tmp_path / "wh" / name)).to_pandas()
              for name in ("documents", "weights", "output", "report_domains", "report_summary")}
    assert len(tables["documents"]) == 1500
    assert len(tables["weights"]) == 1500
    assert len(tables["output"]) == tables["weights"]["count"].sum()
    assert tables["report_domains"]["output_docs"].sum() == len(tables["output"])
    assert "zero-count share" in result.stderr


def test_sql_command_reads_tables_and_view(demo_run):
    tmp_path, _ = demo_run
    result = samplemix("sql", "SELECT SUM(output_docs) AS n FROM domain_mix", "--config",
                       str(REPO / "conf" / "synthetic.yaml"), f"--set=tables.warehouse={tmp_path}/wh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    n_output = len(DeltaTable(str(tmp_path / "wh" / "output")).to_pandas())
    assert result.stdout.split()[-1] == str(n_output)


def test_bad_config_value_exits_with_message_naming_key(tmp_path):
    result = run_pipeline_cli(tmp_path, "mixing.tau=0")
    assert result.returncode == 2
    assert "mixing.tau" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "wh").exists()


def test_missing_source_exits_with_message(tmp_path):
    result = run_pipeline_cli(tmp_path)
    assert result.returncode == 2
    assert "matches no file" in result.stderr


@pytest.mark.parametrize("flags, message", [(["--incremental", "--force"], "do not go together"),
                                            (["--recluster"], "--recluster applies to --incremental")])
def test_run_refuses_contradictory_refresh_flags(tmp_path, flags, message):
    result = samplemix("run", *flags, "--config", str(REPO / "conf" / "synthetic.yaml"),
                       f"--set=tables.warehouse={tmp_path}/wh", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_failures_are_one_line_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "table.jsonl").write_text("id,text\n1,a comma-separated file\n")
    args = ("ingest", "--config", str(REPO / "conf" / "local.yaml"),
            f"--set=ingest.sources=[{tmp_path}/data/*.jsonl]", f"--set=tables.warehouse={tmp_path}/wh")
    plain = samplemix(*args, cwd=tmp_path)
    assert plain.returncode == 2
    errors = [line for line in plain.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"samplemix: error: source file {tmp_path}/data/table.jsonl: none of its 2 lines is a "
                      "JSON object (is it JSON Lines?)"]
    assert "Traceback" not in plain.stderr and not (tmp_path / "wh").exists()
    debug = samplemix(*args, "--debug", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == errors[0]
    bad_key = samplemix("mix", "--config", str(REPO / "conf" / "local.yaml"), "--set=mixing.tau=-1", cwd=tmp_path)
    assert bad_key.returncode == 2 and bad_key.stderr.strip().splitlines() == [
        "samplemix: error: config key 'mixing.tau': got -1.0, expected a number > 0"]


def test_without_pyspark_the_error_says_what_to_install(tmp_path):
    # A plain `pip install samplemix-spark` has no pyspark: a cluster's Spark brings its own.
    hide = ("import sys; sys.modules['pyspark'] = None; from samplemix_spark.cli import main; "
            f"sys.exit(main(['run', '--config', {str(REPO / 'conf' / 'local.yaml')!r}]))")
    done = subprocess.run([sys.executable, "-c", hide], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        "samplemix: error: pyspark is not installed: install samplemix-spark[local]")
