"""Ingest throughput on the quick-start corpus: rows/s of `samplemix ingest`, median of repeated runs.

    .venv/bin/samplemix demo-data            # data/demo: about 11,000 real documents, 45 MB of JSONL
    .venv/bin/python benchmarks/bench_ingest.py --repeats 3
    .venv/bin/python benchmarks/bench_ingest.py --repeats 3 --repo /path/to/other/checkout   # another version

Each run is its own `samplemix ingest --config conf/local.yaml` process on the
embedded engine (or ``--engine jvm-local`` with Parquet tables), reading the
sources of ``--sources``; the rate is the one the stage line prints (input rows
over the stage's time, which includes token counting and both table writes).
``--repo`` runs the same command with another checkout's code, which is how a
version is compared with the one before it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"stage ingest: .* in ([0-9.]+) s \(([0-9,]+) rows/s\)")
JVM = ["engine.kind=jvm-local", "engine.master=local[2]", "tables.format=parquet"]


def run_once(repo: Path, sources: str, engine: str, work: Path) -> float:
    sets = [f"ingest.sources=[{sources}]", f"tables.warehouse={work}/wh", *(JVM if engine == "jvm-local" else [])]
    env = {**os.environ, "PYTHONPATH": str(repo), "PYSPARK_PYTHON": sys.executable}
    result = subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "ingest", "--config",
                             str(repo / "conf" / "local.yaml"), *[f"--set={s}" for s in sets]],
                            cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    match = STAGE_LINE.search(result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(result.stderr[-3000:])
    return float(match.group(2).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default=str(REPO / "data" / "demo" / "*.jsonl"))
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose code runs (default: this one)")
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            rates.append(run_once(args.repo.resolve(), args.sources, args.engine, Path(work)))
    print(json.dumps({"bench": "ingest", "engine": args.engine, "repo": str(args.repo), "sources": args.sources,
                      "rows_per_s": rates, "median_rows_per_s": statistics.median(rates)}))


if __name__ == "__main__":
    main()
