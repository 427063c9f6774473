"""Mix stage: weights -> counts -> exploded output, Spark vs a single-process numpy + pyarrow reference.

    .venv/bin/python benchmarks/bench_mix.py --docs 1000000
    .venv/bin/python benchmarks/bench_mix.py --docs 10000000
    .venv/bin/python benchmarks/bench_mix.py --docs 1000000 --engine jvm-local

Input: one Parquet file of synthetic scored documents (doc_id, domain, q, d,
n_tokens). Both sides read it, compute eq. 2-4 with the same global quantities,
draw integer counts, explode them to (doc_id, replica) rows and write them:
Spark as a Delta table (Parquet on JVM local), the reference to one Parquet file.
The Spark side runs the library's own functions (``compute_stats``,
``weights_frame``, ``explode_copies``, ``lay_out``). The reference draws its
uniforms with a vectorised SplitMix64 of the row index, which is cheaper than
hashing the string doc_id, so it is the faster side by construction; its counts
differ row by row but have the same expectation. ``numpy_math_s`` is the
reference without reading and writing: the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.config import build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.mixing.output import explode_copies, lay_out, output_file_count  # noqa: E402
from samplemix_spark.mixing.weights import compute_stats, weights_frame  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402

DOMAINS = np.array(["web", "news", "wiki", "code", "books", "forum"])


def write_input(path: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    table = pa.table({
        "doc_id": pa.array(np.char.add("d", np.arange(n).astype("U10"))),
        "domain": pa.array(DOMAINS[rng.integers(0, len(DOMAINS), n)]),
        "q": rng.integers(0, 11, n).astype(np.float64),
        "d": rng.uniform(0, 1, n),
        "n_tokens": rng.integers(20, 4000, n).astype(np.int64),
    })
    pq.write_table(table, path, row_group_size=1_000_000)


def splitmix_uniform(index: np.ndarray, seed: int) -> np.ndarray:
    z = (index.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) * np.uint64(1)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def reference_counts(q: np.ndarray, d: np.ndarray, n_tokens: np.ndarray, alpha: float, tau: float,
                     seed: int) -> np.ndarray:
    def minmax(x):
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    p = alpha * minmax(d) + (1 - alpha) * minmax(q)
    w = np.exp((p - p.max()) / tau)
    c = len(p) * w / w.sum()  # T_tgt = T_src
    whole = np.floor(c)
    return (whole + (splitmix_uniform(np.arange(len(c)), seed) < c - whole)).astype(np.int64)


def reference(input_path: Path, output_path: Path, alpha: float, tau: float, seed: int) -> tuple[float, float, int]:
    """(total seconds, math-only seconds, output rows) of the numpy + pyarrow implementation."""
    started = time.perf_counter()
    table = pq.read_table(input_path, columns=["doc_id", "q", "d", "n_tokens"])
    q, d, n_tokens = (table[c].to_numpy() for c in ("q", "d", "n_tokens"))
    math_started = time.perf_counter()
    counts = reference_counts(q, d, n_tokens, alpha, tau, seed)
    rows = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    replica = np.arange(len(rows)) - np.repeat(starts, counts)
    math_seconds = time.perf_counter() - math_started
    pq.write_table(pa.table({"doc_id": table["doc_id"].take(pa.array(rows)), "replica": replica.astype(np.int32)}),
                   output_path)
    return time.perf_counter() - started, math_seconds, len(rows)


def spark_mix(engine: str, input_path: Path, work: Path, alpha: float, tau: float, seed: int,
              shuffle: bool) -> tuple[float, int, int]:
    """(seconds, output rows, output files) of the library's mix path on ``engine``."""
    cfg = build_config({"engine": {"kind": engine, "master": "local[*]",
                                   "spark_conf": {"spark.driver.memory": "8g"} if engine == "jvm-local" else {}},
                        "tables": {"format": "delta" if engine == "embedded" else "parquet",
                                   "warehouse": str(work / f"wh_{engine}")},
                        "ingest": {"diversity_column": "unused"},
                        "mixing": {"alpha": alpha, "tau": tau, "seed": seed, "shuffle": shuffle}})
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    started = time.perf_counter()
    scored = spark.read.parquet(str(input_path))
    stats = compute_stats(scored, cfg.mixing)
    selected = weights_frame(scored, stats).filter("count > 0").select("doc_id", "count")
    # The output here is (doc_id, replica) without text: size files by rows alone.
    n_files = output_file_count(stats.expected_rows(), 0.0, cfg.mixing.output_file_mb)
    store.write(lay_out(explode_copies(selected, ["doc_id"]), cfg.mixing, n_files), "output")
    seconds = time.perf_counter() - started
    rows = store.read("output").count()
    spark.stop()
    return seconds, rows, n_files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--shuffle", action="store_true", help="also order the output by the shuffle hash")
    args = parser.parse_args()
    os.environ.setdefault("RUST_LOG", "error")
    work = Path(tempfile.mkdtemp(prefix="bench_mix_"))
    input_path = work / "scored.parquet"
    write_input(input_path, args.docs)
    alpha, tau, seed = 0.8, 0.2, 1024
    ref_seconds, math_seconds, ref_rows = reference(input_path, work / "reference.parquet", alpha, tau, seed)
    spark_seconds, rows, n_files = spark_mix(args.engine, input_path, work, alpha, tau, seed, args.shuffle)
    print(json.dumps({"bench": "mix", "engine": args.engine, "docs": args.docs, "shuffle": args.shuffle,
                      "output_rows": rows,
                      "reference_rows": ref_rows, "output_files": n_files, "spark_s": round(spark_seconds, 2),
                      "reference_s": round(ref_seconds, 2), "numpy_math_s": round(math_seconds, 2),
                      "ratio": round(spark_seconds / ref_seconds, 2), "cpus": os.cpu_count(),
                      "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
