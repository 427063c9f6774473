"""Shared set-up for the UDF benchmarks: a session, a documents table of real text, result lines."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.config import SampleMixConfig, build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402
from tests.realtext import bbc_articles  # noqa: E402


def udf_bench_arguments(description: str) -> argparse.ArgumentParser:
    """The options every UDF benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--partitions", type=int, default=os.cpu_count(),
                        help="partitions of the documents table (default: one per core)")
    return parser


def real_texts(n: int) -> list[str]:
    """``n`` BBC News articles, cycling through the 2,225 the package ships."""
    articles = bbc_articles(2225)
    return [articles[i % len(articles)] for i in range(n)]


def session_with_documents(settings: dict, engine: str, texts: list[str], partitions: int,
                           work: Path) -> tuple[SampleMixConfig, object, TableStore]:
    """A config, session and store whose documents table holds ``texts`` in ``partitions`` partitions."""
    os.environ.setdefault("RUST_LOG", "error")
    cfg = build_config({"engine": {"kind": engine, "master": "local[*]"},
                        "tables": {"format": "delta" if engine == "embedded" else "parquet",
                                   "warehouse": str(work / "wh")},
                        "ingest": {"diversity_column": "unused"}, **settings})
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    pd.DataFrame({"doc_id": [f"{i:08d}" for i in range(len(texts))], "text": texts}).to_parquet(work / "docs.parquet")
    store.write(spark.read.parquet(str(work / "docs.parquet")).repartition(partitions), "documents")
    return cfg, spark, store


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def print_result(bench: str, docs: int, spark_seconds: float, torch_seconds: float, **fields) -> None:
    print(json.dumps({"bench": bench, "docs": docs, **fields,
                      "spark_docs_per_s": round(docs / spark_seconds, 1),
                      "torch_docs_per_s": round(docs / torch_seconds, 1),
                      "ratio": round(torch_seconds / spark_seconds, 3), "torch_threads": torch.get_num_threads(),
                      "cpus": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}))
