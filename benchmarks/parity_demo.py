"""Engine parity at quick-start size: the whole pipeline on the embedded engine and on JVM local Spark.

    .venv/bin/samplemix demo-data                      # data/demo, about 11,000 documents
    .venv/bin/python benchmarks/parity_demo.py         # adds the planted files of tests/test_pipeline_parity.py
    .venv/bin/python benchmarks/parity_demo.py --set mixing.method=quadmix   # any config override, both runs
    .venv/bin/python benchmarks/parity_demo.py --set domain.method=clusters  # domains from the clusters

Runs `samplemix run --config conf/local.yaml` twice over the same sources (the
JVM run with 3 shuffle partitions and Arrow batches of 7 rows), then compares
every per-document table and prints one JSON line: rows per table, how many rows
differ, and each run's time. The suite runs the same comparison on a smaller corpus.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_pipeline_parity import JVM, _planted  # noqa: E402

KEYS = {"documents": ["doc_id"], "rejects": ["reason", "source_file", "source_line"], "holdout": ["doc_id"],
        "quality": ["doc_id"], "embeddings": ["doc_id"], "centroids": ["cluster_id"], "cluster_stats": ["cluster_id"],
        "diversity": ["doc_id"], "weights": ["doc_id"], "domain_groups": ["group_id"]}


def run(root: Path, warehouse: str, sources: str, *extra: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "samplemix_spark.cli", "run", "--config",
                             str(REPO / "conf" / "local.yaml"), f"--set=ingest.sources=[{sources}]",
                             f"--set=tables.warehouse={root / warehouse}", *[f"--set={e}" for e in extra]],
                            cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - started


def differing_rows(root: Path, name: str) -> tuple[int, int]:
    embedded = DeltaTable(str(root / "embedded" / name)).to_pandas()
    jvm = pd.read_parquet(root / "jvm" / name)[embedded.columns]
    embedded, jvm = (f.sort_values(KEYS[name]).reset_index(drop=True) for f in (embedded, jvm))
    if len(embedded) != len(jvm):
        return len(embedded), abs(len(embedded) - len(jvm))
    if name == "weights":  # the count is what must match; c and p are floating-point sums
        print(json.dumps({"weights_c_max_abs_difference": float(np.max(np.abs(embedded["c"] - jvm["c"])))}))
        embedded, jvm = embedded[["doc_id", "count"]], jvm[["doc_id", "count"]]
    same = np.ones(len(embedded), dtype=bool)
    for column in embedded.columns:
        left, right = embedded[column].to_numpy(), jvm[column].to_numpy()
        same &= np.array([np.array_equal(a, b) if isinstance(a, np.ndarray) else (a == b or (a != a and b != b))
                          for a, b in zip(left, right)])
    return len(embedded), int((~same).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=REPO / "data" / "demo")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="a config override for both runs, as samplemix --set takes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        news = [json.loads(line)["text"] for line in (args.demo / "news.jsonl").read_text().splitlines()]
        _planted(root / "planted", news[:9])
        sources = f"{args.demo.resolve()}/*.jsonl, {root / 'planted'}"
        seconds = {"embedded": run(root, "embedded", sources, *args.overrides),
                   "jvm": run(root, "jvm", sources, *JVM, *args.overrides)}
        written = [name for name in KEYS if (root / "embedded" / name).exists()]  # domain_groups: clusters only
        tables = {name: dict(zip(("rows", "differing"), differing_rows(root, name))) for name in written}
    print(json.dumps({"bench": "parity_demo", "overrides": args.overrides,
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}, "tables": tables}))


if __name__ == "__main__":
    main()
