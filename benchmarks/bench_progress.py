"""Cost of the progress lines: the embed stage with and without them, interleaved, on the embedded engine.

    .venv/bin/samplemix demo-data
    .venv/bin/python benchmarks/bench_progress.py --docs 2000 --repeats 5

Ingests the first ``--docs`` demo documents once, then runs the embed stage
``--repeats`` times with progress lines every 10 s and as often without
(``SAMPLEMIX_PROGRESS_S=0``), alternating (each arm first in every other pair),
and prints the median of each and their ratio. The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from samplemix_spark.config import load_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.engine.progress import INTERVAL_ENV  # noqa: E402
from samplemix_spark.pipeline import run_stage  # noqa: E402


def _sample(folder: Path, n: int, out: Path) -> None:
    """The first documents of every demo file, round robin, ``n`` in all."""
    files = sorted(folder.glob("*.jsonl"))
    readers = [path.open() for path in files]
    with out.open("w") as sink:
        for line in itertools.islice((line for lines in itertools.zip_longest(*readers) for line in lines if line),
                                     n):
            sink.write(json.dumps(json.loads(line)) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--demo", default=str(REPO / "data" / "demo"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_progress_"))
    _sample(Path(args.demo), args.docs, root / "docs.jsonl")
    cfg = load_config(str(REPO / "conf" / "local.yaml"), [f"ingest.sources=[{root}/docs.jsonl]",
                                                         f"tables.warehouse={root}/wh", "ingest.holdout_fraction=0"])
    spark = build_session(cfg.engine)
    run_stage(spark, cfg, "ingest")
    run_stage(spark, cfg, "embed")  # warm-up: loads the encoder once for both arms
    times: dict[str, list[float]] = {"with progress": [], "without": []}
    arms = [("with progress", "10"), ("without", "0")]
    for repeat in range(args.repeats):
        for arm, interval in arms if repeat % 2 == 0 else arms[::-1]:  # either arm goes first as often
            os.environ[INTERVAL_ENV] = interval
            started = time.perf_counter()
            run_stage(spark, cfg, "embed")
            times[arm].append(time.perf_counter() - started)
    medians = {arm: statistics.median(values) for arm, values in times.items()}
    for arm, values in times.items():
        print(f"{arm}: median {medians[arm]:.2f} s over {len(values)} runs ({', '.join(f'{v:.2f}' for v in values)})")
    ratio = medians["with progress"] / medians["without"]
    print(f"ratio with/without: {ratio:.3f}")
    print(json.dumps({"benchmark": "progress", "docs": args.docs, "repeats": args.repeats,
                      "with_s": times["with progress"], "without_s": times["without"], "ratio": round(ratio, 4)}))
    spark.stop()


if __name__ == "__main__":
    main()
